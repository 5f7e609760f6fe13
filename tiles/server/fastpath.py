"""A lean ASGI path for cached 3D Tiles content, in front of the FastAPI router.

A 3D Tiles client fetches hundreds of small files per view; through FastAPI each one paid for routing, the
dependency layer and a hop to the thread pool, several times the cost of the answer itself. `StaticFastPath`
answers the common case directly on the event loop: an anonymous `GET`/`HEAD` of a public model's file that is
already in the file cache, with the very `tile_response` the route uses (same ETag, 304, ranges, gzip form, cache
headers). Everything else (a key to check, a cache miss that must read the disk, an unknown or hidden model, a
response the gzip middleware would still compress) goes on to the application unchanged, so answers and errors are
the application's own. It sits inside the request log and CORS middleware and outside gzip.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tiles.server.catalog import ServiceCatalog
from tiles.server.deps import KEY_HEADER, KEY_PARAM
from tiles.server.responses import cache_control, tile_response

_PREFIX = "/3dtiles/"


class StaticFastPath:
    """ASGI middleware serving cached public 3D Tiles files without the FastAPI router.

    Args:
        app: the application behind it.
        catalog: the service catalogue (models, file cache, settings).
        gzip_min_size: the gzip middleware's minimum size: a body it would compress is left to it.
        gzip_excluded: media types the gzip middleware leaves alone.
    """

    def __init__(self, app: ASGIApp, catalog: ServiceCatalog, gzip_min_size: int,
                 gzip_excluded: tuple[str, ...]) -> None:
        self.app = app
        self.catalog = catalog
        self.gzip_min_size = gzip_min_size
        self.gzip_excluded = frozenset(gzip_excluded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_PREFIX) and scope["method"] in ("GET", "HEAD"):
            response = self._answer(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> object | None:
        model_name, _, path = scope["path"][len(_PREFIX):].partition("/")
        model = self.catalog.models.get(model_name)
        if model is None or model.security != "public" or not path:
            return None
        file = model.files.get(path)
        if file is None or KEY_PARAM.encode() in scope.get("query_string", b""):
            return None
        request = Request(scope)
        headers = request.headers
        if KEY_HEADER in headers or headers.get("authorization", "")[:7].lower() == "bearer ":
            return None
        entry = self.catalog.files.cached(file)
        if entry is None:
            return None
        response = tile_response(request, entry.content, entry.media_type, entry.etag,
                                 cache_control(True, self.catalog.settings.cache_max_age), gzipped=entry.gzipped,
                                 ranges=True)
        if ("gzip" in headers.get("accept-encoding", "") and response.status_code == 200
                and "content-encoding" not in response.headers and len(response.body) >= self.gzip_min_size
                and not {entry.media_type, entry.media_type.partition("/")[0] + "/*"} & self.gzip_excluded):
            return None  # the gzip middleware would compress this one: let the application answer
        return response


__all__ = ["StaticFastPath"]
