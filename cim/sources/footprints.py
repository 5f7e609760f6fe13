"""Building footprints in: read a vector file, keep what can be built, and say why the rest was skipped.

`read_footprints` returns a GeoDataFrame in the file's own CRS (or `crs` when the file declares none), with every
attribute, in any CRS; `reproject_footprints` puts them in a build's working CRS; `clean_footprints` repairs invalid
polygons, drops what has no area and returns the reasons.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyproj import CRS

from cim.errors import CRSError, InputError, InputNotFoundError
from cim.sources.crs import CRSLike, crs_hint, horizontal_crs, parse_crs, transformer
from cim.sources.geoparquet import plain_binary, read_geoparquet
from cim.sources.limits import check_wkb

MIN_AREA_M2 = 1.0
UNREADABLE = "unreadable_geometry"  # GeoDataFrame.attrs key: row -> reason, for geometries left unparsed
ID_FIELDS = ("code", "id", "building_id", "identificatie", "identificatiebagpnd", "gml_id", "fid")


@dataclass
class Skipped:
    """Buildings left out of a model, by reason: reason -> list of building IDs."""

    reasons: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, ids: list[str] | np.ndarray) -> None:
        ids = [str(i) for i in ids]
        if ids:
            self.reasons.setdefault(reason, []).extend(ids)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.reasons.values())

    def to_dict(self, max_ids: int = 20) -> dict[str, dict[str, object]]:
        return {r: {"count": len(ids), "ids": ids[:max_ids]} for r, ids in self.reasons.items()}


def read_footprints(
    path: str | os.PathLike[str], *, crs: CRSLike | None = None, layer: str | int | None = None,
    part: FootprintPartition | None = None, nulls: Iterable[str] = (),
) -> gpd.GeoDataFrame:
    """Read building footprints from any vector format GDAL reads, or GeoParquet: the whole file or one partition.

    Args:
        path: the file (GeoPackage, GeoJSON, Shapefile, FlatGeobuf, GeoParquet, ...).
        crs: the CRS to assume when the file declares none (or to override a wrong declaration).
        layer: the layer of a multi-layer file; the first one by default.
        part: read only this partition of the file (`footprint_partitions`); rows keep the file's column types.
        nulls: with `part`, the columns that hold a null somewhere in the file (`FootprintScan.nulls`): their
            pandas types are then the whole file's (an integer column with a null anywhere is float64 in every
            partition, as it is when the file is read whole).

    Every geometry is walked by `cim.sources.limits.check_wkb` before GEOS parses it: a corrupt one, or one
    beyond the nesting and size limits, is left empty and its reason is kept in `gdf.attrs[UNREADABLE]` (row ->
    reason), which `clean_footprints` reports.

    Returns:
        The footprints with all their attributes, in the file's CRS (projected or geographic: builders put them
        in their working CRS with `reproject_footprints`).

    Raises:
        InputNotFoundError: no such file.
        InputError: the file cannot be read or holds no polygons.
        CRSError: neither the file nor `crs` gives a CRS.
    """
    p = Path(path)
    given = horizontal_crs(parse_crs(crs, what="--crs"), "--crs") if crs is not None else None
    attrs, wkb, declared = _read_arrow(p, layer, given is None, part)
    return _frame(p, attrs, wkb, declared, given, set(nulls) if part is not None else set())


def read_footprint_attributes(path: str | os.PathLike[str], *, part: FootprintPartition | None = None,
                              layer: str | int | None = None) -> pd.DataFrame:
    """The footprints' attributes (the file or one partition) as `read_footprints` gives them, without parsing a
    geometry: what a scan of the file needs (column types, nulls, ID values) at a fraction of the cost."""
    p = Path(path)
    attrs, _, _ = _read_arrow(p, layer, False, part)
    try:
        return _to_pandas(attrs, set())
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise InputError(f"cannot read the attributes of footprints file {p}: {exc}") from exc


def _read_arrow(p: Path, layer: str | int | None, read_crs: bool,
                part: FootprintPartition | None) -> tuple[pa.Table, pa.ChunkedArray, str | None]:
    """(attributes, plain WKB, declared CRS) of the file or of one partition of it."""
    if not p.exists():
        raise InputNotFoundError(f"footprints file {p} does not exist")
    if p.is_dir():
        raise InputError(f"footprints {p} is a folder; pass one of its files")
    try:
        if p.suffix.lower() in (".parquet", ".geoparquet"):
            span = None if part is None else (part.row_group, part.offset, part.stop - part.start)
            data = read_geoparquet(p, read_crs=read_crs, part=span)
            attrs, wkb, declared = data.attributes, data.wkb, data.crs
        else:
            window = {} if part is None else {"skip_features": part.start, "max_features": part.stop - part.start}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                meta, table = pyogrio.read_arrow(p, layer=layer if part is None else part.layer, **window)
            name = meta.get("geometry_name") or "wkb_geometry"
            if name not in table.column_names:
                raise InputError(f"footprints file {p} has no geometry column")
            attrs, wkb, declared = table.drop_columns([name]), plain_binary(table.column(name)), meta.get("crs")
    except pyogrio.errors.CRSError as exc:
        raise CRSError(f"footprints file {p}: cannot read the CRS it declares ({exc}); fix or delete its "
                       f"declaration (a .prj next to a shapefile) and pass --crs") from exc
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError,
            pa.ArrowException) as exc:
        raise InputError(f"cannot read footprints from {p}: {exc}") from exc
    if len(wkb) == 0 and part is None:
        raise InputError(f"footprints file {p} holds no features")
    return attrs, wkb, declared


def _frame(p: Path, attrs: pa.Table, wkb: pa.ChunkedArray, declared: str | None, given: CRS | None,
           nulls: set[str]) -> gpd.GeoDataFrame:
    # nothing parses a geometry before the walk: GEOS crashes on collections nested 100,000 deep
    unsafe = check_wkb(wkb)
    values = wkb.to_numpy(zero_copy_only=False)
    if unsafe:
        values = values.copy()
        values[np.fromiter(unsafe, np.int64, len(unsafe))] = None
    geoms = shapely.from_wkb(values, on_invalid="ignore")
    try:
        frame = _to_pandas(attrs, nulls)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise InputError(f"cannot read the attributes of footprints file {p}: {exc}") from exc
    gdf = gpd.GeoDataFrame(frame, geometry=geoms)
    gdf.attrs[UNREADABLE] = unsafe
    if given is not None:
        gdf = gdf.set_crs(given, allow_override=True)
    elif declared is None:
        sample = shapely.get_coordinates(geoms[:100])
        raise CRSError(f"footprints file {p} declares no CRS; "
                       + crs_hint(sample_xy=tuple(sample[0]) if len(sample) else None))
    else:
        gdf = gdf.set_crs(horizontal_crs(parse_crs(declared, what=str(p)), str(p)), allow_override=True)
    return gdf


def _to_pandas(attrs: pa.Table, nulls: set[str]) -> pd.DataFrame:
    """The attributes as pandas, with the types the whole file's would have: a column with a null elsewhere in
    the file but none here gets one padding null row first (Arrow picks float64 for integers with nulls, object for
    booleans with nulls), which is dropped again."""
    pad = [c for c in attrs.column_names if c in nulls and attrs.column(c).null_count == 0]
    if not pad or attrs.num_rows == 0:
        return attrs.to_pandas()
    row = attrs.slice(0, 1)
    for c in pad:
        i = row.column_names.index(c)
        row = row.set_column(i, row.field(i), pa.nulls(1, row.field(i).type))
    return pa.concat_tables([attrs, row]).to_pandas().iloc[:-1]


# ------------------------------------------------------------------------------------------------------ partitions
PARTITION_ROWS = 100_000  # footprints per partition: a prepare task's memory is set by this, not by the city
MIN_PARTITION_ROWS = 5_000  # below this a partition's task costs more in overheads than it saves (min_parts)


@dataclass(frozen=True)
class FootprintPartition:
    """Rows `start`..`stop` of a footprints file, which one task reads on its own (`read_footprints(part=)`).

    Attributes:
        path: the file.
        index: the partition's number (0, 1, ... in file order).
        start, stop: the file rows it holds.
        layer: the layer of a multi-layer file (GDAL formats).
        row_group, offset: GeoParquet: the row group holding the rows and the first one's place in it.
    """

    path: str
    index: int
    start: int
    stop: int
    layer: str | int | None = None
    row_group: int | None = None
    offset: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start


def footprint_partitions(path: str | os.PathLike[str], *, rows: int = PARTITION_ROWS,
                         layer: str | int | None = None, min_parts: int = 1) -> list[FootprintPartition]:
    """The file cut into partitions of at most `rows` rows, without reading its features.

    `min_parts` asks for at least that many partitions (smaller ones, never under `MIN_PARTITION_ROWS` rows): a
    wave of partitions on many workers needs two or three for each worker, or most of them wait.

    GeoParquet: within row groups (a partition never spans two: it decodes one row group, so row groups of about
    `rows` rows, as `cim sample` writes, cost one decode each). Other formats: row ranges read through GDAL
    (`skip_features`/`max_features`). Files in spatial order (Hilbert, by district) give each partition a compact
    extent, and so small DEM windows; any order gives the same output.

    Raises:
        InputNotFoundError, InputError: as `read_footprints`.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"footprints file {p} does not exist")
    if p.is_dir():
        raise InputError(f"footprints {p} is a folder; pass one of its files")
    rows = max(1, int(rows))
    out: list[FootprintPartition] = []
    if p.suffix.lower() in (".parquet", ".geoparquet"):
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(p).metadata
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{p}: cannot read as Parquet: {exc}") from exc
        rows = partition_size(rows, meta.num_rows, min_parts)
        start = 0
        for rg in range(meta.num_row_groups):
            n = meta.row_group(rg).num_rows
            for lo in range(0, n, rows):
                k = min(rows, n - lo)
                out.append(FootprintPartition(str(p), len(out), start + lo, start + lo + k, None, rg, lo))
            start += n
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                info = pyogrio.read_info(p, layer=layer, force_feature_count=True)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError) as exc:
            raise InputError(f"cannot read footprints from {p}: {exc}") from exc
        n = int(info["features"])
        rows = partition_size(rows, n, min_parts)
        out = [FootprintPartition(str(p), i, lo, min(n, lo + rows), layer) for i, lo in enumerate(range(0, n, rows))]
    if not out:
        raise InputError(f"footprints file {p} holds no features")
    return out


def partition_size(rows: int, total: int, min_parts: int) -> int:
    """Rows per partition: at most `rows`, and small enough for `min_parts` partitions of at least
    `MIN_PARTITION_ROWS` rows."""
    want = -(-int(total) // max(1, int(min_parts)))
    return max(1, min(int(rows), max(MIN_PARTITION_ROWS, want)))


class LonLat(NamedTuple):
    lon: float
    lat: float


def footprint_bounds(path: str | os.PathLike[str], crs: CRSLike | None = None
                     ) -> tuple[tuple[float, float, float, float], CRS] | None:
    """The extent a footprint file declares (GDAL's layer extent, GeoParquet's `bbox`) and its CRS, without reading
    the features; None when the file does not say (or cannot be read: `read_footprints` then says why)."""
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".geoparquet"):
            import json

            import pyarrow.parquet as pq

            geo = json.loads((pq.ParquetFile(p).schema_arrow.metadata or {}).get(b"geo", b"{}"))
            spec = geo.get("columns", {}).get(geo.get("primary_column", "geometry"), {})
            bbox, declared = spec.get("bbox"), spec.get("crs", "OGC:CRS84")
            if declared is not None and not isinstance(declared, str):
                declared = json.dumps(declared)
        else:
            info = pyogrio.read_info(p)
            bbox, declared = info.get("total_bounds"), info.get("crs")
    except Exception:  # noqa: BLE001 - any failure here is reported by read_footprints with its reason
        return None
    use = crs if crs is not None else declared
    if bbox is None or use is None or len(bbox) != 4 or not np.isfinite(np.asarray(bbox, np.float64)).all():
        return None
    return tuple(float(v) for v in bbox), parse_crs(use, what=str(p))  # type: ignore[return-value]


def lonlat_centre(gdf: gpd.GeoDataFrame) -> LonLat:
    """The middle of the footprints' bounds in longitude/latitude degrees."""
    return bounds_centre(gdf.total_bounds, gdf.crs)


def bounds_centre(bounds: Iterable[float], crs: CRSLike) -> LonLat:
    """The middle of (x0, y0, x1, y1) in `crs`, in longitude/latitude degrees (NaN for NaN bounds)."""
    x0, y0, x1, y1 = bounds
    lon, lat = transformer(crs, "EPSG:4326").transform((x0 + x1) / 2, (y0 + y1) / 2)
    return LonLat(float(lon), float(lat))


def reproject_footprints(gdf: gpd.GeoDataFrame, crs: CRSLike) -> gpd.GeoDataFrame:
    """The footprints in another CRS: every vertex transformed in float64 (east/north order), attributes kept.

    Vertices go through exactly; edges stay straight lines between them in the new CRS (a footprint edge of
    100 m bends by well under a millimetre between a geographic and a projected CRS).
    """
    target = parse_crs(crs)
    if gdf.crs is not None and gdf.crs.equals(target):
        return gdf
    t = transformer(gdf.crs, target)
    geoms = shapely.transform(gdf.geometry.to_numpy(),
                              lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    return gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=target), crs=target)


def building_ids(gdf: pd.DataFrame, id_field: str | None = None) -> np.ndarray:
    """Stable building IDs: `id_field`, else the first known ID column with unique values, else the row number."""
    if id_field is not None:
        if id_field not in gdf.columns:
            raise InputError(f"ID field {id_field!r} is not a column of the footprints; columns: {list(gdf.columns)}")
        candidates = [id_field]
    else:
        candidates = [c for c in ID_FIELDS if c in gdf.columns]
    for col in candidates:
        values = gdf[col]
        if values.notna().all() and values.is_unique:
            return values.astype(str).to_numpy()
        if id_field is not None:
            raise InputError(f"ID field {id_field!r} has missing or repeated values; pick a unique column")
    return np.array([f"b{i}" for i in range(len(gdf))], dtype=object)


def clean_footprints(gdf: gpd.GeoDataFrame, ids: np.ndarray, skipped: Skipped) -> tuple[np.ndarray, np.ndarray]:
    """Polygonal, valid footprints with area; the others are recorded in `skipped`.

    Returns:
        (keep, geoms): keep (n,) bool over the input rows, geoms (k,) the repaired (Multi)Polygons of the kept rows (any ring orientation).
    """
    geoms = gdf.geometry.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    unreadable: dict[int, str] = gdf.attrs.get(UNREADABLE) or {}
    by_reason: dict[str, list[int]] = {}
    for row, reason in unreadable.items():
        by_reason.setdefault(reason, []).append(row)
    for reason, rows in by_reason.items():
        skipped.add(reason, ids[rows])
    if unreadable:
        missing_reported = missing.copy()
        missing_reported[list(unreadable)] = False
        skipped.add("no geometry", ids[missing_reported])
    else:
        skipped.add("no geometry", ids[missing])
    keep = ~missing
    invalid = keep & ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        fixed = shapely.make_valid(geoms[invalid])
        # make_valid can return a collection of polygons and slivers: keep only the polygonal parts.
        geoms[invalid] = _polygonal_part(fixed)
    types = shapely.get_type_id(geoms)
    polygonal = (types == 3) | (types == 6)
    not_poly = keep & ~polygonal
    skipped.add("not a polygon", ids[not_poly])
    keep &= polygonal
    area = np.zeros(len(geoms))
    area[keep] = shapely.area(geoms[keep])
    tiny = keep & (area < MIN_AREA_M2)
    skipped.add(f"footprint smaller than {MIN_AREA_M2:g} m²", ids[tiny])
    keep &= ~tiny
    return keep, geoms[keep]


def _polygonal_part(geoms: np.ndarray) -> np.ndarray:
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g.geom_type in ("Polygon", "MultiPolygon"):
            out[i] = g
            continue
        parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
        out[i] = shapely.union_all(parts) if parts else shapely.Point()
    return out


def numeric_field(gdf: pd.DataFrame, name: str | None) -> np.ndarray:
    """A column as float64 with NaN for missing, non-numeric or non-positive values; all NaN when absent."""
    if name is None or name not in gdf.columns:
        return np.full(len(gdf), np.nan)
    values = pd.to_numeric(gdf[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan).copy()
    values[~np.isfinite(values) | (values <= 0)] = np.nan
    return values
