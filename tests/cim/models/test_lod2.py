"""LOD2 buildings: closed roofs of every type on rectangles, L-shapes and courtyards; the tiled build."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely import affinity

from cim.models.roofs import ROOF_TYPES, as_rectangle, building_solid, rectangle_solids

RECTANGLE = affinity.rotate(shapely.box(0, 0, 20, 10), 30, origin=(0, 0))
L_SHAPE = shapely.Polygon([(0, 0), (20, 0), (20, 8), (8, 8), (8, 20), (0, 20)])
COURTYARD = shapely.Polygon([(0, 0), (30, 0), (30, 24), (0, 24)], [[(10, 8), (10, 16), (20, 16), (20, 8)]])
# far from the origin, as real projected coordinates are
U_SHAPE_FAR = affinity.translate(shapely.Polygon([(0, 0), (16, 0), (16, 19), (11, 19), (11, 4), (4, 4), (4, 19),
                                                  (0, 19)]), 440_000, 4_439_000)


def _closed_and_volume(pos: np.ndarray, tris: np.ndarray) -> tuple[bool, float]:
    """Whether triangles (vertices welded by position) form a closed, consistently oriented surface; its volume."""
    _, inv = np.unique(np.round(pos, 7), axis=0, return_inverse=True)
    t = inv.reshape(-1)[tris]
    assert (t[:, 0] != t[:, 1]).all() and (t[:, 1] != t[:, 2]).all() and (t[:, 0] != t[:, 2]).all()
    edges = np.vstack([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    directed = {tuple(e) for e in edges.tolist()}
    closed = len(directed) == len(edges) and all((b, a) in directed for a, b in directed)
    p = pos - pos.mean(axis=0)
    volume = float(np.einsum("ij,ij->i", p[tris[:, 0]], np.cross(p[tris[:, 1]], p[tris[:, 2]])).sum() / 6)
    return closed, volume


@pytest.mark.parametrize("roof_type", ROOF_TYPES)
@pytest.mark.parametrize("shape", [RECTANGLE, L_SHAPE, COURTYARD, U_SHAPE_FAR], ids=["rect", "L", "hole", "U"])
def test_every_roof_is_watertight_and_outward(shape, roof_type):
    s = building_solid(shape, 50.0, 56.0, 60.0, roof_type)
    closed, volume = _closed_and_volume(s.positions, s.triangles())
    assert closed, f"{roof_type} on {shape.wkt[:40]} is not closed"
    lod1 = shape.area * 6.0
    assert lod1 - 1e-6 <= volume <= shape.area * 10.0 + 1e-6  # positive: faces point outward
    assert s.positions[:, 2].min() == 50.0 and s.positions[:, 2].max() == pytest.approx(
        56.0 if s.roof_type == "flat" else 60.0)
    # roof triangles face up, every roof vertex is between eave and ridge
    p = s.positions
    n = np.cross(p[s.roof[:, 1]] - p[s.roof[:, 0]], p[s.roof[:, 2]] - p[s.roof[:, 0]])
    assert (n[:, 2] > 0).all()
    assert np.isclose(np.abs(n[:, 2]).sum() / 2, shape.area)  # the roof covers the footprint exactly once


def test_rectangle_roof_shapes_and_main_axis():
    # analytic volumes: gabled/shed add half a prism, hipped a prism minus two pyramids, pyramidal a third
    area, rise, w, length = RECTANGLE.area, 4.0, 10.0, 20.0
    expect = {"flat": 0.0, "gabled": area * rise / 2, "shed": area * rise / 2,
              "hipped": w * rise / 2 * (length - w) + w * w * rise / 3, "pyramidal": area * rise / 3}
    for roof_type, extra in expect.items():
        s = building_solid(RECTANGLE, 0.0, 6.0, 10.0, roof_type)
        assert s.roof_type == roof_type and s.fallback is None
        assert _closed_and_volume(s.positions, s.triangles())[1] == pytest.approx(area * 6 + extra)
    g = building_solid(RECTANGLE, 0.0, 6.0, 10.0, "gabled")
    ridge = g.positions[g.positions[:, 2] == 10.0]
    direction = ridge[1, :2] - ridge[0, :2]
    assert abs(np.dot(direction / np.linalg.norm(direction), [np.cos(np.radians(30)), np.sin(np.radians(30))])) \
        == pytest.approx(1.0)


def test_non_rectangles_fall_back_to_a_hipped_skeleton_and_say_so():
    s = building_solid(L_SHAPE, 0, 6, 9, "gabled")
    assert s.roof_type == "hipped" and "straight skeleton" in s.fallback
    # the L's straight skeleton: ridge at half the arm width (4 m) over the eave -> slope 3/4
    assert s.positions[:, 2].max() == pytest.approx(9.0)
    assert building_solid(L_SHAPE, 0, 6, 9, "hipped").fallback is None


def test_vectorised_rectangles_match_the_single_builder():
    corners = as_rectangle(RECTANGLE)[None]
    for roof_type in ROOF_TYPES:
        pos, roof, walls, floor = rectangle_solids(corners, np.array([0.0]), np.array([6.0]), np.array([10.0]),
                                                   roof_type)
        single = building_solid(RECTANGLE, 0.0, 6.0, 10.0, roof_type)
        closed, volume = _closed_and_volume(pos[0], np.vstack([roof, walls, floor]))
        assert closed and volume == pytest.approx(_closed_and_volume(single.positions, single.triangles())[1])


@pytest.fixture(scope="module")
def lod2_city(tmp_path_factory):
    from cim.models.lod2 import build_lod2_buildings
    from cim.sample import generate
    from tiles.tileset import Tileset, relative_transforms

    city = generate(tmp_path_factory.mktemp("sample") / "city", buildings=300, seed=3)
    out = tmp_path_factory.mktemp("lod2")
    res = build_lod2_buildings(city.buildings, city.dem, out, ortho=city.ortho, dsm=city.dsm)
    Tileset(geometric_error=1000, root=relative_transforms(res.root)).write(out / "tileset.json")
    return city, out, res


def test_lod2_build_on_the_sample_city(lod2_city):
    import geopandas as gpd

    from tests.support.gltf_validator import validate
    from tiles.check import check_tileset
    from tiles.gltf import read_glb

    city, out, res = lod2_city
    footprints = gpd.read_file(city.buildings)
    assert res.buildings == len(footprints) and res.textured
    assert set(res.roof_types) == set(ROOF_TYPES)
    assert sum(res.fallbacks.values()) == len(res.fallback_ids) > 0
    report = check_tileset(out / "tileset.json")
    assert report.ok, report.to_dict()["problems"][:5]
    bad = [r.describe() for r in validate(sorted(out.rglob("*.glb"))) if not r.ok]
    assert not bad, "\n".join(bad[:3])
    glb = read_glb(next((out / "buildings").glob("*.glb")).read_bytes())
    assert {"code", "name", "roof_type", "eave_height", "ridge_height", "roof_type_built"} <= set(glb["properties"])
    doc = glb["json"]
    assert doc["images"] and doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]
    assert json.loads((out / "tileset.json").read_text())["asset"]["version"] == "1.1"


def test_level3_without_oblique_builds_lod2_on_terrain(lod2_city, tmp_path):
    from cim.build import build_city
    from tiles.check import check_tileset

    city, _, _ = lod2_city
    report = build_city(tmp_path / "l3", level=3, dem=city.dem, ortho=city.ortho, buildings=city.buildings,
                        dsm=city.dsm)
    assert report.buildings["lod"] == 2 and report.terrain["tiles"] >= 1 and report.oblique is None
    assert any("LOD2 roof" in w for w in report.warnings)
    doc = json.loads((tmp_path / "l3" / "buildings" / "tileset.json").read_text())
    assert doc["extras"]["cim"]["lod"] == 2
    assert check_tileset(tmp_path / "l3" / "tileset.json").ok


def test_bulk_flat_solids_are_closed_for_any_shape():
    from cim.models.roofs import flat_solids

    geoms = np.array([RECTANGLE, L_SHAPE, COURTYARD, shapely.MultiPolygon([L_SHAPE, affinity.translate(
        RECTANGLE, 100, 0)])], dtype=object)
    pos, roof, walls, owner = flat_solids(geoms, np.zeros(4), np.full(4, 7.0))
    tris = np.vstack([roof, walls])
    for b in range(4):
        mine = owner[tris[:, 0]] == b
        assert (owner[tris[mine]] == b).all()
        closed, volume = _closed_and_volume(pos, tris[mine])
        assert closed and volume == pytest.approx(shapely.area(geoms[b]) * 7.0)


def test_roof_texture_keeps_the_roofs_and_fills_the_ground_between_them(tmp_path):
    """The roof texture is the orthophoto under the tile: the texels the roofs sample keep it (to WebP's error),
    the ground between the buildings, which no roof shows, is filled from the roofs and so takes few bytes; under
    `textures="original"` the builder's JPEG of the whole window is kept as before."""
    import io

    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from cim.models.lod2 import _ortho_texture
    from cim.sources.crs import parse_crs
    from tiles.compression import GlbOptions
    from tiles.textures import triangle_mask

    rng = np.random.default_rng(5)
    x0, y1, res, px = 440_000.0, 4_439_200.0, 0.5, 400
    yy, xx = np.mgrid[0:px, 0:px]
    smooth = (np.sin(xx / 9.0) * np.cos(yy / 13.0) * 60 + 120)
    img = np.stack([smooth, smooth[::-1] * 0.8, smooth.T]) + rng.normal(0, 12, (3, px, px))
    path = tmp_path / "ortho.tif"
    with rasterio.open(path, "w", driver="GTiff", width=px, height=px, count=3, dtype="uint8", crs="EPSG:4547",
                       transform=from_origin(x0, y1, res, res)) as dst:
        dst.write(np.clip(img, 0, 255).astype(np.uint8))
    # two rectangular roofs (two triangles each) in a 200 m square tile; UVs as the builder makes them
    bounds = (x0, y1 - 200.0, x0 + 200.0, y1)
    roofs = [(20.0, 30.0, 60.0, 50.0), (120.0, 140.0, 170.0, 190.0)]
    xy = np.array([[x0 + a, y1 - b] for r in roofs for a, b in ((r[0], r[1]), (r[2], r[1]), (r[2], r[3]),
                                                                 (r[0], r[3]))])
    tris = np.concatenate([np.array([[0, 1, 2], [0, 2, 3]]) + 4 * k for k in range(len(roofs))])
    uv = np.column_stack([(xy[:, 0] - bounds[0]) / 200.0, (bounds[3] - xy[:, 1]) / 200.0])
    j = {"ortho": str(path), "crs": parse_crs("EPSG:4547"), "texture_px": 1024, "glb": GlbOptions()}
    whole, mime = _ortho_texture(bounds, j)
    filled, mime_filled = _ortho_texture(bounds, j, uv, tris)
    original, mime_original = _ortho_texture(bounds, {**j, "glb": GlbOptions(textures="original")}, uv, tris)
    assert mime == mime_filled == "image/webp" and mime_original == "image/jpeg"
    assert len(filled) < 0.5 * len(whole)
    src = np.moveaxis(img, 0, -1).clip(0, 255).astype(np.uint8)  # the window is the whole raster here
    roof = triangle_mask(uv, tris, (px, px), margin=0)
    decoded = {k: np.asarray(Image.open(io.BytesIO(v)).convert("RGB"), np.float64)
               for k, v in (("whole", whole), ("filled", filled), ("original", original))}

    def psnr(a: np.ndarray, where: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / ((a - src)[where] ** 2).mean()))

    # on the roofs, at least as good as WebP 80 and JPEG 85 of the whole window (WEBP_QUALITY_FILLED)
    assert psnr(decoded["filled"], roof) >= max(psnr(decoded["whole"], roof), psnr(decoded["original"], roof))
    # between the buildings, far from any roof, the ground is gone: the fill is smooth, the orthophoto is not
    far = ~triangle_mask(uv, tris, (px, px), margin=20)
    assert psnr(decoded["filled"], far) < 25 < psnr(decoded["whole"], far)
    assert np.abs(np.diff(decoded["filled"][far.nonzero()[0][:1000], far.nonzero()[1][:1000]], axis=0)).mean() < 4
