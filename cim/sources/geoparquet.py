"""GeoParquet (1.x, WKB encoding) read as Arrow: the attributes, the geometry as plain WKB, and the declared CRS.

The one GeoParquet reader of the project (footprints for `cim build`, layers for `cim layers import`). Its `geo`
metadata is untrusted: every part the spec defines is checked before it is used, and the WKB is returned unparsed,
for the caller to walk with `cim.sources.limits.check_wkb` before any geometry library sees it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cim.errors import CRSError, InputError


@dataclass
class GeoParquetData:
    """A GeoParquet file read into memory.

    Attributes:
        attributes: every column but the primary geometry column.
        wkb: (n,) binary WKB of the primary geometry column (a geoarrow extension type is dropped).
        crs: the declared CRS as text (PROJJSON or a string), "OGC:CRS84" when the metadata leaves `crs` out
            (the spec's default), None when it declares `crs: null` (unknown).
        column: the name of the geometry column.
    """

    attributes: pa.Table
    wkb: pa.ChunkedArray
    crs: str | None
    column: str


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def plain_binary(arr: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Drop a geoarrow extension type: keep the WKB bytes as plain binary."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in chunks]
    out = [c.cast(pa.binary()) if not pa.types.is_binary(c.type) else c for c in out]
    return pa.chunked_array(out, pa.binary())


def read_geoparquet(path: str | os.PathLike[str], *, read_crs: bool = True,
                    part: tuple[int, int, int] | None = None) -> GeoParquetData:
    """Read a GeoParquet file, or one part of it.

    Args:
        path: the file.
        read_crs: read the declared CRS (False when the caller overrides it: a broken declaration then does not
            stop the read).
        part: (row group, first row in it, rows): only these rows are read (one row group decoded), for a task
            that reads one partition of a large file.

    Raises:
        InputError: not Parquet, no or malformed `geo` metadata, an encoding other than WKB, unreadable rows.
        CRSError: a `crs` that is neither PROJJSON nor a string.
    """
    p = Path(path)
    try:
        pf = pq.ParquetFile(p)
        raw = (pf.schema_arrow.metadata or {}).get(b"geo")
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{p}: cannot read as Parquet: {_first_line(exc)}") from exc
    if raw is None:
        raise InputError(f"{p}: Parquet file without GeoParquet 'geo' metadata; write it as GeoParquet")
    bad = f"{p}: its GeoParquet 'geo' metadata"
    try:
        geo = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{bad} is not JSON ({_first_line(exc)}); write the file again with a GeoParquet "
                         f"writer (geopandas, GDAL, DuckDB)") from exc
    if not isinstance(geo, dict) or not isinstance(geo.get("columns", {}), dict):
        raise InputError(f"{bad} is not an object with a 'columns' object (GeoParquet 1.x); write the file "
                         f"again with a GeoParquet writer")
    column = geo.get("primary_column", "geometry")
    spec = geo.get("columns", {}).get(column, {}) if isinstance(column, str) else None
    if not isinstance(spec, dict):
        raise InputError(f"{bad}: primary_column {column!r} has no column description")
    names = pf.schema_arrow.names
    if names.count(column) != 1:
        how = "not a" if column not in names else "more than one"
        raise InputError(f"{bad}: primary_column {column!r} is {how} column of the file; columns: "
                         f"{', '.join(map(str, names))}")
    encoding = spec.get("encoding", "WKB")
    if not isinstance(encoding, str) or encoding.upper() != "WKB":
        raise InputError(f"{p}: geometry encoding {encoding!r} is not supported; write it as WKB")
    gtype = pf.schema_arrow.field(column).type
    gtype = gtype.storage_type if isinstance(gtype, pa.ExtensionType) else gtype
    if not (pa.types.is_binary(gtype) or pa.types.is_large_binary(gtype)):
        raise InputError(f"{bad}: the geometry column {column!r} holds {gtype}, not WKB binary")
    try:
        if part is None:
            table = pf.read()
        else:
            table = pf.read_row_group(part[0]).slice(part[1], part[2])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{p}: cannot read its rows ({_first_line(exc)}); is the file complete?") from exc
    crs: str | None = None
    if read_crs:
        if "crs" not in spec:
            crs = "OGC:CRS84"  # GeoParquet 1.x: a missing crs means OGC:CRS84
        elif spec["crs"] is not None:
            value = spec["crs"]
            if not isinstance(value, (dict, str)):
                raise CRSError(f"{bad}: crs {value!r} is neither PROJJSON nor a string; fix it or pass --crs")
            crs = json.dumps(value) if isinstance(value, dict) else value
    index = names.index(column)
    attributes = table.select([i for i in range(table.num_columns) if i != index])
    return GeoParquetData(attributes, plain_binary(table.column(index)), crs, column)


__all__ = ["GeoParquetData", "plain_binary", "read_geoparquet"]
