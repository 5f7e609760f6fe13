"""一标三实: registries of real population (实有人口), organisations (实有单位) and houses (实有房屋) joined to buildings
by standard address.

`link_registry` geocodes a registry file and stores the records it matched as a layer of the family (a point at
their standard address, with `address_code`, `building_code`, community, town, unit/floor/room and the match
reason and score); records it could not match are not stored and come back in the report with their reasons.
`link_counts` counts records per building, community or town, and `building_links` gives one building's counts
and, to a caller cleared for them, its records.

Security follows the layers: population is confidential by default (names, ID numbers, phones), organisations and
houses internal. A store opened with a lower clearance does not see those layers, so neither their records nor
their counts can leave through it; the tile server opens its own store with full clearance and asks the caller's
grants per layer (`tiles/server/routes/addresses.py`).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely
from pydantic import BaseModel

from layers.addresses.errors import AddressInputError
from layers.addresses.geocoder import Geocoder, GeocodeResult

REGISTRIES: dict[str, dict[str, str]] = {
    "population": {"layer": "address_population", "title": "实有人口", "theme": "public_topics/population",
                   "security": "confidential"},
    "organisations": {"layer": "address_organisations", "title": "实有单位", "theme": "public_topics/legal_entities",
                      "security": "internal"},
    "houses": {"layer": "address_houses", "title": "实有房屋", "theme": "public_topics/housing",
               "security": "internal"},
}
LINK_FIELDS = ("address_code", "building_code", "standard_address", "community", "town", "unit", "floor", "room",
               "match_reason", "match_score")
BY = {"building": "building_code", "community": "community", "town": "town", "address": "address_code"}
ProgressFn = Callable[[str, int, int], None]


class Unmatched(BaseModel):
    row: int
    text: str
    reason: str
    note: str


class LinkReport(BaseModel):
    """What `link_registry` stored and what it could not match."""

    registry: str
    layer: str
    version: int | None
    records: int
    linked: int
    by_reason: dict[str, int]
    unmatched: list[Unmatched]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_table(path: str | Path, encoding: str | None = None) -> pa.Table:
    """A registry CSV as text columns (codes and ID numbers keep their leading zeros).

    Raises:
        AddressInputError: the file does not exist or is not a readable CSV.
    """
    path = Path(path)
    if not path.is_file():
        from cim.errors import InputNotFoundError

        raise InputNotFoundError(f"registry file {path} does not exist")
    enc = encoding or "utf-8"
    try:
        with path.open(encoding=enc, newline="") as f:
            names = next(csv.reader(f), [])
        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding=enc),
                              convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())))
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
        raise AddressInputError(f"{path} is not a readable CSV ({exc}); pass --encoding gbk for GBK files") from exc


def link_registry(store: Any, source: str | Path | pa.Table, kind: str, *, geocoder: Geocoder | None = None,
                  column: str = "address", layer: str | None = None, security: str | None = None,
                  new_version: bool = False, progress: ProgressFn | None = None) -> LinkReport:
    """Geocode a registry and store its matched records as the family's layer of that kind.

    Args:
        store: an open, writable `LayerStore` holding the standard addresses.
        source: a CSV file (UTF-8; text columns) or an Arrow table.
        kind: population, organisations or houses.
        geocoder: the geocoder (default: built from the store's `addresses` layer).
        column: the column holding the address text.
        layer: the layer name (default `address_<kind>`).
        security: public/internal/confidential (default: confidential for population, internal otherwise).
        new_version: add a version to an existing layer.
        progress: called as progress(stage, done, total).

    Raises:
        AddressInputError: unknown kind, no such column, or nothing matched.
    """
    from pyproj import CRS

    from layers.ingest import stage
    from layers.sources import SourceData

    if kind not in REGISTRIES:
        raise AddressInputError(f"registry kind {kind!r} is not one of {', '.join(REGISTRIES)}")
    spec = REGISTRIES[kind]
    t0 = time.perf_counter()
    table = source if isinstance(source, pa.Table) else read_table(source)
    if column not in table.column_names:
        raise AddressInputError(f"registry has no column {column!r}; columns: {', '.join(table.column_names)}; "
                                f"pass --column")
    gc = geocoder or Geocoder.from_store(store)
    results = gc.geocode_many(table.column(column).to_pylist(), progress=progress, total=table.num_rows)
    keep = np.array([r.matched for r in results], bool)
    by_reason: dict[str, int] = {}
    for r in results:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    unmatched = [Unmatched(row=i + 1, text=r.text, reason=r.reason, note=r.note)
                 for i, r in enumerate(results) if not r.matched]
    name = layer or spec["layer"]
    if not keep.any():
        raise AddressInputError(f"no record of {source} matched a standard address ({by_reason}); check the "
                                f"address column ({column!r}) and that the store's addresses cover the registry")
    idx = np.flatnonzero(keep)
    hits = [results[i] for i in idx]
    attrs = table.take(pa.array(idx))
    for f in LINK_FIELDS:
        if f in attrs.column_names:
            attrs = attrs.drop_columns([f])
    extra = _link_columns(hits)
    for f in LINK_FIELDS:
        attrs = attrs.append_column(f, extra[f])
    wkb = shapely.to_wkb(shapely.points([r.lon for r in hits], [r.lat for r in hits]))
    attrs = attrs.append_column("geom", pa.array(wkb, pa.binary()))
    src_path = Path(str(source)) if not isinstance(source, pa.Table) else Path(f"<{kind} registry>")
    staged = stage(SourceData(src_path, "registry", attrs, None, CRS.from_epsg(4490)))
    report = store.commit(staged, name, None if new_version else spec["theme"], title=spec["title"],
                          security=security or (None if new_version else spec["security"]), new_version=new_version,
                          started=t0)
    return LinkReport(registry=kind, layer=name, version=report.version, records=table.num_rows,
                      linked=int(keep.sum()), by_reason=by_reason, unmatched=unmatched,
                      seconds=round(time.perf_counter() - t0, 3))


def _link_columns(hits: Sequence[GeocodeResult]) -> dict[str, pa.Array]:
    return {
        "address_code": pa.array([r.code for r in hits], pa.string()),
        "building_code": pa.array([r.building_code for r in hits], pa.string()),
        "standard_address": pa.array([r.address for r in hits], pa.string()),
        "community": pa.array([r.community for r in hits], pa.string()),
        "town": pa.array([r.town for r in hits], pa.string()),
        "unit": pa.array([r.unit for r in hits], pa.string()),
        "floor": pa.array([r.floor for r in hits], pa.string()),
        "room": pa.array([r.room for r in hits], pa.string()),
        "match_reason": pa.array([r.reason for r in hits], pa.string()),
        "match_score": pa.array([round(r.score, 3) for r in hits], pa.float64()),
    }


def visible_kinds(store: Any) -> dict[str, str]:
    """kind -> layer name of the family's link layers this store (at its clearance) can see."""
    names = {i.name for i in store.list()}
    return {k: s["layer"] for k, s in REGISTRIES.items() if s["layer"] in names}


def link_counts(store: Any, by: str = "building", kinds: Sequence[str] | None = None,
                where: dict[str, str] | None = None) -> pa.Table:
    """Records per building (or community, town, address) and kind, over the link layers the store can see.

    Args:
        by: building, community, town or address.
        kinds: registries to count (default: every visible one).
        where: only records whose field equals the value (e.g. {"building_code": "1402..."}).

    Returns:
        An Arrow table: the key column (`building_code`, `community`, `town` or `address_code`) and one count
        column per kind, sorted by key.
    """
    if by not in BY:
        raise AddressInputError(f"--by {by!r} is not one of {', '.join(BY)}")
    key = BY[by]
    layers = visible_kinds(store)
    wanted = list(kinds) if kinds else list(layers)
    counts: dict[str, dict[str, int]] = {}
    for kind in wanted:
        if kind not in layers:
            continue
        flt = " AND ".join(f"{f} = '{str(v).replace(chr(39), chr(39) * 2)}'" for f, v in (where or {}).items()) \
            or None
        t = store.query_arrow(layers[kind], fields=[key], where=flt)
        agg = t.group_by(key).aggregate([(key, "count")])
        for k, n in zip(agg.column(key).to_pylist(), agg.column(f"{key}_count").to_pylist(), strict=True):
            counts.setdefault(k, {})[kind] = n
    keys = sorted(k for k in counts if k is not None)
    cols = {key: pa.array(keys, pa.string())}
    for kind in wanted:
        if kind in layers:
            cols[kind] = pa.array([counts[k].get(kind, 0) for k in keys], pa.int64())
    return pa.table(cols)


def building_links(store: Any, building_code: str, *, records: bool = False, limit: int = 200,
                   kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """One building's 一标三实: counts per kind, and with `records` the records themselves (personal fields
    included), from the link layers this store can see (and, with `kinds`, only those registries).

    Returns:
        {"building_code", "counts": {kind: n}, "records": {kind: [dict, ...]} (only with `records`)}.
    """
    layers = visible_kinds(store)
    code = str(building_code).replace("'", "''")
    out: dict[str, Any] = {"building_code": building_code, "counts": {}}
    if records:
        out["records"] = {}
    for kind, name in layers.items():
        if kinds is not None and kind not in kinds:
            continue
        t = store.query_arrow(name, where=f"building_code = '{code}'")
        out["counts"][kind] = t.num_rows
        if records:
            rows = t.drop_columns(["geom"]).slice(0, limit).to_pylist()
            out["records"][kind] = rows
    return out


__all__ = ["BY", "LINK_FIELDS", "REGISTRIES", "LinkReport", "Unmatched", "building_links", "link_counts",
           "link_registry", "read_table", "visible_kinds"]
