"""Sensing (物联感知): the OGC SensorThings API 1.1 data model in the store's DuckDB file, with batched ingest
(HTTP, MQTT, history files), thresholds and alerts in the four Chinese warning levels, and live events.

    >>> from layers.sensing import SensingStore
    >>> with SensingStore("city.duckdb") as s:                                      # doctest: +SKIP
    ...     s.datastreams(observed_property="water_level")      # GeoDataFrame with locations
    ...     s.observations([1, 2], start="2024-07-20T00:00:00Z")  # DataFrame, one row per reading
    ...     s.on_alert(lambda event: print(event.kind, event.alert.level))

Modules, in the order data flows: `entities` (the STA entity sets) -> `schema` (their tables) -> `odata` (query
options, bounded) -> `query` (reads as SQL) / `write` (creates, updates, deletes) / `observations` (parsing of
arriving readings) -> `store` (`SensingStore`; its batch writer in `batch`, frames and latest readings in
`readings`, the writer's record in `writerlock`) -> `alerts` (thresholds, alert state) and `events` (live stream,
listeners); `mqtt` (broker subscription), `history` (file import), `simulate` (the sample city's readings). See
docs/sensing.md.

Names are imported lazily so that `import layers.sensing.errors` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SensingStore": "layers.sensing.store", "Created": "layers.sensing.store",
    "DatastreamMeta": "layers.sensing.store", "writer_file": "layers.sensing.store",
    "current_writer": "layers.sensing.store", "claim_writer": "layers.sensing.store",
    "release_writer": "layers.sensing.store", "Access": "layers.sensing.values", "LOCAL": "layers.sensing.values",
    "PUBLIC": "layers.sensing.values", "Alert": "layers.sensing.alerts", "AlertEvent": "layers.sensing.alerts",
    "Thresholds": "layers.sensing.alerts", "LEVELS": "layers.sensing.alerts", "ObsRow": "layers.sensing.observations",
    "MqttIngest": "layers.sensing.mqtt", "import_history": "layers.sensing.history",
    "read_history": "layers.sensing.history", "Scenario": "layers.sensing.simulate",
    "simulate": "layers.sensing.simulate", "seed_sample_city": "layers.sensing.sample",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'layers.sensing' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
