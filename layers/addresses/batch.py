"""Geocoding a file: a CSV column of addresses in, a CSV or GeoParquet with components, match and score out.

The library function behind `cim geocode run`. The output is written to a temporary file beside `out` and renamed
at the end, so an existing file is replaced only when the new one is complete (and only with `overwrite`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import shapely
from pydantic import BaseModel

from cim.errors import OutputExistsError
from layers.addresses.errors import AddressInputError
from layers.addresses.geocoder import Geocoder, GeocodeResult
from layers.addresses.links import Unmatched, read_table
from layers.addresses.parser import ParsedAddress

OUT_FIELDS = ("match_reason", "match_score", "address_code", "standard_address", "building_code", "lon", "lat",
              "community", "town", "match_note")
ProgressFn = Callable[[str, int, int], None]


class GeocodeReport(BaseModel):
    """What `geocode_file` wrote."""

    source: str
    out: str
    rows: int
    matched: int
    by_reason: dict[str, int]
    unmatched: list[Unmatched]
    seconds: float
    rows_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def results_table(results: list[GeocodeResult]) -> pa.Table:
    """Geocoding results as columns: the match (OUT_FIELDS) and every parsed component (`c_<name>`)."""
    cols: dict[str, pa.Array] = {
        "match_reason": pa.array([r.reason for r in results], pa.string()),
        "match_score": pa.array([round(r.score, 3) for r in results], pa.float64()),
        "address_code": pa.array([r.code for r in results], pa.string()),
        "standard_address": pa.array([r.address for r in results], pa.string()),
        "building_code": pa.array([r.building_code for r in results], pa.string()),
        "lon": pa.array([r.lon for r in results], pa.float64()),
        "lat": pa.array([r.lat for r in results], pa.float64()),
        "community": pa.array([r.community for r in results], pa.string()),
        "town": pa.array([r.town for r in results], pa.string()),
        "match_note": pa.array([r.note for r in results], pa.string()),
    }
    for c in ParsedAddress.COMPONENTS:
        cols[f"c_{c}"] = pa.array([r.components.get(c) for r in results], pa.string())
    return pa.table(cols)


def geocode_file(geocoder: Geocoder, source: str | Path, out: str | Path, *, column: str = "address",
                 fmt: str | None = None, overwrite: bool = False, encoding: str | None = None,
                 progress: ProgressFn | None = None, max_unmatched: int = 1000) -> GeocodeReport:
    """Geocode the `column` of a CSV and write its rows with the match columns appended.

    Args:
        geocoder: the geocoder.
        source: a CSV file (UTF-8 unless `encoding`).
        out: the output file: `.csv`, or `.parquet` (GeoParquet: matched rows get a point, EPSG:4490).
        column: the column holding the address text.
        fmt: csv or parquet (default: from the suffix of `out`).
        overwrite: replace an existing `out`.
        progress: called as progress("geocode", done, total).
        max_unmatched: how many unmatched rows the report lists (all are in the output).

    Raises:
        OutputExistsError: `out` exists and `overwrite` is False.
        AddressInputError: no such column, or an unknown format.
    """
    out = Path(out)
    fmt = fmt or ("parquet" if out.suffix.lower() in (".parquet", ".geoparquet") else "csv"
                  if out.suffix.lower() == ".csv" else None)
    if fmt not in ("csv", "parquet"):
        raise AddressInputError(f"output {out}: unknown format; name it .csv or .parquet, or pass --format")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    table = read_table(source, encoding)
    if column not in table.column_names:
        raise AddressInputError(f"{source} has no column {column!r}; columns: {', '.join(table.column_names)}; "
                                f"pass --column")
    results = geocoder.geocode_many(table.column(column).to_pylist(), progress=progress, total=table.num_rows)
    res = results_table(results)
    for name in res.column_names:
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, res.column(name))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, tmp)
        else:
            import geopandas as gpd

            df = table.to_pandas()
            geom = [shapely.Point(x, y) if x == x and x is not None else None
                    for x, y in zip(df["lon"], df["lat"], strict=True)]
            gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4490").to_parquet(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    by_reason: dict[str, int] = {}
    for r in results:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    unmatched = [Unmatched(row=i + 1, text=r.text, reason=r.reason, note=r.note)
                 for i, r in enumerate(results) if not r.matched][:max_unmatched]
    seconds = time.perf_counter() - t0
    return GeocodeReport(source=str(source), out=str(out), rows=len(results),
                         matched=sum(1 for r in results if r.matched), by_reason=by_reason, unmatched=unmatched,
                         seconds=round(seconds, 3), rows_per_second=round(len(results) / max(seconds, 1e-9), 1))


__all__ = ["OUT_FIELDS", "GeocodeReport", "geocode_file", "results_table"]
