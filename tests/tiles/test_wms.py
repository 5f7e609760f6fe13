"""tiles.wms library functions without a server: GetFeatureInfo's features and their JSON body (the served WMS is
tested in test_server_desktop.py, QGIS and GDAL in test_desktop_clients.py)."""

from __future__ import annotations

import json
from pathlib import Path

from layers import LayerStore
from tests.support.values import (
    EXPECTED,
    LAT,
    LON,
    STORE_EXPECTED,
    FrameStore,
    assert_json_properties,
    every_type_layer,
)
from tiles.wms import feature_info_body, features_at


def test_getfeatureinfo_writes_every_value_as_json(tmp_path: Path) -> None:
    """Raw values of every kind, then every type a store column keeps (the JSON body failed on bytes before)."""
    (feature,) = features_at(FrameStore(), "cases", LON, LAT, 0.001, 5)
    assert feature["id"] == 1
    assert_json_properties(feature["properties"], EXPECTED)
    body, media_type = feature_info_body([feature], "application/json")
    assert media_type == "application/json" and json.loads(body)["features"][0]["properties"] == EXPECTED
    with LayerStore(tmp_path / "city.duckdb") as store:
        features = features_at(store, every_type_layer(store, tmp_path), LON, LAT, 0.001, 5)
    assert [f["id"] for f in features] == [1, 2]
    for f in features:
        assert_json_properties(f["properties"], STORE_EXPECTED[f["id"]])
    assert json.loads(feature_info_body(features, "application/json")[0])["features"][1]["properties"] == \
        STORE_EXPECTED[2]
