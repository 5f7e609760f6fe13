"""LOD1 buildings: geometry, heights, metadata, placement accuracy, skipped footprints, real Delft data."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import trimesh
from pyproj import CRS
from rasterio.transform import from_origin
from shapely.geometry import MultiPolygon, Point, Polygon, box

from cim.errors import CRSError, InputError, InputNotFoundError
from cim.models.footprints import BuildingOptions
from cim.models.lod1 import build_buildings
from cim.sources.crs import from_ecef
from tests.support.paths import SHARED_DATA as SHARED
from tiles.check import check_tileset
from tiles.gltf import read_glb
from tiles.tileset import Tileset, rebase_uris, relative_transforms

X0, Y0 = 440000.0, 4440000.0  # EPSG:4547, near 113.30E 40.09N

FOOTPRINT_WITH_HOLE = Polygon(
    [(X0 + 50, Y0 + 10), (X0 + 90, Y0 + 10), (X0 + 90, Y0 + 50), (X0 + 50, Y0 + 50)],
    [[(X0 + 60, Y0 + 20), (X0 + 60, Y0 + 40), (X0 + 80, Y0 + 40), (X0 + 80, Y0 + 20)]],
)
TWO_PART_BUILDING = MultiPolygon([box(X0 + 100, Y0 + 10, X0 + 110, Y0 + 20), box(X0 + 120, Y0 + 10, X0 + 130, Y0 + 20)])
L_SHAPE = Polygon([(X0 + 10, Y0 + 60), (X0 + 40, Y0 + 60), (X0 + 40, Y0 + 70), (X0 + 20, Y0 + 70),
                   (X0 + 20, Y0 + 90), (X0 + 10, Y0 + 90)])
# clockwise exterior: the builder must orient it itself
CLOCKWISE_BOX = Polygon([(X0 + 10, Y0 + 10), (X0 + 10, Y0 + 25), (X0 + 30, Y0 + 25), (X0 + 30, Y0 + 10)])


def _dem(path: Path, *, slope: bool = True) -> Path:
    """A 2 m DEM over the fixtures: 1000 m plus a gentle slope (so bases differ), nodata -9999."""
    rows, cols = 120, 120
    r, c = np.mgrid[0:rows, 0:cols]
    z = (1000.0 + (0.1 * c + 0.05 * r if slope else 0)).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(X0 - 20, Y0 + 200, 2, 2), nodata=-9999) as dst:
        dst.write(z, 1)
    return path


def _dsm(dem: Path, path: Path, geoms: list, heights: list[float]) -> Path:
    with rasterio.open(dem) as src:
        z = src.read(1)
        profile = src.profile
        burned = rasterio.features.rasterize(zip(geoms, heights), out_shape=z.shape, transform=src.transform,
                                             fill=0, dtype="float32")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(z + burned, 1)
    return path


@pytest.fixture
def city(tmp_path: Path) -> dict:
    """Four buildings with every height source: attribute, floors, DSM, default."""
    gdf = gpd.GeoDataFrame(
        {
            "code": ["A", "B", "C", "D"],
            "name": ["一号楼", "二号楼", "三号楼", "四号楼"],
            "height": [12.5, None, None, None],
            "floors": [None, 5, None, None],
        },
        geometry=[CLOCKWISE_BOX, FOOTPRINT_WITH_HOLE, TWO_PART_BUILDING, L_SHAPE],
        crs="EPSG:4547",
    )
    fp = tmp_path / "footprints.gpkg"
    gdf.to_file(fp)
    dem = _dem(tmp_path / "dem.tif")
    dsm = _dsm(dem, tmp_path / "dsm.tif", [TWO_PART_BUILDING], [18.0])
    return {"gdf": gdf, "fp": fp, "dem": dem, "dsm": dsm, "out": tmp_path / "out"}


def _tiles(out: Path):
    return sorted((out / "buildings").glob("*.glb"))


def _absolute_ecef(glb_path: Path, transform: list[float]) -> tuple[dict, list[np.ndarray]]:
    glb = read_glb(glb_path.read_bytes())
    m = np.asarray(transform, np.float64).reshape(4, 4).T
    return glb, [p["positions"] @ m[:3, :3].T + m[:3, 3] for p in glb["primitives"]]


def test_heights_come_from_attribute_floors_dsm_and_default(city):
    res = build_buildings(city["fp"], city["dem"], city["out"], dsm=city["dsm"])
    assert res.height_sources == {"attribute": 1, "floors": 1, "dsm": 1, "default": 1}
    assert res.default_height_ids == ["D"]
    glb = read_glb(_tiles(city["out"])[0].read_bytes())
    props = glb["properties"]
    h = dict(zip(props["code"], props["height"]))
    src = dict(zip(props["code"], props["height_source"]))
    assert h["A"] == 12.5 and src["A"] == "attribute"
    assert h["B"] == 15.0 and src["B"] == "floors"
    assert h["C"] == pytest.approx(18.0, abs=0.01) and src["C"] == "dsm"
    assert h["D"] == 10.0 and src["D"] == "default"
    assert dict(zip(props["code"], props["name"]))["A"] == "一号楼"


def test_base_is_lowest_terrain_under_the_footprint(tmp_path):
    """On a bumpy DEM, the base equals a brute-force minimum of the bilinear surface over each footprint."""
    from cim.models.footprints import footprint_heights
    from cim.sources.raster import bilinear

    rows = cols = 120
    r, c = np.mgrid[0:rows, 0:cols]
    z = (1000 + 3 * np.sin(c / 3.0) * np.cos(r / 4.0) + 0.05 * c).astype("float32")
    dem = tmp_path / "bumpy.tif"
    tf = from_origin(X0 - 20, Y0 + 200, 2, 2)
    with rasterio.open(dem, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float32",
                       crs="EPSG:4547", transform=tf, nodata=-9999) as dst:
        dst.write(z, 1)
    geoms = np.array([CLOCKWISE_BOX, FOOTPRINT_WITH_HOLE, TWO_PART_BUILDING, L_SHAPE], dtype=object)
    base, _ = footprint_heights(geoms, CRS.from_epsg(4547), dem)
    for g, b in zip(geoms, base):
        x0, y0, x1, y1 = g.bounds
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1e-9, 0.1), np.arange(y0, y1 + 1e-9, 0.1))
        inside = shapely.covers(g, shapely.points(gx.ravel(), gy.ravel()))
        edge = shapely.get_coordinates(shapely.segmentize(g.boundary, 0.05))
        px = np.concatenate([gx.ravel()[inside], edge[:, 0]])
        py = np.concatenate([gy.ravel()[inside], edge[:, 1]])
        brute = np.nanmin(bilinear(z.astype(np.float64), tf, px, py))
        assert b == pytest.approx(brute, abs=0.01)


def test_prisms_are_closed_with_the_footprint_volume(city):
    from tiles.compression import GlbOptions

    # the volume to 5e-4 is a property of the meshing: uncompressed (5 mm quantization alone moves it by ~1e-3)
    res = build_buildings(city["fp"], city["dem"], city["out"], options=BuildingOptions(glb=GlbOptions("none")))
    glb = read_glb(_tiles(city["out"])[0].read_bytes())
    prim = glb["primitives"][0]
    props = glb["properties"]
    for fid, code in enumerate(props["code"]):
        tri = prim["indices"]
        mine = tri[np.all(prim["feature_ids"][tri] == fid, axis=1)]
        mesh = trimesh.Trimesh(prim["positions"], mine, process=True)  # merges coincident vertices
        parts = mesh.split(only_watertight=False)
        assert all(p.is_watertight for p in parts), code
        assert all(p.volume > 0 for p in parts), f"{code}: inward-facing triangles"
        footprint = city["gdf"].set_index("code").geometry[code]
        expected = footprint.area * props["height"][fid]
        # true metres differ from grid metres by the projection's scale (1 + 4e-5 here, 60 km from the central
        # meridian) and the height above the ellipsoid (1 + 1.6e-4 at 1000 m): about 2e-4 in volume
        assert mesh.volume == pytest.approx(expected, rel=5e-4), code
    assert res.triangles == len(prim["indices"])


def test_vertices_land_within_1cm_of_the_source(city):
    res = build_buildings(city["fp"], city["dem"], city["out"])
    glb, ecef = _absolute_ecef(_tiles(city["out"])[0], res.root.transform)
    src = from_ecef("EPSG:4547", np.vstack(ecef))
    footprint_xy = shapely.get_coordinates(city["gdf"].geometry.to_numpy())
    # every vertex's x/y is a footprint vertex, to the centimetre
    d = np.min(np.hypot(src[:, None, 0] - footprint_xy[None, :, 0], src[:, None, 1] - footprint_xy[None, :, 1]), 1)
    assert d.max() < 0.01
    props = glb["properties"]
    fids = glb["primitives"][0]["feature_ids"].astype(int)
    base = np.asarray(props["base_height"])[fids]
    top = base + np.asarray(props["height"])[fids]
    dz = np.minimum(np.abs(src[:, 2] - base), np.abs(src[:, 2] - top))
    assert dz.max() < 0.01


def test_feature_ids_pick_the_right_building(city):
    res = build_buildings(city["fp"], city["dem"], city["out"])
    glb, ecef = _absolute_ecef(_tiles(city["out"])[0], res.root.transform)
    src = from_ecef("EPSG:4547", ecef[0])
    fids = glb["primitives"][0]["feature_ids"].astype(int)
    codes = glb["properties"]["code"]
    assert sorted(codes) == ["A", "B", "C", "D"]
    footprints = city["gdf"].set_index("code").geometry
    for fid, code in enumerate(codes):
        pts = shapely.points(src[fids == fid, :2])
        assert len(pts) and shapely.covers(footprints[code].buffer(0.01), pts).all(), code
        others = footprints.drop(code)
        assert not any(shapely.covers(g.buffer(-0.01), pts).any() for g in others), code
    assert glb["json"]["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0] == {
        "featureCount": 4, "attribute": 0, "propertyTable": 0}


def test_tileset_passes_checks_and_validator(city, tmp_path):
    from tests.support.gltf_validator import validate

    gdf = city["gdf"]
    many = gpd.GeoDataFrame(
        {"code": [f"K{i}" for i in range(60)], "height": np.linspace(3, 60, 60)},
        geometry=[box(X0 + 5 + (i % 10) * 15, Y0 + 100 + (i // 10) * 15, X0 + 15 + (i % 10) * 15,
                      Y0 + 110 + (i // 10) * 15) for i in range(60)],
        crs=gdf.crs,
    )
    fp = tmp_path / "many.gpkg"
    many.to_file(fp)
    res = build_buildings(fp, city["dem"], city["out"], options=BuildingOptions(tile_capacity=10))
    assert res.tiles > 4
    root = relative_transforms(rebase_uris(res.root, "buildings/"))
    Tileset(geometric_error=500, root=root).write(city["out"] / "buildings" / "tileset.json")
    report = check_tileset(city["out"] / "buildings" / "tileset.json")
    assert report.ok, report.problems
    assert report.vertices_checked > 0
    # coarse tiles show the tallest buildings; their error is the largest size left to the children
    ts = Tileset.read(city["out"] / "buildings" / "tileset.json")
    assert ts.root.geometric_error == pytest.approx(max(h for h in np.linspace(3, 60, 60)[:-10]), rel=1e-6)
    assert all(t.geometric_error == 0 for t, _ in ts.tiles() if not t.children)
    reports = validate(_tiles(city["out"]))
    assert all(r.ok for r in reports), "\n".join(r.describe() for r in reports if not r.ok)


def test_unbuildable_footprints_are_skipped_with_reasons(tmp_path):
    gdf = gpd.GeoDataFrame(
        {"code": ["ok", "empty", "point", "tiny", "far"]},
        geometry=[box(X0, Y0, X0 + 10, Y0 + 10), Polygon(), Point(X0, Y0), box(X0, Y0, X0 + 0.5, Y0 + 0.5),
                  box(X0 + 5000, Y0, X0 + 5010, Y0 + 10)],
        crs="EPSG:4547",
    )
    fp = tmp_path / "fp.gpkg"
    gdf.to_file(fp)
    res = build_buildings(fp, _dem(tmp_path / "dem.tif"), tmp_path / "out")
    assert res.buildings == 1
    reasons = {k: v for k, v in res.skipped.reasons.items()}
    assert reasons["no geometry"] == ["empty"]
    assert reasons["not a polygon"] == ["point"]
    assert reasons["footprint smaller than 1 m²"] == ["tiny"]
    assert reasons["outside the DEM (no terrain height under the footprint)"] == ["far"]


def test_invalid_bowtie_is_repaired_not_dropped(tmp_path):
    bowtie = Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])
    assert not bowtie.is_valid
    fp = tmp_path / "fp.gpkg"
    gpd.GeoDataFrame({"code": ["bow"]}, geometry=[bowtie], crs="EPSG:4547").to_file(fp)
    res = build_buildings(fp, _dem(tmp_path / "dem.tif"), tmp_path / "out")
    assert res.buildings == 1 and res.skipped.count == 0


def test_bad_inputs_get_clear_errors(tmp_path):
    dem = _dem(tmp_path / "dem.tif")
    with pytest.raises(InputNotFoundError, match="nope.gpkg"):
        build_buildings(tmp_path / "nope.gpkg", dem, tmp_path / "out")
    gj = tmp_path / "nocrs.csv"
    gj.write_text("WKT,code\n\"POLYGON((0 0,10 0,10 10,0 10,0 0))\",a\n")
    with pytest.raises(CRSError, match="declares no CRS; pass --crs EPSG:"):
        build_buildings(gj, dem, tmp_path / "out")
    fp = tmp_path / "fp.gpkg"
    gpd.GeoDataFrame({"code": ["a"]}, geometry=[box(X0, Y0, X0 + 9, Y0 + 9)], crs="EPSG:4547").to_file(fp)
    with pytest.raises(InputError, match="height field 'hoehe' is not a column"):
        build_buildings(fp, dem, tmp_path / "out", options=BuildingOptions(height_field="hoehe"))


@pytest.mark.realdata
def test_delft_bgt_heights_from_dsm_are_plausible(tmp_path):
    if not SHARED.is_dir():
        pytest.skip(f"real test data not found at {SHARED}")
    res = build_buildings(SHARED / "buildings/delft_bgt/bgt_pand.sqlite", SHARED / "dem/delft_ahn3_dtm_0.5m.tif",
                          tmp_path, dsm=SHARED / "dem/delft_ahn3_dsm_0.5m.tif")
    assert res.buildings == 160 and res.skipped.count == 0
    assert res.height_sources["dsm"] >= 150  # no height attribute in BGT: the DSM gives them
    heights = []
    for glb_path in _tiles(tmp_path):
        props = read_glb(glb_path.read_bytes())["properties"]
        heights += [h for h, s in zip(props["height"], props["height_source"]) if s == "dsm"]
        # the BAG building ID of BGT is kept as the stable ID
        assert all(i.startswith("5031") for i in props["id"])
    heights = np.asarray(heights)
    # Delft's centre: terraced houses and small blocks, eaves to ridges of 3 to 30 m
    assert 4.0 < np.median(heights) < 15.0
    assert np.mean((heights > 2.0) & (heights < 35.0)) > 0.95
    root = relative_transforms(rebase_uris(res.root, "buildings/"))
    Tileset(geometric_error=300, root=root).write(tmp_path / "buildings" / "tileset.json")
    report = check_tileset(tmp_path / "buildings" / "tileset.json")
    assert report.ok, report.problems
    region = np.degrees(np.asarray(Tileset.read(tmp_path / "buildings" / "tileset.json").root.bounding_volume.region[:4]))
    # independently: the footprints' own bounds through pyproj (RD New -> WGS 84, Helmert datum shift)
    fp = gpd.read_file(SHARED / "buildings/delft_bgt/bgt_pand.sqlite").to_crs("EPSG:4326")
    assert np.allclose(region, fp.total_bounds, atol=2e-6)  # ~15 cm: the 1 cm pad plus the datum method
    assert json.dumps(res.to_dict())  # serialisable report


def _earcut_each_part(r):
    """The reference: earcut called on every part, as the builder did before its quadrilateral shortcut."""
    import mapbox_earcut

    out = []
    for k in range(len(r.part_start)):
        s, e = int(r.part_start[k]), int(r.part_end[k])
        ends = r.ring_end[r.ring_part == k] - s
        t = mapbox_earcut.triangulate_float64(r.xy[s:e] - r.xy[s], ends.astype(np.uint32)).astype(np.int64) + s
        out.append(t)
    tri = np.concatenate(out).reshape(-1, 3)
    a, b, c = r.xy[tri[:, 0]], r.xy[tri[:, 1]], r.xy[tri[:, 2]]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri = tri[area2 != 0]
    flip = area2[area2 != 0] < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return tri


def test_roof_triangles_are_earcuts_own():
    # quadrilaterals of every kind (convex either way round, concave, self-crossing, with a straight or a near-straight
    # corner, a repeated vertex), rotated rectangles far from the origin, holes, multipolygons, an L-shape
    from cim.models.lod1 import _rings, _roof_triangles

    rng = np.random.default_rng(7)
    geoms = []
    for _ in range(3000):
        p = rng.normal(size=(4, 2)) * rng.uniform(0.5, 80) + rng.uniform(-1, 1, 2) * 5e5
        geoms.append(Polygon(p))
    for _ in range(500):
        c, w, h, a = rng.uniform(-1, 1, 2) * 5e5, rng.uniform(3, 40), rng.uniform(3, 40), rng.uniform(0, np.pi)
        u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        ring = [c, c + w * u, c + w * u + h * v, c + h * v]
        geoms.append(Polygon(ring if rng.random() < 0.5 else ring[::-1]))
    geoms += [Polygon([(0, 0), (1, 0), (2, 0), (2, 2)]), Polygon([(0, 0), (1, 1e-12), (2, 0), (2, 2)]),
              Polygon([(0, 0), (2, 0), (2, 0), (2, 2)]), Polygon([(0, 0), (4, 0), (1, 1), (0, 4)]),
              box(0, 0, 10, 10).difference(box(4, 4, 6, 6)), MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]),
              Polygon([(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)])]
    r = _rings(np.array(geoms, dtype=object))
    got = _roof_triangles(r)
    assert len(got) > 5000
    np.testing.assert_array_equal(got, _earcut_each_part(r))
