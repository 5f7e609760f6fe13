"""The items page built as JSON text by DuckDB (`feature_page_json` + `ogc.items_json`, what the route serves) holds
the very document of the Python path (`feature_page` + `ogc.items`), for every selection and property type."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely

from layers import LayerStore
from layers.serving import feature_page, feature_page_json
from layers.store import open_read_only
from tests.tiles.server_support import LAT0, LON0, build_store
from tiles.server import ogc


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LayerStore]:
    root = tmp_path_factory.mktemp("items_json")
    path = build_store(root / "city.duckdb", root / "src")
    rng = np.random.default_rng(3)
    n = 40
    gdf = gpd.GeoDataFrame(
        {"height": np.where(np.arange(n) % 7 == 0, np.nan, np.round(rng.uniform(0, 50, n), 3)),
         "ratio": rng.uniform(0, 1, n).astype(np.float32), "ok": np.arange(n) % 2 == 0,
         "note": [None if i % 5 == 0 else f"a \"quoted\" \\ 名{i}" for i in range(n)]},
        geometry=shapely.points(rng.uniform(LON0, LON0 + 0.01, n), rng.uniform(LAT0, LAT0 + 0.01, n)),
        crs="EPSG:4490")
    stamped = gpd.GeoDataFrame({"seen": [dt.datetime(2024, 5, i + 1, 8, 30) for i in range(5)]},
                               geometry=shapely.points(np.full(5, LON0 + 0.001), np.full(5, LAT0 + 0.001)),
                               crs="EPSG:4490")
    with LayerStore(path) as s:
        for name, frame in (("floats", gdf), ("stamped", stamped)):
            f = root / f"{name}.parquet"  # GeoParquet keeps NaN and float32, which a GeoPackage would not
            frame.to_parquet(f)
            s.import_file(f, name, theme="public_topics", security="public")
    with open_read_only(path, clearance="confidential") as s:
        yield s


def _both(store: LayerStore, name: str, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    info = store.info(name)
    params = {"limit": str(kw.get("limit", 20)), "f": "json"}
    python = ogc.items(feature_page(store, name, **kw), info, "http://h", params, kw.get("limit", 20),
                       kw.get("offset", 0))
    text = json.loads(ogc.items_json(feature_page_json(store, name, **kw), info, "http://h", params,
                                     kw.get("limit", 20), kw.get("offset", 0)))
    python.pop("timeStamp")
    assert isinstance(text.pop("timeStamp"), str)
    return python, text


@pytest.mark.parametrize(("name", "kw"), [
    ("shelters", {}),
    ("shelters", {"limit": 7, "offset": 30}),
    ("shelters", {"bbox": (LON0, LAT0, LON0 + 0.006, LAT0 + 0.006), "limit": 50}),  # large share: scan
    ("shelters", {"bbox": (LON0 + 0.002, LAT0 + 0.002, LON0 + 0.0025, LAT0 + 0.0025)}),  # small share: R-tree
    ("shelters", {"bbox": (LON0, LAT0, LON0 + 0.01, LAT0 + 0.01), "filter": "capacity > 200",
                  "properties": {"kind": "school"}, "limit": 100}),
    ("shelters", {"bbox": (100.0, 10.0, 100.1, 10.1)}),  # nothing matches
    ("hazards", {"bbox": (LON0, LAT0, LON0 + 0.0042, LAT0 + 0.0003), "limit": 5}),
    ("sensors", {"properties": {"名称": "点3"}}),
    ("floats", {"limit": 100}),
    ("floats", {"bbox": (LON0, LAT0, LON0 + 0.005, LAT0 + 0.01), "filter": "ok = true"}),
    ("stamped", {"limit": 3, "offset": 1}),  # timestamps: DuckDB would word them differently, Python path
])
def test_json_page_is_the_python_page(store: LayerStore, name: str, kw: dict[str, Any]) -> None:
    python, text = _both(store, name, **kw)
    assert text == python
    assert python["numberReturned"] == len(python["features"])


def test_json_page_keeps_errors(store: LayerStore) -> None:
    from layers.errors import FilterSyntaxError, LayerInputError

    with pytest.raises(FilterSyntaxError, match="filter"):
        feature_page_json(store, "shelters", filter="capacity >")
    with pytest.raises(LayerInputError, match="nope"):
        feature_page_json(store, "shelters", properties={"nope": "1"})


def test_route_serves_the_json_page(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tiles.server import ServerSettings, create_app

    path = build_store(tmp_path / "city.duckdb", tmp_path / "src")
    with TestClient(create_app(ServerSettings(store=path, log_requests=False))) as c:
        r = c.get("/collections/shelters/items", params={"bbox": f"{LON0},{LAT0},{LON0 + 0.005},{LAT0 + 0.005}",
                                                         "limit": "10", "kind": "park"})
        with open_read_only(path) as s:
            python = ogc.items(feature_page(s, "shelters", bbox=(LON0, LAT0, LON0 + 0.005, LAT0 + 0.005),
                                            properties={"kind": "park"}, limit=10), s.info("shelters"),
                               "http://testserver", dict(r.request.url.params), 10, 0)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    doc = r.json()
    doc.pop("timeStamp")
    python.pop("timeStamp")
    assert doc == python
