"""The layer store: a city's themed business layers in one DuckDB spatial file.

    >>> from layers import LayerStore
    >>> with LayerStore("city.duckdb") as store:  # doctest: +SKIP
    ...     store.import_file("shelters.gpkg", "shelters", theme="public_topics/society")
    ...     store.query("shelters", bbox=(116.3, 39.9, 116.4, 40.0))

Public functions for services built on the store (tile server, OGC API Features): `open_read_only`,
`LayerStore.list(security=...)`, `LayerStore.info` (schema, extent), `LayerStore.query` / `query_arrow` /
`features` (bbox, filter, limit, offset), `LayerStore.table_name` (for SQL such as `ST_AsMVT`).

Names are imported lazily so that `import layers.errors` (the CLI's error table) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LayerStore": "layers.store", "check_bbox": "layers.store", "check_name": "layers.store",
    "default_store_path": "layers.store", "geojson_features": "layers.store", "import_layer": "layers.store", "open_read_only": "layers.store",
    "to_geodataframe": "layers.store", "DiffResult": "layers.models", "DropResult": "layers.models",
    "ExportResult": "layers.models", "FeaturePage": "layers.models", "FieldInfo": "layers.models",
    "ImportReport": "layers.models", "LayerInfo": "layers.models", "Rejection": "layers.models",
    "StatsResult": "layers.models", "VersionInfo": "layers.models",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'layers' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
