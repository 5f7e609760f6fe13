"""glb encoding: geometry round trip, y-up axes, feature IDs, metadata of every column type, validator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiles.compression import GlbOptions
from tiles.errors import TilesError
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable, StringColumn, read_glb, vertex_normals

QUAD = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, 0.0], [0.0, 10.0, 5.0]])
TRIS = np.array([[0, 1, 2], [0, 2, 3]])


def _content(columns: dict, fids=(0, 0, 1, 1)) -> MeshContent:
    prim = Primitive(QUAD, TRIS, vertex_normals(QUAD, TRIS), feature_ids=np.array(fids))
    return MeshContent([prim], PropertyTable("building", columns))


def test_positions_round_trip_and_are_y_up_in_the_file():
    glb = read_glb(_content({"code": ["a", "b"]}).to_glb(GlbOptions(compression="none")))
    assert np.abs(glb["primitives"][0]["positions"] - QUAD).max() == 0
    acc = glb["json"]["accessors"][glb["json"]["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    # north (+y in our frame) is -z in glTF, up (+z) is +y
    assert acc["max"] == [10.0, 5.0, 0.0] and acc["min"] == [0.0, 0.0, -10.0]


def test_every_column_type_round_trips_with_nulls():
    cols = {
        "code": ["甲-001", "B-2"],
        "floors": pd.array([7, None], dtype="Int64"),
        "height": np.array([12.5, np.nan]),
        "public": np.array([True, False]),
        "note": StringColumn.from_values([None, "有"]),
        "empty": ["", ""],
    }
    glb = read_glb(_content(cols).to_glb())
    props = glb["properties"]
    assert props["code"] == ["甲-001", "B-2"]
    assert props["floors"] == [7, None] and props["height"] == [12.5, None]
    assert props["public"] == [True, False]
    assert props["note"] == ["", "有"]  # null strings are stored as noData ""
    assert props["empty"] == ["", ""]
    schema = glb["json"]["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["building"]["properties"]
    assert schema["floors"] == {"type": "SCALAR", "componentType": "INT32", "noData": -2147483648}
    assert schema["note"]["noData"] == "" and "noData" not in schema["code"]
    # a column of empty strings only cannot have a values view of its length (0 bytes; glTF wants >= 1): it is left
    # out of the table and the class property's default gives every row "" (CesiumGS' validator: 0 errors)
    table = glb["json"]["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]
    assert "empty" not in table and schema["empty"] == {"type": "STRING", "default": ""}


def test_feature_ids_and_feature_count_per_primitive():
    for compression in ("none", "meshopt", "draco"):
        glb = read_glb(_content({"code": ["a", "b", "c"]}, fids=(2, 2, 0, 0)).to_glb(GlbOptions(compression=compression)))
        ext = glb["json"]["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]
        assert ext == {"featureCount": 2, "attribute": 0, "propertyTable": 0}
        prim = glb["primitives"][0]
        # meshopt and Draco reorder vertices: compare each vertex's feature ID by its place
        nearest = [int(np.argmin(np.linalg.norm(prim["positions"] - p, axis=1))) for p in QUAD]
        assert prim["feature_ids"][nearest].tolist() == [2, 2, 0, 0]


def test_string_column_take_gathers_bytes():
    col = StringColumn.from_values(["长安街", None, "", "xyz"])
    assert col.take(np.array([3, 0, 0, 1])).to_list() == ["xyz", "长安街", "长安街", None]
    assert col.take(np.array([], dtype=np.int64)).to_list() == []


def test_empty_primitive_is_refused():
    with pytest.raises(TilesError, match="empty primitive"):
        MeshContent([Primitive(np.zeros((0, 3)), np.zeros((0, 3), int))]).to_glb()
    with pytest.raises(TilesError, match="out of range"):
        MeshContent([Primitive(QUAD, np.array([[0, 1, 9]]))]).to_glb()


def test_khronos_validator_accepts_all_column_types_and_textures(tmp_path):
    from io import BytesIO

    from PIL import Image

    from tests.support.gltf_validator import validate

    jpeg = BytesIO()
    Image.new("RGB", (8, 8), (120, 90, 60)).save(jpeg, "JPEG")
    prim = Primitive(QUAD, TRIS, vertex_normals(QUAD, TRIS), texcoords=QUAD[:, :2] / 10,
                     feature_ids=np.array([0, 0, 1, 1]), material=Material(texture=jpeg.getvalue()))
    content = MeshContent([prim], PropertyTable("building", {"code": ["a", "b"], "empty": ["", ""],
                                                             "n": pd.array([1, None], dtype="Int64")}))
    path = tmp_path / "t.glb"
    path.write_bytes(content.to_glb())
    (report,) = validate([path])
    assert report.ok, report.describe()
    assert report.num_errors == 0 and report.num_warnings == 0


@pytest.mark.parametrize("compression", ["none", "meshopt", "draco"])
def test_materials_and_primitives_leave_gltf_defaults_out(compression):
    white = Primitive(QUAD, TRIS, vertex_normals(QUAD, TRIS))
    red = Primitive(QUAD + 20, TRIS, vertex_normals(QUAD, TRIS),
                    material=Material(base_color=(1.0, 0.0, 0.0, 1.0), roughness=0.5))
    doc = read_glb(MeshContent([white, red]).to_glb(GlbOptions(compression=compression)))["json"]
    # baseColorFactor [1, 1, 1, 1], roughnessFactor 1 and mode 4 (triangles) are glTF's defaults
    assert [m["pbrMetallicRoughness"] for m in doc["materials"]] == [
        {"metallicFactor": 0.0},
        {"metallicFactor": 0.0, "baseColorFactor": [1.0, 0.0, 0.0, 1.0], "roughnessFactor": 0.5}]
    assert all("mode" not in p for m in doc["meshes"] for p in m["primitives"])


@pytest.mark.parametrize("compression", ["none", "meshopt", "draco"])
def test_further_feature_id_sets_and_tables_round_trip_in_every_compression(tmp_path, compression):
    from tests.support.gltf_validator import assert_valid
    from tiles.check import check_glb_metadata
    from tiles.gltf import FeatureIdSet

    # a shuffled grid, so that vertex reordering (meshopt) and Draco's own order are exercised; set 1 = a surface
    # type addressing a second table, 2 = "no surface" (nullFeatureId)
    gx, gy = np.meshgrid(np.arange(12) * 5.0, np.arange(12) * 5.0)
    grid = np.column_stack([gx.ravel(), gy.ravel(), (gx * 0.1).ravel()])
    cells = np.array([[r * 12 + c, r * 12 + c + 1, (r + 1) * 12 + c + 1, (r + 1) * 12 + c]
                      for r in range(11) for c in range(11)])
    tris = np.random.default_rng(3).permutation(np.vstack([cells[:, [0, 1, 2]], cells[:, [0, 2, 3]]]))
    surface = np.where(grid[:, 1] > 40, 2, (grid[:, 0] > 25).astype(int))
    prim = Primitive(grid, tris, vertex_normals(grid, tris), feature_ids=(grid[:, 0] > 30).astype(int),
                     extra_feature_ids=[FeatureIdSet(surface, table=1, label="surface", null_id=2)])
    content = MeshContent([prim], PropertyTable("building", {"高度": [1.5, 2.5], "id": ["a", "b"]}),
                          extra_tables=[PropertyTable("surface", {"type": ["RoofSurface", "WallSurface"]})])
    data = content.to_glb(GlbOptions(compression=compression))
    glb = read_glb(data)
    (p,) = glb["primitives"]
    nearest = np.linalg.norm(p["positions"][:, None] - grid[None], axis=2).argmin(axis=1)  # quantized positions
    assert sorted(nearest) == list(range(len(grid)))
    assert (p["extra_feature_ids"][0] == surface[nearest]).all()  # each vertex keeps its surface
    assert glb["tables"] == {"building": {"高度": [1.5, 2.5], "id": ["a", "b"]},
                             "surface": {"type": ["RoofSurface", "WallSurface"]}}
    sets = glb["json"]["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"]
    assert sets[1] == {"featureCount": 2, "attribute": 1, "nullFeatureId": 2, "label": "surface",
                       "propertyTable": 1}
    props = glb["json"]["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["building"]["properties"]
    assert props["property_0"]["name"] == "高度"  # property IDs are identifiers; the name keeps the column's own
    assert check_glb_metadata(read_glb(data, join_parts=False)) == []
    path = tmp_path / "t.glb"
    path.write_bytes(data)
    assert_valid([path])
    with pytest.raises(TilesError, match="property table 2"):
        MeshContent([Primitive(QUAD, TRIS, feature_ids=np.zeros(4), extra_feature_ids=[
            FeatureIdSet(np.zeros(4), table=2)])], content.properties, extra_tables=content.extra_tables).to_glb()


def _enum_wins(strings: list[str]) -> bool:
    """The rule of `_enum_column`, computed in full: an enum's bytes (indices + its JSON + 40) below a STRING's."""
    import json

    names = sorted(set(strings))
    n, k = len(strings), len(names)
    data = sum(len(s.encode()) for s in strings)
    width = 1 if k <= 2**8 else 2
    values = [{"name": s, "value": i} for i, s in enumerate(names)]
    enum_bytes = n * width + len(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()) + 40
    return k <= 2**16 and enum_bytes < data + (n + 1) * (2 if data < 2**16 else 4)


def test_a_column_is_an_enum_exactly_when_that_takes_fewer_bytes():
    from tiles.gltf import _enum_column

    rng = np.random.default_rng(5)
    alphabet = ["a", "街", "道", '"', "\\", "\n", "é", "𝄞", "7"]  # escapes and multi-byte names
    decided = {True: 0, False: 0}

    def column(n: int, k: int, length: int) -> list[str]:
        names = ["".join(rng.choice(alphabet, length)) + str(i) for i in range(k)]
        return [names[i % k] for i in rng.permutation(n)]

    for n in (20, 300, 700, 3000):
        for length in (1, 3, 8):
            # the number of distinct names where the enum stops paying (bisected), and the columns around it
            lo, hi = 1, n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _enum_wins(column(n, mid, length)) else (lo, mid)
            for k in sorted({1, 2, n // 10 + 1, n, *range(max(1, lo - 3), min(n, hi + 3) + 1)}):
                strings = column(n, k, length)
                wins = _enum_wins(strings)
                got = _enum_column(StringColumn.from_values(strings))
                assert (got is not None) == wins, (n, k, length)
                decided[wins] += 1
                if got is not None:
                    index = np.frombuffer(got[1]["values"], "<u1" if k <= 256 else "<u2")
                    back = [v["name"] for v in got[0]["enum"]["values"]]
                    assert [back[i] for i in index] == strings
    assert min(decided.values()) >= 30  # both outcomes met, at the boundary of each size too


def test_feature_counts_and_accessor_bounds_are_exact():
    from tiles.gltf import _distinct, parse_glb

    rng = np.random.default_rng(6)
    for ids in (rng.integers(0, 50, 400), rng.integers(0, 10**7, 300), np.array([-3, 5, 5, 0]),
                np.zeros(0, np.int64), np.arange(7, dtype=np.uint16), rng.integers(0, 3, 9).astype(np.int32)):
        assert _distinct(ids) == len(np.unique(ids))
    positions = (rng.normal(size=(5000, 3)) * [1.0, 1000.0, 0.001]).astype(np.float32)
    prim = Primitive(positions=positions, indices=np.arange(4998, dtype=np.uint32).reshape(-1, 3),
                     feature_ids=rng.integers(0, 40, 5000))
    doc, _ = parse_glb(MeshContent([prim]).to_glb(GlbOptions(compression="none")))
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    y_up = np.column_stack([positions[:, 0], positions[:, 2], -positions[:, 1]])  # glTF is y-up
    assert acc["min"] == [float(v) for v in y_up.min(axis=0)]
    assert acc["max"] == [float(v) for v in y_up.max(axis=0)]
    ext = doc["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]
    assert ext["featureCount"] == len(np.unique(prim.feature_ids))


def test_numpy_columns_encode_as_their_pandas_series_do():
    # plain numpy arrays skip the Series (_encode_numbers): the same property and bytes as the general path
    from tiles.gltf import _encode_column

    rng = np.random.default_rng(3)
    floats = rng.normal(size=500) * 1e3
    floats[rng.random(500) < 0.1] = np.nan
    columns = [floats, np.full(4, np.nan), rng.normal(size=9).astype(np.float32), np.zeros(0),
               rng.integers(-2**31 + 1, 2**31, 300), rng.integers(0, 255, 30).astype(np.uint8), np.zeros(0, np.int64),
               np.array([-2**31, 5]), np.array([2**31, 5]), np.array([2**40, -7], np.int64),
               np.array([2**63 + 5], np.uint64), np.array([1.5, np.inf, -np.inf])]
    for col in columns:
        assert _encode_column(col) == _encode_column(pd.Series(col)), col
