"""Real data: the Delft BGT layers (EPSG:28992), and the sample city's layers from its `sample.json` manifest."""

from __future__ import annotations

import json

import pyogrio
import pytest

from layers import LayerStore
from layers.errors import LayerInputError
from layers.themes import builtin
from tests.support.paths import SHARED_DATA as SHARED

BGT = SHARED / "buildings" / "delft_bgt"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def bgt_store(tmp_path_factory):
    if not BGT.is_dir():
        pytest.skip(f"real BGT data not found at {BGT}")
    path = tmp_path_factory.mktemp("bgt") / "delft.duckdb"
    reports = {}
    with LayerStore(path) as store:
        for f in sorted(BGT.glob("*.sqlite")):
            name = f.stem
            if pyogrio.read_info(f)["features"] == 0:
                with pytest.raises(LayerInputError, match="has no features"):
                    store.import_file(f, name, "spatiotemporal_base/electronic_map")
                continue
            reports[name] = store.import_file(f, name, "spatiotemporal_base/electronic_map", title=f.stem,
                                              department="Gemeente Delft", security="public", key="gml_id")
    return path, reports


def test_all_bgt_layers_import_with_every_feature_accounted_for(bgt_store):
    _, reports = bgt_store
    assert len(reports) == 8  # the other four files of the extract hold no features
    for name, r in reports.items():
        n = pyogrio.read_info(BGT / f"{name}.sqlite")["features"]
        assert r.read == n and r.feature_count + len(r.rejected) == n, name
        assert r.source_crs == "EPSG:28992", name
        lon0, lat0, lon1, lat1 = r.extent
        assert 4.36 < lon0 <= lon1 < 4.38 and 52.00 < lat0 <= lat1 < 52.02, name


def test_bgt_buildings_reproject_like_pyproj_and_query_by_bbox(bgt_store):
    import geopandas as gpd

    path, _ = bgt_store
    ref = gpd.read_file(BGT / "bgt_pand.sqlite").to_crs("EPSG:4490").set_index("gml_id").sort_index()
    with LayerStore(path, read_only=True) as store:
        got = store.query("bgt_pand", fields=["gml_id"]).set_index("gml_id").sort_index()
        assert list(got.index) == list(ref.index)
        assert got.geometry.geom_equals_exact(ref.geometry, tolerance=1e-9).all()
        x0, y0, x1, y1 = store.info("bgt_pand").extent
        window = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
        inside = ref[ref.intersects(__import__("shapely").box(*window))]
        assert sorted(store.query("bgt_pand", bbox=window)["fid"]) == sorted(
            store.query("bgt_pand", where="gml_id IN (" + ",".join(f"'{g}'" for g in inside.index) + ")")["fid"])
        assert store.count("bgt_pand", bbox=window) == len(inside)


def test_sample_city_layers_from_manifest(tmp_path):
    sample = pytest.importorskip("cim.sample")
    city = sample.generate(tmp_path / "city", buildings=150, rasters=False)
    manifest = json.loads(city.manifest.read_text(encoding="utf-8"))
    vectors = [e for e in manifest["files"] if e["kind"] == "vector"]
    assert vectors
    with LayerStore(tmp_path / "city.duckdb") as store:
        for e in vectors:  # every manifest theme is a standard one: no sub-theme needs adding
            r = store.import_file(city.root / e["path"], e["layer"], e["theme"], title=e["title_zh"],
                                  department=e["department"], security=e["security"])
            assert r.source_crs == "EPSG:4547"
            if e.get("feature_count") is not None:
                assert r.feature_count + len(r.rejected) == e["feature_count"], e["layer"]
        assert sorted(i.name for i in store.list()) == sorted(e["layer"] for e in vectors)
        assert {i.name: i.theme for i in store.list()} == {e["layer"]: builtin().get(e["theme"]).path
                                                           for e in vectors}
        assert not store.cursor().execute("SELECT count(*) FROM catalogue.themes").fetchone()[0]
        if {"shelters", "communities"} <= {e["layer"] for e in vectors}:
            stats = store.stats("shelters", "communities", field="capacity", agg="sum")
            assert sum(r.count for r in stats.rows) == store.info("shelters").feature_count
