"""Staging of an import: validate and repair geometries, reproject to CGCS2000, normalise attribute columns.

Everything here works on private in-memory data (an in-memory DuckDB and Arrow tables), so it needs no lock on the
store: the store is only touched by the short commit that follows (`LayerStore`). Geometry checks run in DuckDB
(parallel, no per-feature Python objects); only the features that fail go through shapely to be repaired or
rejected with a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

from cim.crs import parse_crs, transformer
from layers.db import connect
from layers.errors import GeometryRejectedError, LayerInputError
from layers.models import Rejection
from layers.sources import GEOM, SourceData
from layers.types import STORE_CRS

FID = "fid"
_RESERVED = {FID, GEOM}


@dataclass
class Staged:
    """An import ready to commit.

    Attributes:
        table: `fid` (n,) int64, attribute columns, `geom` (n,) binary WKB in EPSG:4490 lon/lat.
        read: features read from the source.
        repaired: features whose geometry was invalid and was repaired.
        rejected: features left out, with reasons.
        source_crs: the CRS the source coordinates were in.
        key_field: the column that identifies a feature across versions.
        renamed: source column name -> stored name, for columns that had to be renamed.
    """

    source: SourceData
    table: pa.Table
    read: int
    repaired: int
    rejected: list[Rejection]
    source_crs: CRS
    key_field: str
    renamed: dict[str, str]


def crs_label(crs: CRS) -> str:
    """`EPSG:n` when the CRS has an authority code, else its name."""
    auth = crs.to_authority(min_confidence=90)
    return f"{auth[0]}:{auth[1]}" if auth else crs.name


def is_store_crs(crs: CRS) -> bool:
    """True when coordinates in `crs` are already CGCS2000 lon/lat."""
    return bool(crs.equals(CRS.from_user_input(STORE_CRS), ignore_axis_order=True))


def stage(source: SourceData, *, key_field: str | None = None) -> Staged:
    """Validate, repair, reproject and normalise a source read by `read_source`.

    Args:
        source: the features read.
        key_field: attribute identifying a feature across versions (for `diff`); default: the source's
            feature id (`fid`), or the CityJSON object id.

    Returns:
        The staged import.

    Raises:
        GeometryRejectedError: no feature survived validation.
        LayerInputError: `key_field` is not a column of the source.
    """
    assert source.crs is not None
    n = source.table.num_rows
    fids = source.feature_ids
    if fids is None or not (n < 2 or bool(np.all(np.diff(fids) > 0)) or len(np.unique(fids)) == n):
        fids = np.arange(1, n + 1, dtype=np.int64)

    def label(row: int) -> str:
        if source.feature_ids is not None:
            return str(source.feature_ids[row])
        if source.key_field:
            return str(source.table.column(source.key_field)[row].as_py())
        return str(row + 1)
    wkb = source.table.column(GEOM).combine_chunks()
    problems = _find_problems(wkb, geographic=source.crs.is_geographic and is_store_crs(source.crs))
    problems.update({row: reason for row, reason in source.row_errors.items()})

    keep = np.ones(n, dtype=bool)
    rejected: list[Rejection] = []
    replacement: dict[int, bytes] = {}
    for row, reason in sorted(problems.items()):
        if reason == "invalid":
            fixed, why = _repair(bytes(wkb[row].as_py()))
            if fixed is not None:
                replacement[row] = fixed
                continue
            reason = why
        keep[row] = False
        rejected.append(Rejection(feature=label(row), reason=reason))

    geoms_wkb = wkb.to_numpy(zero_copy_only=False)
    if replacement:
        geoms_wkb = geoms_wkb.copy()
        for row, value in replacement.items():
            geoms_wkb[row] = value
    if not is_store_crs(source.crs):
        geoms_wkb, bad = _reproject(geoms_wkb, keep, source.crs)
        for row in bad:
            keep[row] = False
            rejected.append(Rejection(feature=label(row),
                                      reason=f"coordinates cannot be transformed from {crs_label(source.crs)} "
                                             f"to {STORE_CRS} (outside the CRS's area of use?)"))
    if not keep.any():
        sample = "; ".join(f"{r.feature}: {r.reason}" for r in rejected[:5])
        raise GeometryRejectedError(
            f"{source.path}: none of the {n} features has a usable geometry ({sample}); "
            f"if the coordinates look projected, the CRS is wrong: pass --crs"
        )
    attrs, renamed = _normalise(source.table.drop_columns([GEOM]))
    mask = pa.array(keep)
    table = (attrs.filter(mask)
             .add_column(0, FID, pa.array(fids[keep], pa.int64()))
             .append_column(GEOM, pa.array(geoms_wkb[keep], pa.binary())))
    key = key_field or source.key_field or FID
    key = renamed.get(key, key)
    if key not in table.column_names or key == GEOM:
        raise LayerInputError(f"--key {key_field!r} is not a field of {source.path}; fields: "
                              f"{', '.join(c for c in table.column_names if c != GEOM)}")
    return Staged(source, table, n, len(replacement), rejected, source.crs, key, renamed)


def _find_problems(wkb: pa.Array, *, geographic: bool) -> dict[int, str]:
    """Rows whose geometry is missing, unreadable, empty, invalid or (for lon/lat data) out of range."""
    con = connect(None)
    try:
        con.register("src", pa.table({"row": pa.array(np.arange(len(wkb)), pa.int64()), "wkb": wkb}))
        out_of_range = ("WHEN ST_XMin(g) < -180 OR ST_XMax(g) > 180 OR ST_YMin(g) < -90 OR ST_YMax(g) > 90 "
                        "THEN 'coordinates outside the lon/lat range (is the CRS right? pass --crs)' "
                        if geographic else "")
        rows = con.execute(f"""
            SELECT row, problem FROM (
              SELECT row, CASE
                WHEN wkb IS NULL THEN 'no geometry'
                WHEN g IS NULL THEN 'unreadable geometry (corrupt WKB)'
                WHEN ST_IsEmpty(g) THEN 'empty geometry'
                WHEN NOT ST_IsValid(g) THEN 'invalid'
                {out_of_range}
              END AS problem
              FROM (SELECT row, wkb, TRY(ST_GeomFromWKB(wkb)) AS g FROM src))
            WHERE problem IS NOT NULL""").fetchall()
    finally:
        con.close()
    return {int(r): str(p) for r, p in rows}


def _repair(wkb: bytes) -> tuple[bytes | None, str]:
    """Repair an invalid geometry keeping its dimension; (None, reason) when nothing usable remains."""
    geom = shapely.from_wkb(wkb, on_invalid="ignore")
    if geom is None:
        return None, "unreadable geometry (corrupt WKB)"
    reason = shapely.is_valid_reason(geom)
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        return None, f"invalid geometry: non-finite coordinates ({reason})"
    dim = shapely.get_dimensions(geom)
    fixed = shapely.make_valid(geom)
    parts = shapely.get_parts(fixed)
    parts = parts[(shapely.get_dimensions(parts) == dim) & ~shapely.is_empty(parts)]
    if len(parts) == 0:
        return None, f"invalid geometry that cannot be repaired ({reason})"
    if len(parts) == 1:
        result = parts[0]
    else:
        result = {0: shapely.multipoints, 1: shapely.multilinestrings, 2: shapely.multipolygons}[int(dim)](parts)
    if not shapely.is_valid(result):
        return None, f"invalid geometry that cannot be repaired ({reason})"
    return shapely.to_wkb(result), reason


def _reproject(wkb: np.ndarray, keep: np.ndarray, crs: CRS) -> tuple[np.ndarray, list[int]]:
    """Transform the kept geometries to EPSG:4490 lon/lat; rows whose result is not finite are returned as bad."""
    t = transformer(crs, parse_crs(STORE_CRS))

    def move(coords: np.ndarray) -> np.ndarray:
        out = coords.copy()
        out[:, 0], out[:, 1] = t.transform(coords[:, 0], coords[:, 1])
        return out

    rows = np.flatnonzero(keep)
    geoms = shapely.transform(shapely.from_wkb(wkb[rows]), move, include_z=None)
    bounds = shapely.bounds(geoms)
    ok = (np.isfinite(bounds).all(axis=1) & (bounds[:, 0] >= -180) & (bounds[:, 2] <= 180)
          & (bounds[:, 1] >= -90) & (bounds[:, 3] <= 90))
    out = wkb.copy()
    out[rows] = shapely.to_wkb(geoms)
    return out, [int(r) for r in rows[~ok]]


def _normalise(table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """Column types DuckDB and vector tiles take (no DECIMAL, no dictionaries, no nesting) and unique names."""
    columns: list[pa.Array] = []
    names: list[str] = []
    renamed: dict[str, str] = {}
    taken = {r.casefold() for r in _RESERVED}
    for i, name in enumerate(table.column_names):
        col = table.column(i).combine_chunks()
        typ = col.type
        if pa.types.is_dictionary(typ):
            col = col.dictionary_decode()
            typ = col.type
        if pa.types.is_decimal(typ):
            col = col.cast(pa.float64())
        elif pa.types.is_null(typ):
            col = col.cast(pa.string())
        elif pa.types.is_nested(typ):
            col = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                            for v in col.to_pylist()], pa.string())
        elif pa.types.is_large_string(typ):
            col = col.cast(pa.string())
        new = (name or f"field_{i + 1}").strip() or f"field_{i + 1}"
        base, k = new, 1
        while new.casefold() in taken:
            new = f"{base}_{k}"
            k += 1
        taken.add(new.casefold())
        if new != name:
            renamed[name] = new
        columns.append(col)
        names.append(new)
    if not columns:
        return table.select([]), renamed  # keeps the row count
    return pa.table(columns, names=names), renamed


__all__ = ["FID", "Staged", "crs_label", "is_store_crs", "stage"]
