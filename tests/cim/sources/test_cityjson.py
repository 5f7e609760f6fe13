"""The CityJSON reader: every geometry type, LoD choice, semantics, appearances, CityJSONSeq, CityJSON 1.0, broken
objects with reasons, and the real Delft model against the BGT footprints it was made from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from cim.errors import CRSError, InputError, InputNotFoundError
from cim.sources.cityjson import CityJSONReader, read_citymodel, reference_system, triangulate
from tests.support.cityjson import EXPECTED, every_geometry, to_sequence
from tests.support.paths import SHARED_DATA

DELFT = "buildings/delft_lod1.city.json"


@pytest.fixture(scope="module")
def every(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return every_geometry(tmp_path_factory.mktemp("cityjson"))


def _by_id(model):
    return {oid: i for i, oid in enumerate(model.ids)}


def test_every_geometry_type_is_read_with_its_lod_and_surfaces(every: Path) -> None:
    model = read_citymodel(every)
    ids = _by_id(model)
    assert set(ids) == set(EXPECTED["objects"])
    counts = np.bincount(model.surface_object, minlength=len(model))
    for oid, (kind, lod, surfaces) in EXPECTED["objects"].items():
        i = ids[oid]
        assert (model.types[i], model.lods[i], counts[i]) == (kind, lod, surfaces), oid
    assert model.roots[ids["part_a"]] == model.roots[ids["part_b"]] == "parted"
    assert model.parents[ids["part_a"]] == "parted" and model.parents[ids["house"]] is None
    assert model.crs.to_epsg() == 4547
    assert model.lods_found == {"1": 9, "2": 2, "2.2": 1}


def test_unusable_objects_are_left_out_with_their_reason(every: Path) -> None:
    model = read_citymodel(every)
    got = {oid: reason for reason, ids in model.skipped.reasons.items() for oid in ids}
    assert set(got) == set(EXPECTED["skipped"])
    for oid, reason in EXPECTED["skipped"].items():
        assert got[oid].startswith(reason), (oid, got[oid])


def test_lod_choice(every: Path) -> None:
    ids = _by_id(read_citymodel(every, lod="1"))
    assert "house" in ids and "tree" not in ids and "textured" not in ids
    model = read_citymodel(every, lod="2")  # "2" takes the highest 2.x an object has
    lods = dict(zip(model.ids, model.lods, strict=True))
    assert lods == {"house": "2.2", "tree": "2", "textured": "2"}
    reasons = {oid: r for r, ids in model.skipped.reasons.items() for oid in ids}
    assert reasons["road"] == "no LoD 2 geometry (has LoD 1)"
    assert dict(zip(*np.unique(read_citymodel(every, lod="2.2").ids, return_counts=True))) == {"house": 1}


def test_transform_is_applied_in_float64(every: Path) -> None:
    doc = json.loads(every.read_text(encoding="utf-8"))
    model = read_citymodel(every)
    raw = np.asarray(doc["vertices"], np.float64)
    expect = raw * doc["transform"]["scale"] + doc["transform"]["translate"]
    assert np.array_equal(model.vertices[:len(raw)], expect)
    house = model.vertices[model.corner_vertex[model.ring_start[0]]]
    assert np.allclose(house, [500_000.0, 4_400_000.0, 50.0], atol=1e-9)


def test_semantics_materials_and_textures(every: Path) -> None:
    model = read_citymodel(every)
    ids = _by_id(model)
    house = model.surface_range(np.array([ids["house"]]))
    names = [model.semantic_types[s] for s in model.surface_semantic[house]]
    assert names == ["GroundSurface"] + ["WallSurface"] * 4 + ["RoofSurface"] * 2
    assert model.material_theme == "colours"
    assert [model.materials[m]["name"] for m in model.surface_material[house]] == \
        ["ground"] + ["wall"] * 4 + ["roof"] * 2
    tex = model.surface_range(np.array([ids["textured"]]))
    uris = [model.textures[t].uri for t in model.surface_texture[tex]]
    assert uris == ["appearance/wall.jpg"] * 4 + ["appearance/missing.png", "appearance/red.png"]
    assert model.texture_theme == "rgb"
    assert next(t for t in model.textures if t.uri == "appearance/missing.png").path is None
    roof = tex[-1]
    corners = np.arange(model.ring_start[model.surface_start[roof]], model.ring_start[model.surface_start[roof] + 1])
    assert model.uv[model.corner_uv[corners]].tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]
    # another theme: the winter textures are all null
    winter = read_citymodel(every, theme="winter")
    assert winter.texture_theme == "winter" and (winter.surface_texture == -1).all()


def test_triangles_cover_each_surface_once_facing_its_normal(every: Path) -> None:
    model = read_citymodel(every)
    tris = triangulate(model)
    assert not tris.degenerate.any()
    p = model.vertices[model.corner_vertex[tris.corners]]
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    area = np.zeros(model.surfaces)
    np.add.at(area, tris.surface, np.linalg.norm(cross, axis=1) / 2)
    assert (np.einsum("ij,ij->i", cross, tris.normals[tris.surface]) > 0).all()
    for s in range(model.surfaces):
        # reference: the surface in its own plane (SVD basis, independent of Newell and earcut) measured by GEOS
        r0, r1 = model.surface_start[s], model.surface_start[s + 1]
        pts = model.vertices[model.corner_vertex[model.ring_start[r0]:model.ring_start[r1]]]
        centre = pts.mean(axis=0)
        basis = np.linalg.svd(pts - centre)[2][:2]
        rings = [(model.vertices[model.corner_vertex[model.ring_start[r]:model.ring_start[r + 1]]] - centre)
                 @ basis.T for r in range(r0, r1)]
        expect = shapely.Polygon(rings[0], rings[1:]).area
        assert area[s] == pytest.approx(expect, rel=1e-9), s
    ids = _by_id(model)
    road = model.surface_range(np.array([ids["road"]]))
    assert area[road].sum() == pytest.approx(EXPECTED["road_area"], rel=1e-9)
    # outward normals of the LoD2 house: ground down, roofs up, walls level
    house = model.surface_range(np.array([ids["house"]]))
    nz = tris.normals[house][:, 2]
    assert nz[0] == pytest.approx(-1) and (nz[5:] > 0.3).all() and np.allclose(nz[1:5], 0)


def test_sequence_and_version_1_0_read_like_the_document(every: Path, tmp_path: Path) -> None:
    ref = read_citymodel(every)
    for path in (to_sequence(every, tmp_path / "every.city.jsonl"), every_geometry(tmp_path / "v10", version="1.0")):
        model = read_citymodel(path)
        assert dict(zip(model.ids, model.lods, strict=True)) == dict(zip(ref.ids, ref.lods, strict=True))
        assert set(model.skipped.reasons) == set(ref.skipped.reasons) or path.suffix == ".jsonl"
        order = np.argsort(model.ids)
        assert np.array_equal(np.bincount(model.surface_object)[order], np.bincount(ref.surface_object)[
            np.argsort(ref.ids)])
        for oid in ref.ids:  # every object's corners at the same coordinates
            a = ref.vertices[ref.corner_vertex[_corners(ref, oid)]]
            b = model.vertices[model.corner_vertex[_corners(model, oid)]]
            assert np.allclose(a, b, atol=1e-9), (path.name, oid)
        assert [t.uri for t in model.textures] == [t.uri for t in ref.textures]
        assert model.crs.to_epsg() == 4547


def _corners(model, oid: str) -> np.ndarray:
    s = model.surface_range(np.array([list(model.ids).index(oid)]))
    r0, r1 = model.surface_start[s[0]], model.surface_start[s[-1] + 1]
    return np.arange(model.ring_start[r0], model.ring_start[r1])


def test_reference_systems() -> None:
    assert reference_system("https://www.opengis.net/def/crs/EPSG/0/7415").name == "Amersfoort / RD New + NAP height"
    assert reference_system("urn:ogc:def:crs:EPSG::4490").to_epsg() == 4490
    assert reference_system("http://www.opengis.net/def/crs/OGC/1.3/CRS84").is_geographic
    with pytest.raises(CRSError, match="--crs"):
        reference_system(7415)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        read_citymodel(tmp_path / "none.city.json")
    (tmp_path / "a.city.json").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="not a CityJSON document"):
        read_citymodel(tmp_path / "a.city.json")
    (tmp_path / "b.city.json").write_text('{"type": "CityJSON", "CityObjects": {}, "vertices": [], '
                                          '"transform": {"scale": [1, 1], "translate": [0, 0, 0]}}')
    with pytest.raises(InputError, match="transform"):
        read_citymodel(tmp_path / "b.city.json")
    (tmp_path / "c.city.json").write_text('{"type": "CityJSON", "CityObjects": {}, "vertices": [[1, 2]]}')
    with pytest.raises(InputError, match="vertices"):
        read_citymodel(tmp_path / "c.city.json")
    (tmp_path / "d.city.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested"):
        read_citymodel(tmp_path / "d.city.json")
    (tmp_path / "e.city.jsonl").write_text('{"type": "CityJSON", "version": "2.0", "CityObjects": {}, '
                                           '"vertices": []}\n{"type": "CityJSONFeature", "CityObj\n')
    model = read_citymodel(tmp_path / "e.city.jsonl")
    assert len(model) == 0 and "line 2" in next(iter(model.skipped.reasons.values()))[0]


def test_delft_lod1_model_matches_the_bgt_footprints_it_was_made_from() -> None:
    import pyogrio

    data = SHARED_DATA
    if not (data / DELFT).is_file():
        pytest.skip(f"real data {data / DELFT} is absent (../shared/data)")

    with CityJSONReader(data / DELFT) as reader:
        assert reader.version == "2.0" and reader.lods() == {"1": 570}
        model = reader.read()
    assert model.declared_crs.name == "Amersfoort / RD New + NAP height" and model.crs.to_epsg() == 28992
    assert model.object_types == {"Bridge": 3, "Building": 160, "LandUse": 81, "PlantCover": 126, "WaterBody": 3,
                                  "Road": 143, "GenericCityObject": 54}
    assert len(model) == 570 and model.skipped.count == 0
    frame = model.attribute_frame()
    heights = frame["measuredHeight"].to_numpy()[model.types == "Building"]
    assert np.isfinite(heights).all() and 2 < np.median(heights) < 30
    ids, geoms, reasons = model.footprints()
    assert len(ids) == 160 and not reasons
    bgt = pyogrio.read_dataframe(data / "buildings/delft_bgt/bgt_pand.sqlite").set_index("gml_id")
    ref = bgt.loc[ids].geometry.to_numpy()
    iou = shapely.area(shapely.intersection(ref, geoms)) / shapely.area(shapely.union(ref, geoms))
    assert iou.min() > 0.9999


def test_the_garbage_collector_is_paused_while_reading_and_restored(every: Path, tmp_path: Path) -> None:
    """Reading pauses Python's cyclic collector (its millions of lists hold no cycles) and gives it back as it was:
    on after a read, after a failed read, and left off when the caller had it off."""
    import gc

    from cim.sources import cityjson

    seen = []
    original = cityjson._Builder.add_chunk

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        seen.append(gc.isenabled())
        return original(self, *args, **kwargs)

    assert gc.isenabled()
    cityjson._Builder.add_chunk = spy
    try:
        assert len(read_citymodel(every)) > 0
    finally:
        cityjson._Builder.add_chunk = original
    assert seen == [False] and gc.isenabled()
    bad = tmp_path / "bad.city.json"
    bad.write_text('{"type": "CityJSON", "CityObjects": {}, "vertices": [[0, 0]]', encoding="utf-8")
    with pytest.raises(InputError):
        read_citymodel(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        read_citymodel(every)
        assert not gc.isenabled()
    finally:
        gc.enable()
