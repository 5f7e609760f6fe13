"""The tileset checks find each broken rule (and pass a good tileset)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from cim.models.footprints import BuildingOptions
from cim.models.lod1 import build_buildings
from tiles.check import check_tileset
from tiles.tileset import Tileset, rebase_uris, relative_transforms

X0, Y0 = 440000.0, 4440000.0


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small valid buildings tileset with a parent and children (ADD refinement)."""
    root = tmp_path_factory.mktemp("good")
    gdf = gpd.GeoDataFrame(
        {"code": [f"K{i}" for i in range(40)], "height": np.linspace(3, 40, 40)},
        geometry=[box(X0 + (i % 8) * 20, Y0 + (i // 8) * 20, X0 + (i % 8) * 20 + 12, Y0 + (i // 8) * 20 + 12)
                  for i in range(40)], crs="EPSG:4547")
    gdf.to_file(root / "fp.gpkg")
    with rasterio.open(root / "dem.tif", "w", driver="GTiff", width=100, height=100, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(X0 - 20, Y0 + 180, 2, 2)) as dst:
        dst.write(np.full((100, 100), 1000, "float32"), 1)
    res = build_buildings(root / "fp.gpkg", root / "dem.tif", root, options=BuildingOptions(tile_capacity=8))
    Tileset(geometric_error=500, root=relative_transforms(rebase_uris(res.root, "buildings/"))).write(
        root / "buildings" / "tileset.json")
    return root / "buildings"


def _copy(good: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "ts"
    shutil.copytree(good, out)
    return out, json.loads((out / "tileset.json").read_text())


def _save(out: Path, doc: dict) -> Path:
    (out / "tileset.json").write_text(json.dumps(doc))
    return out / "tileset.json"


def _rules(path: Path) -> set[str]:
    return {p.rule for p in check_tileset(path).problems}


def test_good_tileset_passes(good):
    report = check_tileset(good / "tileset.json")
    assert report.ok, report.problems
    assert report.tiles > 3 and report.contents == report.tiles and report.vertices_checked > 0


def test_child_outside_parent(good, tmp_path):
    out, doc = _copy(good, tmp_path)
    child = doc["root"]["children"][0]
    child["boundingVolume"]["region"][2] += 0.001  # ~6 km east
    assert "bounds" in _rules(_save(out, doc))


def test_geometric_error_growing_downward_and_nonzero_leaf(good, tmp_path):
    out, doc = _copy(good, tmp_path)
    doc["root"]["children"][0]["geometricError"] = doc["root"]["geometricError"] + 1
    leaf = doc["root"]
    while leaf.get("children"):
        leaf = leaf["children"][-1]
    leaf["geometricError"] = 3.0
    rules = _rules(_save(out, doc))
    assert {"geometric-error", "leaf-error"} <= rules


def test_missing_and_escaping_uris(good, tmp_path):
    out, doc = _copy(good, tmp_path)
    doc["root"]["content"]["uri"] = "nope.glb"
    doc["root"]["children"][0]["content"]["uri"] = "../../etc/passwd"
    problems = check_tileset(_save(out, doc)).problems
    messages = " ".join(p.message for p in problems)
    assert "does not resolve" in messages and "outside the tileset folder" in messages


def test_vertices_outside_a_shrunk_volume(good, tmp_path):
    out, doc = _copy(good, tmp_path)
    region = doc["root"]["content"]["boundingVolume"]["region"]
    region[5] = region[4] + 1.0  # cut the roofs off
    doc["root"]["boundingVolume"]["region"][5] = region[5]
    problems = check_tileset(_save(out, doc)).problems
    assert any(p.rule == "bounds" and "vertices" in p.message for p in problems)


def test_broken_transform_moves_vertices_out(good, tmp_path):
    out, doc = _copy(good, tmp_path)
    doc["root"]["transform"][12] += 50.0  # shift the frame 50 m along ECEF x
    assert "bounds" in _rules(_save(out, doc))


def test_feature_id_beyond_the_property_table(good, tmp_path):
    out, doc = _copy(good, tmp_path)
    glb_path = out / doc["root"]["content"]["uri"]
    data = bytearray(glb_path.read_bytes())
    # the JSON chunk says how many rows the property table has: claim fewer than there are features
    length = int.from_bytes(data[12:16], "little")
    js = json.loads(data[20:20 + length])
    js["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["count"] = 1
    text = json.dumps(js, separators=(",", ":")).encode()
    text += b" " * (length - len(text))
    assert len(text) == length
    data[20:20 + length] = text
    glb_path.write_bytes(bytes(data))
    assert "metadata" in _rules(out / "tileset.json")


def test_external_tileset_cycle(tmp_path):
    (tmp_path / "tileset.json").write_text(json.dumps({
        "asset": {"version": "1.1"}, "geometricError": 10,
        "root": {"boundingVolume": {"region": [0, 0, 0.1, 0.1, 0, 10]}, "geometricError": 10,
                 "content": {"uri": "tileset.json"}}}))
    problems = check_tileset(tmp_path / "tileset.json").problems
    assert any("cycle" in p.message for p in problems)
