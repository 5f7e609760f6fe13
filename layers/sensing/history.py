"""Importing a history of readings (CSV or Parquet) into the sensing store, directly or through a running server.

    >>> report = import_history("levels_2024.csv", store="city.duckdb")                       # doctest: +SKIP
    >>> report = import_history("levels_2024.csv", server="http://127.0.0.1:8000", api_key=KEY)  # doctest: +SKIP

Columns (names as below, case-insensitive):
- the Datastream: `datastream_id` (or `datastream`, `Datastream/id`: integer ids), or `datastream` holding
  Datastream names (each must name exactly one Datastream);
- the time: `phenomenon_time` (or `phenomenonTime`, `time`): ISO 8601 text, or a timestamp column; a time without a
  zone is read in `timezone` (default UTC; Chinese loggers usually write Beijing time: pass `Asia/Shanghai`);
- `result`: numbers (or text/booleans for Datastreams of those types);
- optional `result_time` (`resultTime`) and `feature_id` (`FeatureOfInterest/id`).

The whole file is read and checked before anything is written. Directly, the import is one transaction: all rows
or none. Through a server (the store's writer, see docs/sensing.md) it is sent as `CreateObservations` requests of
`batch` rows, each its own transaction; a failure stops the import and the report says how many rows were stored,
so the rest can be sent again with `skip`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from layers.sensing.errors import QueryError, SensingError, SensingInputError
from layers.sensing.values import LOCAL, iso

_ALIASES = {
    "datastream": ("datastream_id", "datastream", "datastream/id", "datastream_name"),
    "time": ("phenomenon_time", "phenomenontime", "time", "timestamp"),
    "result": ("result", "value"),
    "result_time": ("result_time", "resulttime"),
    "feature": ("feature_id", "featureofinterest/id", "featureofinterest"),
}
Progress = Callable[[int, int], None]


@dataclass
class HistoryReport:
    """What an import stored."""

    file: str
    rows: int
    stored: int
    datastreams: list[int]
    first_time: str | None
    last_time: str | None
    seconds: float
    via: str
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _column(table: pa.Table, role: str, required: bool, path: Path) -> str | None:
    names = {n.lower(): n for n in table.column_names}
    for alias in _ALIASES[role]:
        if alias in names:
            return names[alias]
    if required:
        raise SensingInputError(f"{path}: no {role} column; name one of {', '.join(_ALIASES[role])} "
                                f"(found {', '.join(table.column_names[:12])})")
    return None


def _read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".geoparquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix in (".csv", ".txt", ".tsv"):
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            conv = pcsv.ConvertOptions(strings_can_be_null=True, column_types={})
            return pcsv.read_csv(path, parse_options=opts, convert_options=conv)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SensingInputError(f"{path}: cannot read it as {suffix[1:]}: {exc}") from None
    raise SensingInputError(f"{path}: {suffix or 'no suffix'} is not a history file; give .csv or .parquet")


def _times(col: pa.ChunkedArray, timezone: str, what: str) -> pa.Array:
    """A column of times as timestamp[us] in UTC (naive)."""
    arr = col.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None and timezone != "UTC":
            arr = pc.assume_timezone(arr, timezone)
        return arr.cast(pa.timestamp("us"))  # a zoned timestamp holds UTC: dropping the zone keeps the instant
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise SensingInputError(f"{what} must be ISO 8601 text or timestamps, not {arr.type}")
    from zoneinfo import ZoneInfo

    from layers.sensing.odata import parse_time

    zone = None if timezone == "UTC" else ZoneInfo(timezone)
    out = []
    for i, text in enumerate(arr.to_pylist()):
        if text is None:
            raise SensingInputError(f"{what} row {i + 1} is empty")
        s = text.strip().replace(" ", "T", 1)
        has_zone = s.endswith("Z") or (len(s) > 19 and s[-6] in "+-" and s[-3] == ":")
        if zone is not None and not has_zone:
            from datetime import datetime

            try:
                local = datetime.fromisoformat(s)
            except ValueError:
                raise SensingInputError(f"{what} row {i + 1}: {text!r} is not an ISO 8601 time") from None
            out.append(local.replace(tzinfo=zone).astimezone(ZoneInfo("UTC")).replace(tzinfo=None))
            continue
        try:
            out.append(parse_time(s, f"{what} row {i + 1}"))
        except QueryError as exc:
            raise SensingInputError(str(exc)) from None
    return pa.array(out, pa.timestamp("us"))


def read_history(path: str | os.PathLike[str], datastreams: dict[str, int] | None = None, *,
                 timezone: str = "UTC") -> pa.Table:
    """Read and check a history file into the `observations` layout (ids null).

    Args:
        path: a .csv or .parquet file.
        datastreams: Datastream names -> ids, to resolve a `datastream` column of names.
        timezone: the zone of times written without one (an IANA name such as `Asia/Shanghai`).

    Raises:
        SensingInputError: a missing column, an unreadable time, a name that matches no Datastream, an empty result.
    """
    from layers.sensing.observations import OBS_SCHEMA

    p = Path(path)
    if not p.is_file():
        raise SensingInputError(f"{p} does not exist")
    table = _read_table(p)
    if table.num_rows == 0:
        raise SensingInputError(f"{p} has no rows")
    ds_name = _column(table, "datastream", True, p)
    ds_col = table[ds_name].combine_chunks()
    if pa.types.is_integer(ds_col.type):
        ds = pc.cast(ds_col, pa.int64())
    else:
        text = pc.cast(ds_col, pa.string()).to_pylist()
        if all(isinstance(t, str) and t.strip().isdigit() for t in text):
            ds = pa.array([int(t) for t in text], pa.int64())
        else:
            if datastreams is None:
                raise SensingInputError(f"{p}: column {ds_name!r} holds names; they are resolved against the "
                                        f"store's Datastreams")
            unknown = sorted({t for t in text if t not in datastreams}, key=str)
            if unknown:
                raise SensingInputError(f"{p}: {len(unknown)} Datastream name(s) match no Datastream (or more than "
                                        f"one), e.g. {unknown[0]!r}")
            ds = pa.array([datastreams[t] for t in text], pa.int64())
    if ds.null_count:
        raise SensingInputError(f"{p}: column {ds_name!r} has empty cells")
    when = _times(table[_column(table, "time", True, p)], timezone, f"{p}: phenomenon time")  # type: ignore[arg-type]
    res_name = _column(table, "result", True, p)
    res = table[res_name].combine_chunks()  # type: ignore[index]
    if res.null_count:
        first = pc.index(pc.is_null(res), True).as_py()
        raise SensingInputError(f"{p}: result is empty in row {first + 1}")
    if pa.types.is_integer(res.type) or pa.types.is_floating(res.type):
        number = pc.cast(res, pa.float64())
        bad = ~np.isfinite(number.to_numpy(zero_copy_only=False))
        if bad.any():
            raise SensingInputError(f"{p}: result in row {int(np.argmax(bad)) + 1} is not a finite number")
        text = pc.cast(res, pa.string()) if pa.types.is_integer(res.type) else pa.nulls(len(res), pa.string())
    else:
        values = pc.cast(res, pa.string()).to_pylist()
        nums, texts = [], []
        for v in values:
            try:
                f = float(v)
                ok = math.isfinite(f)
            except ValueError:
                ok = False
            if ok:
                nums.append(f)
                texts.append(None)
            else:
                nums.append(None)
                texts.append(v if v in ("true", "false") else json.dumps(v, ensure_ascii=False))
        number, text = pa.array(nums, pa.float64()), pa.array(texts, pa.string())
    n = table.num_rows
    rt_name = _column(table, "result_time", False, p)
    result_time = _times(table[rt_name], timezone, f"{p}: result time") if rt_name else pa.nulls(n, pa.timestamp("us"))
    f_name = _column(table, "feature", False, p)
    feature = pc.cast(table[f_name].combine_chunks(), pa.int64()) if f_name else pa.nulls(n, pa.int64())
    nulls_t, nulls_s = pa.nulls(n, pa.timestamp("us")), pa.nulls(n, pa.string())
    return pa.Table.from_arrays([pa.nulls(n, pa.int64()), ds, when, nulls_t, result_time, number, text, nulls_s,
                                 nulls_t, nulls_t, nulls_s, feature], schema=OBS_SCHEMA)


def import_history(path: str | os.PathLike[str], store: str | os.PathLike[str] | None = None, *,
                   server: str | None = None, api_key: str | None = None, timezone: str = "UTC",
                   batch: int = 20_000, skip: int = 0, lock_timeout: float = 30.0,
                   progress: Progress | None = None) -> HistoryReport:
    """Import a history file (the library function behind `cim sensors import`).

    Args:
        path: the file.
        store: the store to open read-write (default `$CIM_STORE` / `./cim.duckdb`); ignored with `server`.
        server: the base URL of the `cim serve --ingest` server that writes the store: send the rows through it.
        api_key: a key with the `sensing:write` grant (with `server`).
        timezone: the zone of times written without one.
        batch: rows per request through a server.
        skip: rows to leave out at the start (to resume an interrupted import through a server).
        progress: called with (rows stored, rows in total).

    Raises:
        SensingInputError: the file is unusable (nothing is stored).
        StoreLockedError: `store` is held by another process; the message names the server to send the file
            through when one writes the store.
        SensingError: the server refused a batch (the report of what was stored is in the message).
    """
    t0 = time.perf_counter()
    p = Path(path)
    if server:
        return _through_server(p, server, api_key, timezone, batch, skip, progress, t0)
    from layers.sensing.store import SensingStore

    with SensingStore(store, lock_timeout=lock_timeout) as s:
        names = _names(s)
        table = read_history(p, names, timezone=timezone)
        if skip:
            table = table.slice(skip)
        ds_ids = sorted(set(table["datastream_id"].to_pylist()))
        _check_datastreams(s, table, ds_ids, p)
        s.submit(table).result()
        if progress:
            progress(table.num_rows, table.num_rows)
        return _report(p, table, table.num_rows, ds_ids, t0, f"store {s.path}")


def _names(s: Any) -> dict[str, int]:
    counts: dict[str, list[int]] = {}
    for m in s.meta().values():
        counts.setdefault(m.name, []).append(m.id)
    return {name: ids[0] for name, ids in counts.items() if len(ids) == 1}


def _check_datastreams(s: Any, table: pa.Table, ds_ids: list[int], path: Path) -> None:
    """Every row's Datastream exists and its results have the right type."""
    meta = s.meta()
    unknown = [d for d in ds_ids if d not in meta]
    if unknown:
        raise SensingInputError(f"{path}: no Datastream {unknown[0]} in the store ({len(unknown)} unknown id(s))")
    s.validate_table(table, LOCAL, what=f"{path}: data row (counted from 0)")


def _report(path: Path, table: pa.Table, stored: int, ds_ids: list[int], t0: float, via: str) -> HistoryReport:
    times = table["phenomenon_time"]
    lo, hi = pc.min(times).as_py(), pc.max(times).as_py()
    return HistoryReport(file=str(path), rows=table.num_rows, stored=stored, datastreams=ds_ids, first_time=iso(lo),
                         last_time=iso(hi), seconds=round(time.perf_counter() - t0, 3), via=via)


def _through_server(path: Path, server: str, api_key: str | None, timezone: str, batch: int, skip: int,
                    progress: Progress | None, t0: float) -> HistoryReport:
    import httpx

    base = server.rstrip("/") + "/sta/v1.1"
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(headers=headers, timeout=300) as client:
        names: dict[str, list[int]] = {}
        url: str | None = f"{base}/Datastreams?$select=id,name&$top=10000"
        while url:
            r = client.get(url)
            if r.status_code != 200:
                raise SensingError(f"{server}: listing Datastreams answered {r.status_code}: {r.text[:300]}")
            doc = r.json()
            for d in doc["value"]:
                names.setdefault(d["name"], []).append(d["@iot.id"])
            url = doc.get("@iot.nextLink")
        table = read_history(path, {k: v[0] for k, v in names.items() if len(v) == 1}, timezone=timezone)
        if skip:
            table = table.slice(skip)
        ds_ids = sorted(set(table["datastream_id"].to_pylist()))
        known = {i for v in names.values() for i in v}
        unknown = [d for d in ds_ids if d not in known]
        if unknown:
            raise SensingInputError(f"{path}: no Datastream {unknown[0]} on {server} (or not visible to this key)")
        stored = 0
        for start in range(0, table.num_rows, batch):
            part = table.slice(start, batch)
            body = _data_array(part)
            r = client.post(f"{base}/CreateObservations", json=body)
            if r.status_code != 201:
                raise SensingError(f"{server} refused rows {skip + start + 1}..{skip + start + part.num_rows} "
                                   f"({r.status_code}: {r.text[:300]}); {stored} rows before them are stored: "
                                   f"resume with --skip {skip + stored}")
            stored += part.num_rows
            if progress:
                progress(stored, table.num_rows)
    return _report(path, table, stored, ds_ids, t0, f"server {server}")


def _data_array(part: pa.Table) -> list[dict[str, Any]]:
    ds = part["datastream_id"].to_pylist()
    times = [iso(t) for t in part["phenomenon_time"].to_pylist()]
    number, text = part["result_number"].to_pylist(), part["result_json"].to_pylist()
    rtimes = [iso(t) for t in part["result_time"].to_pylist()]
    feats = part["feature_id"].to_pylist()
    has_rt, has_f = any(t is not None for t in rtimes), any(f is not None for f in feats)
    groups: dict[int, list[list[Any]]] = {}
    for i, d in enumerate(ds):
        value = json.loads(text[i]) if text[i] is not None else number[i]
        row = [times[i], value] + ([rtimes[i]] if has_rt else []) + ([feats[i]] if has_f else [])
        groups.setdefault(d, []).append(row)
    comps = ["phenomenonTime", "result"] + (["resultTime"] if has_rt else []) + (["FeatureOfInterest/id"] if has_f
                                                                                  else [])
    return [{"Datastream": {"@iot.id": d}, "components": comps, "dataArray": rows} for d, rows in groups.items()]


__all__ = ["HistoryReport", "import_history", "read_history"]
