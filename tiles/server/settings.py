"""Settings of `cim serve`: pydantic-settings read from `CIM_*` environment variables, overridden by the CLI.

    CIM_STORE=city.duckdb CIM_MODELS='{"city": "out/city"}' CIM_PORT=8080 cim serve
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cim.files import user_path
from tiles.errors import ServerConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ServerSettings(BaseSettings):
    """Everything `cim serve` can be told.

    Attributes:
        store: the layer store file (default `$CIM_STORE`, else `./cim.duckdb` when it exists; no layers otherwise).
        models: 3D Tiles build outputs by public name (`cim build` folders holding tileset.json).
        maps: COGs by public name (orthophotos, DEMs); a model's DEM and orthophoto are added as
            `<model>_dem` / `<model>_ortho` when its build.json names them.
        security: security level of models and maps by name (default public); layers keep the store's levels.
        access_file: key and audit file (default beside the store, see `tiles.server.auth`).
        public_url: base URL clients see, when behind a proxy or reachable under several names; every link and
            redirect is built from it (default: from each request's Host header; see docs/security.md).
        allowed_hosts: Host header values accepted (others answer 400); default any.
        request_budget: seconds one request may take: DuckDB statements are interrupted at the deadline and the
            request answers 503 (0: no budget).
        workers: uvicorn worker processes (each opens the store read-only and keeps its own caches).
        tile_cache_mb: rendered vector and raster tiles kept in memory (0: none).
        jobs_max_running, jobs_max_queued, jobs_keep_seconds: background jobs (long analyses) that run at once,
            that may wait, and how long a finished job's result is kept (`tiles.server.jobs`).
        ingest: open the store read-write and take SensorThings writes (this process becomes the store's only
            writer; see docs/sensing.md). Implied by `mqtt`.
        mqtt: an MQTT broker `HOST:PORT` to subscribe to for observations (`v1.1/Datastreams(n)/Observations`).
        sta_default_top, sta_max_top: SensorThings page size without `$top`, and the largest `$top`.
        sta_max_body_mb: the largest SensorThings request body.
        stream_max_queue: live-stream batches waiting for a slow client before it is disconnected.
        flood_runs: a folder of flood runs (`cim analyze flood` outputs) to publish; new runs go there too.
        flood_security: who may see flood runs and start them (default internal: they show the buildings).
        flood_warnings: with `flood_runs` and sensors (`ingest`), a sensor alert starts a warning run
            (`cim.analysis.flood.warning`) on the first model whose build names a DEM.
    """

    model_config = SettingsConfigDict(env_prefix="CIM_", extra="ignore")

    store: Path | None = None
    models: dict[str, Path] = Field(default_factory=dict)
    maps: dict[str, Path] = Field(default_factory=dict)
    security: dict[str, str] = Field(default_factory=dict)
    access_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    allowed_hosts: list[str] = Field(default_factory=lambda: ["*"])
    request_budget: float = Field(1.0, ge=0, allow_inf_nan=False)
    title: str = "cim city services"
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    items_limit: int = 20
    items_max_limit: int = 10_000
    mvt_max_features: int = 5_000
    mvt_simplify_below_zoom: int = 16
    mvt_maxzoom: int = 22
    cache_max_age: int = 3600
    file_cache_mb: int = 256
    tile_cache_mb: int = 256
    gzip_min_size: int = 1024
    gzip_level: int = 6
    log_requests: bool = True
    workers: int = 1
    jobs_max_running: int = 1
    jobs_max_queued: int = 16
    jobs_keep_seconds: float = 3600.0
    ingest: bool = False
    mqtt: str | None = None
    mqtt_client_id: str = "cim-serve"
    sta_default_top: int = 100
    sta_max_top: int = 10_000
    sta_max_body_mb: int = 64
    stream_max_queue: int = 1000

    flood_runs: Path | None = None
    flood_security: str = "internal"
    flood_warnings: bool = True

    @property
    def writes_store(self) -> bool:
        """True when the server is the store's writer (`--ingest` or `--mqtt`)."""
        return self.ingest or bool(self.mqtt)

    @field_validator("store", "access_file")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        return None if v is None else user_path(v)

    @field_validator("models", "maps")
    @classmethod
    def _absolute_values(cls, v: dict[str, Path]) -> dict[str, Path]:
        return {name: user_path(path) for name, path in v.items()}


def named_paths(values: Iterable[str], what: str) -> dict[str, Path]:
    """`["city=out/city", "out/other"]` -> `{"city": <cwd>/out/city, "other": <cwd>/out/other}`.

    A bare path is named after its file or folder stem, lower-cased; paths are made absolute.

    Raises:
        ServerConfigError: a name that is not lower-case letters, digits, `_` or `-`, or a name given twice.
    """
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            path, name = v, Path(v).stem.lower()
        if not _NAME.match(name):
            raise ServerConfigError(f"{what} {v!r}: the name {name!r} is not lower-case letters, digits, _ or - "
                                    f"(at most 63); give one as NAME={path}")
        if name in out:
            raise ServerConfigError(f"{what} name {name!r} is given twice; name them NAME=PATH")
        out[name] = user_path(path)
    return out


def check_name(name: str, what: str) -> str:
    """`name` if it is a valid model or map name."""
    if not _NAME.match(name):
        raise ServerConfigError(f"{what} name {name!r} is not lower-case letters, digits, _ or - (at most 63)")
    return name


__all__ = ["ServerSettings", "check_name", "named_paths"]
