"""tiles.implicit: subtree files written to the 3D Tiles 1.1 implicit tiling spec and read back."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tiles.errors import TilesError
from tiles.implicit import ImplicitTile, expand, implied_region, morton, read_subtree, write_quadtree

ROOT = [2.0, 0.70, 2.0008, 0.7006, 10.0, 90.0]


def _tree(keys: set[tuple[int, int, int]], content: set[tuple[int, int, int]]) -> list[ImplicitTile]:
    return [ImplicitTile(lv, x, y, content_region=implied_region(ROOT, lv, x, y) if (lv, x, y) in content else None)
            for lv, x, y in sorted(keys)]


def _flatten(t: dict) -> list[dict]:
    return [t] + [d for c in t.get("children") or [] for d in _flatten(c)]


def test_morton_interleaves_x_on_even_bits():
    assert [morton(x, y) for x, y in ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (3, 5))] == [0, 1, 2, 3, 4, 39]


def test_one_subtree_constant_and_bitstream_availability(tmp_path):
    keys = {(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 0, 1), (1, 1, 1)}
    root, schema = write_quadtree(tmp_path, _tree(keys, {(0, 0, 0)}), root_region=ROOT, geometric_error=64.0,
                                  content_uri="{level}/{x}/{y}.glb", refine="ADD", subtree_levels=2)
    doc, blob = read_subtree((tmp_path / "subtrees/0/0/0.subtree").read_bytes())
    assert doc["tileAvailability"] == {"constant": 1}  # all 5 tiles of a 2-level subtree
    assert doc["childSubtreeAvailability"] == {"constant": 0}
    ca = doc["contentAvailability"][0]
    assert ca["availableCount"] == 1
    view = doc["bufferViews"][ca["bitstream"]]
    assert blob[view["byteOffset"]:view["byteOffset"] + view["byteLength"]] == b"\x01"  # bit 0: the root
    table = doc["propertyTables"][doc["contentMetadata"][0]]
    values = doc["bufferViews"][table["properties"]["boundingRegion"]["values"]]
    assert values["byteOffset"] % 8 == 0
    assert np.frombuffer(blob, "<f8", 6, values["byteOffset"]).tolist() == ROOT
    assert schema["classes"]["content"]["properties"]["boundingRegion"]["semantic"] == "CONTENT_BOUNDING_REGION"
    js = root.to_dict()
    assert js["implicitTiling"] == {"subdivisionScheme": "QUADTREE", "subtreeLevels": 2, "availableLevels": 2,
                                    "subtrees": {"uri": "subtrees/{level}/{x}/{y}.subtree"}}
    assert js["boundingVolume"]["region"] == ROOT and js["geometricError"] == 64.0


def test_sparse_tree_over_several_subtrees_round_trips(tmp_path):
    rng = np.random.default_rng(4)
    keys = {(0, 0, 0)}
    for _ in range(60):  # random paths down to level 6: every parent available
        x = y = 0
        for lv in range(1, int(rng.integers(1, 7))):
            x, y = 2 * x + int(rng.integers(2)), 2 * y + int(rng.integers(2))
            keys.add((lv, x, y))
    content = {k for k in keys if rng.random() < 0.7} | {(0, 0, 0)}
    root, _ = write_quadtree(tmp_path, _tree(keys, content), root_region=ROOT, geometric_error=100.0,
                             content_uri="{level}/{x}/{y}.glb", refine="REPLACE", subtree_levels=2)
    tiles = _flatten(expand(tmp_path, root.to_dict()))
    assert {tuple(t["implicit"]) for t in tiles} == keys
    assert {tuple(t["implicit"]) for t in tiles if "content" in t} == content
    for t in tiles:
        lv, x, y = t["implicit"]
        assert t["boundingVolume"]["region"] == implied_region(ROOT, lv, x, y)
        assert t["geometricError"] == 100.0 / 2**lv and t["refine"] == "REPLACE"
        if "content" in t:
            assert t["content"]["uri"] == f"{lv}/{x}/{y}.glb"
            assert t["content"]["boundingVolume"]["region"] == implied_region(ROOT, lv, x, y)
    # one subtree file per available tile on levels 0, 2, 4 (subtree roots), nothing else
    files = {p.relative_to(tmp_path / "subtrees").as_posix() for p in (tmp_path / "subtrees").rglob("*.subtree")}
    assert files == {f"{lv}/{x}/{y}.subtree" for lv, x, y in keys if lv % 2 == 0}
    for f in files:
        data = (tmp_path / "subtrees" / f).read_bytes()
        jlen, blen = struct.unpack_from("<QQ", data, 8)
        assert data[:4] == b"subt" and jlen % 8 == 0 and blen % 8 == 0 and 24 + jlen + blen == len(data)


def test_tile_regions_as_metadata(tmp_path):
    tiles = [ImplicitTile(0, 0, 0, content_region=ROOT, region=ROOT),
             ImplicitTile(1, 1, 0, content_region=None, region=[2.0003, 0.7, 2.0008, 0.7003, 10.0, 50.0])]
    root, schema = write_quadtree(tmp_path, tiles, root_region=[0.0] * 6, geometric_error=8.0,
                                  content_uri="{level}/{x}/{y}.glb", refine="REPLACE")
    assert schema["classes"]["tile"]["properties"]["boundingRegion"]["semantic"] == "TILE_BOUNDING_REGION"
    tree = expand(tmp_path, root.to_dict())
    assert tree["boundingVolume"]["region"] == ROOT  # the root's own region, not the one passed
    assert tree["children"][0]["boundingVolume"]["region"] == tiles[1].region
    assert "content" not in tree["children"][0]


def test_refuses_what_is_not_a_quadtree(tmp_path):
    kw = dict(root_region=ROOT, geometric_error=1.0, content_uri="{level}/{x}/{y}.glb", refine="ADD")
    with pytest.raises(TilesError, match="parent"):
        write_quadtree(tmp_path, _tree({(0, 0, 0), (2, 1, 1)}, set()), **kw)
    with pytest.raises(TilesError, match="root tile"):
        write_quadtree(tmp_path, _tree({(1, 0, 0)}, set()), **kw)
    with pytest.raises(TilesError, match="outside its level"):
        write_quadtree(tmp_path, _tree({(0, 0, 0), (1, 2, 0)}, set()), **kw)
    with pytest.raises(TilesError, match="every tile"):
        write_quadtree(tmp_path, [ImplicitTile(0, 0, 0, region=ROOT), ImplicitTile(1, 0, 0)], **kw)


def test_read_subtree_refuses_broken_files(tmp_path):
    write_quadtree(tmp_path, _tree({(0, 0, 0), (1, 0, 0)}, {(1, 0, 0)}), root_region=ROOT, geometric_error=1.0,
                   content_uri="{level}/{x}/{y}.glb", refine="ADD")
    data = (tmp_path / "subtrees/0/0/0.subtree").read_bytes()
    doc, _ = read_subtree(data)
    assert doc["tileAvailability"]["availableCount"] == 2
    with pytest.raises(TilesError, match="magic"):
        read_subtree(b"glTF" + data[4:])
    with pytest.raises(TilesError, match="header says"):
        read_subtree(data + b"\0" * 8)
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 8 + 1)  # a JSON chunk not padded to 8 bytes
    blob = data[24 + struct.unpack_from("<Q", data, 8)[0]:]
    with pytest.raises(TilesError, match="8 bytes"):
        read_subtree(struct.pack("<IIQQ", 0x74627573, 1, len(js), len(blob)) + js + blob)


# 3 km: wider than one 16-bit grid, so meshopt quantization cuts the mesh into several nodes, or (`one_grid`, kept
# when its file is smaller) puts it on one float32 grid
@pytest.mark.parametrize("extent", [50.0, 3000.0])
@pytest.mark.parametrize("one_grid", [False, True])
def test_placement_puts_every_part_in_ecef_within_1cm(extent, one_grid):
    from cim.geodesy import enu_frame
    from tiles.compression import GlbOptions
    from tiles.gltf import MeshContent, Primitive, _Encoder, read_glb

    frame = enu_frame(np.array([-2_200_000.0, 4_400_000.0, 4_100_000.0]))
    rng = np.random.default_rng(1)
    local = rng.uniform(-extent, extent, (3000, 3)) * [1, 1, 0.02]
    prim = Primitive(positions=local.astype(np.float32), indices=np.arange(3000, dtype=np.uint32).reshape(-1, 3))
    glb = read_glb(_Encoder(MeshContent([prim], placement=frame.matrix), GlbOptions(), one_grid=one_grid).encode())
    js = glb["json"]
    [top] = js["scenes"][0]["nodes"]
    parent = js["nodes"][top]
    assert "mesh" not in parent and len(parent["matrix"]) == 16 and parent["children"]
    assert all("mesh" in js["nodes"][c] and "matrix" not in js["nodes"][c] for c in parent["children"])
    assert (len(parent["children"]) > 1) == (extent > 1000 and not one_grid)
    from scipy.spatial import cKDTree

    ecef = frame.to_ecef(local.astype(np.float32).astype(np.float64))
    got = np.concatenate([p["positions"] for p in glb["primitives"]])
    dist, _ = cKDTree(ecef).query(got)
    assert len(got) == len(ecef) and dist.max() < 0.01
    dist, _ = cKDTree(got).query(ecef)  # and every source vertex is written
    assert dist.max() < 0.01
