"""`cim serve`: standard tile and feature services of a city (3D Tiles, raster/vector tiles, WMTS, OGC API).

See docs/http-api.md for the URLs. `create_app(settings)` builds the FastAPI app, `serve(settings)` runs it.
"""

from __future__ import annotations

from typing import Any

from tiles.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        from tiles.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'tiles.server' has no attribute {name!r}")
