"""LOD2 roofs detected from a DSM: every roof type on rotated rectangles and an L-shape over sloping terrain, with
noise, at 0.5 m cells; fallbacks; attributes winning; watertight solids; agreement with the sample city's roofs."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely import affinity

from cim.models.roofs import (
    MIN_ROOF_SAMPLES,
    as_rectangle,
    building_solid,
    fit_roofs,
    orient_rectangles,
    rectangle_solids,
    roof_frames,
)
from tests.support.paths import SHARED_DATA

CELL = 0.5
NOISE = 0.05  # m, standard deviation of the DSM noise
HEIGHT_TOL = 0.3  # m, eave and ridge within this of the truth
AZIMUTH_TOL = 3.0  # degrees
ORIGIN = (440_000.0, 4_439_000.0)
TURN = 20.0  # every footprint is rotated by this (degrees counter-clockwise), so none is grid-aligned
SIZE = 160  # raster side in cells (80 m)


def _terrain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1000.0 + 0.03 * (x - ORIGIN[0]) + 0.02 * (y - ORIGIN[1])


def _rect(cx: float, cy: float, length: float, width: float) -> shapely.Polygon:
    box = shapely.box(cx - length / 2, cy - width / 2, cx + length / 2, cy + width / 2)
    return affinity.rotate(box, TURN, origin=(cx, cy))


def _unit(deg: float) -> np.ndarray:
    """Unit vector at `deg` counter-clockwise from the x axis."""
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])


def _azimuth(vec: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(vec[0], vec[1])) % 180.0)


L_SHAPE = affinity.translate(affinity.rotate(shapely.Polygon([(0, 0), (20, 0), (20, 8), (8, 8), (8, 18), (0, 18)]),
                                             TURN, origin=(0, 0)), ORIGIN[0] + 48, ORIGIN[1] + 48)

# id: footprint, roof type, eave, ridge (above the base), ridge direction, up-slope direction (sheds)
BUILDINGS = {
    "flat": (_rect(ORIGIN[0] + 12, ORIGIN[1] + 10, 16, 10), "flat", 9.0, 9.0, None, None),
    "shed_side": (_rect(ORIGIN[0] + 34, ORIGIN[1] + 10, 14, 9), "shed", 4.0, 6.0, _unit(TURN), _unit(TURN + 90)),
    "shed_end": (_rect(ORIGIN[0] + 56, ORIGIN[1] + 10, 14, 9), "shed", 5.0, 7.5, _unit(TURN + 90), _unit(TURN + 180)),
    "gabled_along": (_rect(ORIGIN[0] + 12, ORIGIN[1] + 30, 18, 10), "gabled", 6.0, 9.0, _unit(TURN), None),
    "gabled_across": (_rect(ORIGIN[0] + 36, ORIGIN[1] + 30, 18, 10), "gabled", 6.0, 8.0, _unit(TURN + 90), None),
    "hipped": (_rect(ORIGIN[0] + 62, ORIGIN[1] + 30, 20, 12), "hipped", 7.0, 10.0, _unit(TURN), None),
    "pyramidal": (_rect(ORIGIN[0] + 12, ORIGIN[1] + 52, 12, 12), "pyramidal", 15.0, 19.0, None, None),
    "pyramidal_rect": (_rect(ORIGIN[0] + 30, ORIGIN[1] + 52, 14, 10), "pyramidal", 8.0, 11.0, None, None),
    "l_hipped": (L_SHAPE, "hipped", 5.0, 8.0, None, None),
    "l_flat": (affinity.translate(L_SHAPE, 0, -62), "flat", 6.0, 6.0, None, None),
    "tiny": (_rect(ORIGIN[0] + 74, ORIGIN[1] + 74, 1.2, 1.2), "flat", 3.0, 3.0, None, None),
}
# a gabled DSM under footprints whose attributes say otherwise: the attributes win
ATTRIBUTED = {"attr": (_rect(ORIGIN[0] + 60, ORIGIN[1] + 64, 14, 8), "hipped", 3.0, 5.0)}


def _roof_surface(solid_pos: np.ndarray, roof: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of a roof (triangles over positions) at points inside it (NaN where no triangle covers a point)."""
    z = np.full(len(x), np.nan)
    for a, b, c in solid_pos[roof]:
        d = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        l1 = ((b[1] - c[1]) * (x - c[0]) + (c[0] - b[0]) * (y - c[1])) / d
        l2 = ((c[1] - a[1]) * (x - c[0]) + (a[0] - c[0]) * (y - c[1])) / d
        l3 = 1 - l1 - l2
        inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (l3 >= -1e-9)
        z[inside] = (l1 * a[2] + l2 * b[2] + l3 * c[2])[inside]
    return z


def _solid(geom: shapely.Polygon, base: float, eave: float, ridge: float, kind: str, ridge_dir, up_dir):
    """The true roof: the builder's own solid, turned to the wanted direction."""
    corners = as_rectangle(geom)
    if corners is None:
        s = building_solid(geom, base, base + eave, base + ridge, kind)
        return s.positions, s.roof
    nan = np.full((1, 2), np.nan)
    corners = orient_rectangles(corners[None], kind, nan if ridge_dir is None else ridge_dir[None],
                                nan if up_dir is None else up_dir[None])
    pos, roof, _, _ = rectangle_solids(corners, np.array([base]), np.array([base + eave]), np.array([base + ridge]),
                                       kind)
    return pos[0], roof


def _base(geom: shapely.Polygon) -> float:
    xy = shapely.get_coordinates(geom)
    return float(_terrain(xy[:, 0], xy[:, 1]).min())  # the terrain is a plane: lowest at a vertex


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """DEM + DSM (0.5 m cells) and footprints (GeoPackage, no roof attributes except `attr`)."""
    import geopandas as gpd
    import rasterio
    from rasterio.transform import from_origin

    tmp = tmp_path_factory.mktemp("dsm_scene")
    tf = from_origin(ORIGIN[0] - 4, ORIGIN[1] + SIZE * CELL - 4, CELL, CELL)
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    x, y = tf * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    x, y = np.asarray(x), np.asarray(y)
    dem = _terrain(x, y)
    dsm = dem.copy()
    everything = {**BUILDINGS, **{k: (g, "gabled", 7.0, 9.0, None, None) for k, (g, *_) in ATTRIBUTED.items()}}
    for geom, kind, eave, ridge, rdir, udir in everything.values():
        pos, roof = _solid(geom, _base(geom), eave, ridge, kind, rdir, udir)
        inside = shapely.contains_xy(geom, x, y)
        z = _roof_surface(pos, roof, x[inside], y[inside])
        assert np.isfinite(z).all()
        dsm[inside] = z
    dsm += np.random.default_rng(5).normal(0, NOISE, len(dsm))
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 1, "dtype": "float32",
               "crs": "EPSG:4547", "transform": tf, "nodata": -9999.0}
    paths = {}
    for name, arr in (("dem", dem), ("dsm", np.maximum(dsm, dem))):
        paths[name] = tmp / f"{name}.tif"
        with rasterio.open(paths[name], "w", **profile) as dst:
            dst.write(arr.reshape(SIZE, SIZE).astype(np.float32), 1)
    ids = list(BUILDINGS) + list(ATTRIBUTED)
    frame = gpd.GeoDataFrame({
        "id": ids,
        "roof_type": [None] * len(BUILDINGS) + [v[1] for v in ATTRIBUTED.values()],
        "eave_height": [np.nan] * len(BUILDINGS) + [v[2] for v in ATTRIBUTED.values()],
        "ridge_height": [np.nan] * len(BUILDINGS) + [v[3] for v in ATTRIBUTED.values()],
    }, geometry=[v[0] for v in BUILDINGS.values()] + [v[0] for v in ATTRIBUTED.values()], crs="EPSG:4547")
    paths["footprints"] = tmp / "footprints.gpkg"
    frame.to_file(paths["footprints"], driver="GPKG")
    return paths


def test_detects_type_heights_and_ridge_direction(scene):
    from cim.models.lod2 import detect_roofs

    geoms = np.array([v[0] for v in BUILDINGS.values()], dtype=object)
    base = np.array([_base(g) for g in geoms])
    fit = detect_roofs(geoms, "EPSG:4547", base, scene["dsm"])
    for i, (name, (geom, kind, eave, ridge, rdir, udir)) in enumerate(BUILDINGS.items()):
        if name == "tiny":
            assert fit.status[i] == "few_samples" and 0 < fit.samples[i] < MIN_ROOF_SAMPLES
            assert fit.roof_type[i] == "flat" and fit.eave[i] == fit.ridge[i] == pytest.approx(eave, abs=HEIGHT_TOL)
            continue
        assert fit.status[i] == "detected", name
        assert fit.roof_type[i] == kind, f"{name}: detected {fit.model[i]}"
        assert fit.eave[i] == pytest.approx(eave, abs=HEIGHT_TOL), name
        assert fit.ridge[i] == pytest.approx(ridge, abs=HEIGHT_TOL), name
        assert fit.rms[i] < 3 * NOISE, name
        if rdir is not None and shapely.get_num_interior_rings(geom) == 0 and as_rectangle(geom) is not None:
            diff = abs(fit.ridge_azimuth[i] - _azimuth(rdir))
            assert min(diff, 180 - diff) < AZIMUTH_TOL, name
        if udir is not None:
            assert fit.up_dir[i] @ udir == pytest.approx(1.0, abs=1e-3), name
            assert fit.aspect[i] == pytest.approx(np.degrees(np.arctan2(-udir[0], -udir[1])) % 360, abs=AZIMUTH_TOL)
        if kind in ("flat", "pyramidal") or as_rectangle(geom) is None:
            assert np.isnan(fit.ridge_azimuth[i]), name
    counts = fit.counts()
    assert counts["fallback_flat"] == 1 and counts["no_samples"] == 0
    assert counts["detected"] == {"flat": 2, "shed": 2, "gabled": 2, "hipped": 2, "pyramidal": 2}


def test_outliers_are_trimmed_and_few_samples_fall_back():
    # a gabled roof sampled on a 0.5 m grid, with a 3 m chimney and ground-height cells along one eave
    geom = shapely.box(0, 0, 12, 8)
    fr = roof_frames(np.array([geom], dtype=object))
    xs, ys = np.meshgrid(np.arange(0.25, 12, 0.5), np.arange(0.25, 8, 0.5))
    x, y = xs.ravel(), ys.ravel()
    h = 5.0 + 2.0 * (1 - np.abs(y - 4) / 4)
    h[(np.abs(x - 3) < 0.6) & (np.abs(y - 5) < 0.6)] += 3.0
    h[y < 0.5] = 0.0
    fit = fit_roofs(fr, np.zeros(len(x), np.int64), x, y, h)
    assert fit.model[0] == "gabled_along" and fit.used[0] < fit.samples[0]
    assert fit.eave[0] == pytest.approx(5.0, abs=0.05) and fit.ridge[0] == pytest.approx(7.0, abs=0.05)
    few = fit_roofs(fr, np.zeros(5, np.int64), x[:5], y[:5], np.array([4.0, 5.0, 9.0, 5.5, 6.0]))
    assert few.status[0] == "few_samples" and few.roof_type[0] == "flat" and few.eave[0] == few.ridge[0] == 5.5


def test_build_uses_the_dsm_roofs_keeps_attributes_and_stays_watertight(scene, tmp_path):
    from tests.cim.models.test_lod2 import _closed_and_volume

    from cim.models.footprints import BuildingOptions
    from cim.models.lod2 import build_lod2_buildings
    from tiles.gltf import read_glb

    res = build_lod2_buildings(scene["footprints"], scene["dem"], tmp_path, dsm=scene["dsm"],
                               options=BuildingOptions(workers=1))
    det = res.roof_detection
    assert det["footprints"] == len(BUILDINGS) and det["fallback_flat"] == 1 and det["min_samples"] == 12
    assert res.roof_sources == {"attribute": 1, "dsm": len(BUILDINGS) - 1, "dsm_median": 1, "default": 0}
    assert res.to_dict()["roof_detection"] == det
    glbs = [read_glb(p.read_bytes()) for p in sorted((tmp_path / "buildings").glob("*.glb"))]
    seen = {}
    for glb in glbs:
        props = glb["properties"]
        pos = np.vstack([p["positions"] for p in glb["primitives"]])
        fid = np.concatenate([p["feature_ids"] for p in glb["primitives"]])
        offs = np.cumsum([0] + [len(p["positions"]) for p in glb["primitives"]])[:-1]
        tris = np.vstack([p["indices"] + o for p, o in zip(glb["primitives"], offs)])
        for f, name in enumerate(props["id"]):
            mine = tris[fid[tris[:, 0]] == f]
            closed, volume = _closed_and_volume(pos, mine)
            assert closed and volume > 0, name
            seen[name] = {k: props[k][f] for k in ("roof_type_built", "roof_source", "eave_height_built",
                                                   "ridge_height_built", "ridge_azimuth")}
    assert set(seen) == set(BUILDINGS) | set(ATTRIBUTED)
    for name, (geom, kind, eave, ridge, rdir, _) in BUILDINGS.items():
        got = seen[name]
        assert got["roof_type_built"] == kind, name
        assert got["roof_source"] == ("dsm_median" if name == "tiny" else "dsm")
        assert got["eave_height_built"] == pytest.approx(eave, abs=HEIGHT_TOL), name
        assert got["ridge_height_built"] == pytest.approx(ridge, abs=HEIGHT_TOL), name
        if rdir is not None and as_rectangle(geom) is not None:
            diff = abs(got["ridge_azimuth"] - _azimuth(rdir))
            assert min(diff, 180 - diff) < AZIMUTH_TOL, name
    attr = seen["attr"]
    assert attr["roof_source"] == "attribute" and attr["roof_type_built"] == "hipped"
    assert attr["eave_height_built"] == 3.0 and attr["ridge_height_built"] == 5.0


def test_built_gable_and_shed_follow_the_detected_direction(scene, tmp_path):
    """The rebuilt roofs reproduce the DSM: the mesh's ridge runs across, the shed's high edge is on the right side."""
    from cim.models.lod2 import detect_roofs

    for name in ("gabled_across", "shed_end"):
        geom, kind, eave, ridge, rdir, udir = BUILDINGS[name]
        base = _base(geom)
        fit = detect_roofs(np.array([geom], dtype=object), "EPSG:4547", np.array([base]), scene["dsm"])
        corners = orient_rectangles(as_rectangle(geom)[None], kind, fit.ridge_dir, fit.up_dir)
        pos, roof, _, _ = rectangle_solids(corners, np.array([base]), base + fit.eave, base + fit.ridge, kind)
        want_pos, want_roof = _solid(geom, base, eave, ridge, kind, rdir, udir)
        x0, y0, x1, y1 = geom.bounds
        gx, gy = (a.ravel() for a in np.meshgrid(np.linspace(x0, x1, 60), np.linspace(y0, y1, 60)))
        inside = shapely.contains_xy(geom, gx, gy)
        pts = np.column_stack([gx[inside], gy[inside]])
        got = _roof_surface(pos[0], roof, pts[:, 0], pts[:, 1])
        want = _roof_surface(want_pos, want_roof, pts[:, 0], pts[:, 1])
        assert np.nanmax(np.abs(got - want)) < HEIGHT_TOL, name


def test_detection_agrees_with_the_sample_city_roofs():
    """The sample city's DSM is drawn from its roof attributes: detection must give them back.

    Expected types are what the builder makes of the attributes (pitched roofs on non-rectangles are hipped
    straight-skeleton roofs, a hipped roof on a square is pyramidal). Measured on the committed default city (2,500
    buildings, 2 m cells): 2,495 agree; 3 pyramidal roofs on non-square rectangles come out hipped (the generator
    draws them with the hipped profile) and 2 long factory halls gabled -> shed (the terrain rises above part of
    their roofs, so the DSM shows ground there).
    """
    import pandas as pd
    import pyogrio
    import rasterio

    from cim import sample
    from cim.models.lod2 import detect_roofs
    from cim.sources.raster import bilinear

    city = sample.load(sample.committed_sample_dir())
    df = pyogrio.read_dataframe(city.buildings)
    geoms = df.geometry.values
    x0, y0, x1, y1 = shapely.bounds(geoms).T
    with rasterio.open(city.dem) as src:
        base = bilinear(src.read(1), src.transform, (x0 + x1) / 2, (y0 + y1) / 2)  # the generator's base
    fit = detect_roofs(geoms, sample.CRS, base, city.dsm)
    frames = roof_frames(geoms)
    rect = frames.building_rect
    square = rect & np.isclose(np.bincount(frames.owner, frames.half_length, len(geoms)),
                               np.bincount(frames.owner, frames.half_width, len(geoms)), rtol=1e-3)
    expected = df["roof_type"].to_numpy(dtype=object).copy()
    expected[(expected != "flat") & ~rect] = "hipped"
    expected[(expected == "hipped") & square] = "pyramidal"
    assert (fit.status == "detected").all()
    confusion = pd.crosstab(expected, fit.roof_type.astype(str))
    agree = expected == fit.roof_type
    assert agree.mean() >= 0.99, confusion
    for kind in ("flat", "gabled", "hipped", "pyramidal", "shed"):
        assert confusion.loc[kind, kind] >= 0.6 * confusion.loc[kind].sum(), confusion
    known = agree & df["eave_height"].notna().to_numpy()
    eave_err = np.abs(fit.eave[known] - df["eave_height"].to_numpy()[known])
    ridge_err = np.abs(fit.ridge[known] - df["ridge_height"].to_numpy()[known])
    assert (eave_err <= HEIGHT_TOL).mean() >= 0.98 and (ridge_err <= HEIGHT_TOL).mean() >= 0.98


def test_real_delft_row_houses_have_parallel_gables():
    """AHN3 DSM (0.5 m) over BGT footprints in Delft: the rectangular footprints are mostly row houses whose gabled
    roofs all run along the street (measured: 15 of 21 gabled, rms 0.04-0.7 m, ridges at 54-55 degrees but one)."""

    from cim.models.footprints import prepare_footprints
    from cim.models.lod2 import detect_roofs

    shared = SHARED_DATA
    dsm = shared / "dem/delft_ahn3_dsm_0.5m.tif"
    if not dsm.is_file():
        pytest.skip(f"real test data not found at {shared}")
    fp = prepare_footprints(shared / "buildings/delft_bgt/bgt_pand.sqlite", shared / "dem/delft_ahn3_dtm_0.5m.tif",
                            dsm=dsm, crs="EPSG:28992")
    fit = detect_roofs(fp.geoms, fp.crs, fp.base, dsm)
    assert (fit.status == "detected").all()
    rect = roof_frames(fp.geoms).building_rect
    gabled = rect & (fit.roof_type == "gabled")
    assert gabled.sum() >= 0.6 * rect.sum() >= 10
    assert np.median(fit.rms[gabled]) < 0.3
    az = fit.ridge_azimuth[gabled]
    street = np.median(az)
    assert (np.abs(az - street) < 3.0).mean() >= 0.9
    assert (fit.ridge[gabled] - fit.eave[gabled] > 0.3).all() and (fit.eave[gabled] > 2.0).all()
