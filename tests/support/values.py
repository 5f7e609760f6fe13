"""Property values of every kind and the JSON value each must become (`layers.values.json_value`), in the forms the
four JSON paths receive them: raw Python/numpy/pandas values (`CASES`), a GeoDataFrame of them as
`LayerStore.query` would return (`case_frame`, `FrameStore`), and a real store layer with one column of every type
the store keeps (`every_type_layer`)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

#: (column name, value, the JSON value it must become)
CASES: list[tuple[str, Any, Any]] = [
    ("none", None, None),
    ("nan", float("nan"), None),
    ("inf", float("-inf"), None),
    ("np_nan", np.float32("nan"), None),
    ("nat", pd.NaT, None),
    ("np_nat", np.datetime64("NaT", "ns"), None),
    ("pd_na", pd.NA, None),
    ("np_int", np.int64(7), 7),
    ("np_bool", np.bool_(True), True),
    ("np_float", np.float32(1.5), 1.5),
    ("timestamp", pd.Timestamp("2026-12-04 10:30"), "2026-12-04T10:30:00"),
    ("timestamp_tz", pd.Timestamp("2026-12-04 10:30", tz="Asia/Shanghai"), "2026-12-04T10:30:00+08:00"),
    ("np_datetime", np.datetime64("2026-12-04T10:30:00.000000001"), "2026-12-04T10:30:00.000000001"),
    ("datetime", dt.datetime(2026, 12, 4, 10, 30, 5), "2026-12-04T10:30:05"),
    ("date", dt.date(2026, 12, 4), "2026-12-04"),
    ("time", dt.time(10, 30), "10:30:00"),
    ("decimal", Decimal("1.25"), 1.25),
    ("bytes", b"\x01\xab", "01ab"),
    ("list", [1, 2], "[1, 2]"),
    ("text", "学校", "学校"),
    ("int", 3, 3),
    ("bool", False, False),
    ("float", 0.5, 0.5),
]
EXPECTED: dict[str, Any] = {name: want for name, _, want in CASES}

LON, LAT = 116.305, 39.905  # inside the features below
_BOX = shapely.box(116.30, 39.90, 116.31, 39.91)


def case_frame() -> gpd.GeoDataFrame:
    """One polygon feature (fid 1) around (LON, LAT) with one object column per case, each holding its raw value."""
    cols = {name: pd.Series([value], dtype=object) for name, value, _ in CASES}
    return gpd.GeoDataFrame({"fid": [1], **cols}, geometry=[_BOX], crs="EPSG:4490")


class FrameStore:
    """What `LayerStore.query` would give for values a store column cannot hold (numpy scalars, pd.NA, Decimal,
    lists): every query answers `case_frame()`. `info` is the layer's catalogue entry as identify reads it."""

    def __init__(self) -> None:
        self.info = SimpleNamespace(name="cases", title="cases", theme="public_topics", security="public",
                                    geometry_type="POLYGON")

    def query(self, name: str, **_: Any) -> gpd.GeoDataFrame:
        return case_frame()


#: the store layer's columns: (name, Arrow type, value of feature 1, value of feature 2 (nulls and NaN),
#: JSON of feature 1, JSON of feature 2)
STORE_COLUMNS: list[tuple[str, pa.DataType, Any, Any, Any, Any]] = [
    ("int", pa.int32(), 5, 6, 5, 6),
    ("float", pa.float64(), 1.5, float("nan"), 1.5, None),
    ("float32", pa.float32(), 0.5, None, 0.5, None),
    ("flag", pa.bool_(), True, None, True, None),
    ("text", pa.string(), "学校", None, "学校", None),
    ("blob", pa.binary(), b"\x01\xab", None, "01ab", None),
    ("day", pa.date32(), dt.date(2026, 12, 4), None, "2026-12-04", None),
    ("at", pa.timestamp("us"), dt.datetime(2026, 12, 4, 10, 30), None, "2026-12-04T10:30:00", None),
    ("at_utc", pa.timestamp("us", tz="UTC"), dt.datetime(2026, 12, 4, 10, 30, tzinfo=dt.UTC), None,
     "2026-12-04T10:30:00+00:00", None),
    ("clock", pa.time64("us"), dt.time(10, 30), None, "10:30:00", None),
    ("price", pa.decimal128(6, 2), Decimal("1.25"), None, 1.25, None),
]
STORE_EXPECTED = {1: {c[0]: c[4] for c in STORE_COLUMNS}, 2: {c[0]: c[5] for c in STORE_COLUMNS}}


def every_type_layer(store: Any, folder: Path, name: str = "every_type") -> str:
    """Import into `store` a GeoParquet layer with one column of every type in STORE_COLUMNS: two identical squares
    around (LON, LAT), fid 1 with values, fid 2 with nulls (and NaN); returns the layer name."""
    table = pa.table({
        **{c[0]: pa.array([c[2], c[3]], c[1]) for c in STORE_COLUMNS},
        "geometry": pa.array(shapely.to_wkb([_BOX, _BOX]), pa.binary()),
    })
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}}}
    path = folder / f"{name}.parquet"
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), path)
    store.import_file(path, name, "public_topics", security="public")
    return name


def assert_json_properties(got: dict[str, Any], want: dict[str, Any]) -> None:
    """`got` has exactly `want`'s keys, each value equal to and of the same type as `want`'s (so 7 is not
    np.int64(7), nor 7.0), and is JSON without NaN."""
    assert list(got) == list(want)
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k] or type(got[k]) is not type(want[k])}
    assert wrong == {}, f"(got, want) by property: {wrong}"
    json.dumps(got, allow_nan=False)
