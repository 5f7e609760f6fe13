"""Planning results as JSON (cim.analysis.planning.output): every value by the store's rule
(`layers.values.json_value`), lists and dicts kept nested, and no NaN (which is not JSON) anywhere."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from cim.analysis.planning.output import geojson, json_records
from tests.support.values import CASES, EXPECTED

#: lists stay JSON arrays in planning results (a building's failing floors); the store writes them as text
PLANNING_EXPECTED = {**EXPECTED, "list": [1, 2]}


def _case_frame() -> gpd.GeoDataFrame:
    cols = {name: pd.Series([value], dtype=object) for name, value, _ in CASES}
    return gpd.GeoDataFrame(cols, geometry=[shapely.box(500_000, 4_400_000, 500_010, 4_400_010)], crs="EPSG:4547")


def test_geojson_writes_every_value_as_the_store_does() -> None:
    doc = geojson(_case_frame())
    (feature,) = doc["features"]
    assert feature["properties"] == PLANNING_EXPECTED
    json.dumps(doc, allow_nan=False)  # NaN, NaT, timestamps, Decimal, bytes: all valid JSON now


def test_json_records_write_every_value_as_the_store_does() -> None:
    (row,) = json_records(pd.DataFrame(_case_frame().drop(columns="geometry")))
    assert row == PLANNING_EXPECTED
    json.dumps(row, allow_nan=False)


@pytest.mark.parametrize(("value", "want"), [
    ([np.int64(3), np.float32("nan"), pd.NaT], [3, None, None]),
    ((np.int32(1), 2.5), [1, 2.5]),
    (np.array([4, 5], dtype=np.int16), [4, 5]),
    ({"shadow": np.float64(0.25), "scheme": [float("inf")], 7: pd.Timestamp("2026-12-04 10:30")},
     {"shadow": 0.25, "scheme": [None], "7": "2026-12-04T10:30:00"}),
])
def test_lists_and_dicts_stay_nested_with_their_items_converted(value: object, want: object) -> None:
    frame = pd.DataFrame({"v": pd.Series([value], dtype=object)})
    assert json_records(frame) == [{"v": want}]
