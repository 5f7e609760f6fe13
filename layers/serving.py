"""Feature queries for web services (OGC API - Features) on top of `LayerStore`'s public API.

`LayerStore.features` pages through a layer with a bbox and a CQL2-text filter; services also need equality filters
on properties given as query parameters (`?kind=school`) and single features by id. Both are built here as CQL2
text from the layer's catalogue schema (the property must be a field; its value becomes a typed literal, compiled
into a `?` parameter by `layers.filters`), so no request text ever reaches SQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from layers.errors import FilterSyntaxError, LayerInputError, LayerNotFoundError
from layers.models import FeaturePage, LayerInfo
from layers.store import LayerStore

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "FLOAT", "DOUBLE", "REAL", "DECIMAL")


class FeatureNotFoundError(LayerNotFoundError):
    """A layer has no feature with that id."""


def _literal(name: str, ftype: str, value: str) -> str:
    t = ftype.upper()
    if t.startswith(_NUMERIC):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise LayerInputError(f"property filter {name}={value!r}: {name} is {ftype}, so the value must be a number")
        return repr(int(number)) if number.is_integer() and "." not in value and "e" not in value.lower() \
            else repr(number)
    if t == "BOOLEAN":
        if value.lower() not in ("true", "false"):
            raise LayerInputError(f"property filter {name}={value!r}: {name} is BOOLEAN; use true or false")
        return value.upper()
    return "'" + value.replace("'", "''") + "'"


def property_filter(info: LayerInfo, properties: Mapping[str, str]) -> str | None:
    """CQL2 text for equality filters on properties (`{"kind": "school"}` -> `"kind" = 'school'`), or None.

    Raises:
        LayerInputError: a name that is not a field of the layer, or a value of the wrong type.
    """
    by_fold = {f.name.casefold(): f for f in info.fields}
    parts = []
    for name, value in properties.items():
        f = by_fold.get(name.casefold())
        if f is None:
            raise LayerInputError(f"{name!r} is not a query parameter nor a field of {info.name!r}; fields: "
                                  f"{', '.join(info.field_names())}")
        parts.append(f'"{f.name.replace(chr(34), chr(34) * 2)}" = {_literal(f.name, f.type, value)}')
    return " AND ".join(parts) or None


def combine_filters(*filters: str | None) -> str | None:
    """AND of CQL2-text filters (None entries are skipped)."""
    parts = [f for f in filters if f]
    if len(parts) <= 1:
        return parts[0] if parts else None
    return " AND ".join(f"({p})" for p in parts)


def feature_page(
    store: LayerStore,
    name: str,
    *,
    bbox: Sequence[float] | None = None,
    filter: str | None = None,  # noqa: A002 - the OGC API parameter name
    properties: Mapping[str, str] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> FeaturePage:
    """A page of features with `numberMatched`: bbox, CQL2-text filter and property equality filters combined."""
    info = store.info(name)
    where = combine_filters(filter, property_filter(info, properties or {}))
    try:
        return store.features(name, bbox=bbox, where=where, limit=limit, offset=offset)
    except FilterSyntaxError as exc:  # the store words its messages for the CLI's --where
        raise FilterSyntaxError(str(exc).replace("--where", "filter", 1)) from exc


def get_feature(store: LayerStore, name: str, fid: int) -> dict[str, Any]:
    """One GeoJSON feature by its id.

    Raises:
        FeatureNotFoundError: no feature with that id.
    """
    page = store.features(name, where=f"fid = {int(fid)}", limit=1)
    if not page.features:
        raise FeatureNotFoundError(f"layer {name!r} has no feature {fid}")
    return page.features[0]


__all__ = ["FeatureNotFoundError", "combine_filters", "feature_page", "get_feature", "property_filter"]
