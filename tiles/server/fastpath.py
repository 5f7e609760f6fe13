"""A lean ASGI path for cached 3D Tiles content, in front of the whole application.

A 3D Tiles client fetches hundreds of small files per view; through FastAPI each one paid for routing, the
dependency layer and a hop to the thread pool, and then for three middleware layers that each wrap `send` and
re-parse the headers, several times the cost of the answer itself. `StaticFastPath` is asked first, before any
middleware (see `tiles.server.app.CimApp`), and answers the common case itself: an anonymous `GET`/`HEAD` without `Range` of a public model's file that is already
in the file cache, with the headers the application would send (ETag, 304, gzip form, Cache-Control, Vary, CORS
through the application's own CORS rules) and the same request log line. Everything else (a key to check, a range, a
cache miss that must read the disk, an unknown or hidden model, a response the gzip middleware would still compress)
goes on to the application unchanged, so answers and errors are the application's own.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from tiles.server.catalog import ServiceCatalog
from tiles.server.deps import KEY_HEADER, KEY_PARAM
from tiles.server.responses import cache_control, inm_matches, log_request, with_key_vary

_PREFIX = "/3dtiles/"
_KEY_QUERY = KEY_PARAM.encode()
_KEY_HEADER = KEY_HEADER.encode()
# request headers that send a request to the application: credentials and ranges
_LEAVE = frozenset({_KEY_HEADER, b"range", b"if-range"})


class StaticFastPath:
    """Answers cached public 3D Tiles files without the application (see `try_answer`).

    Args:
        catalog: the service catalogue (models, file cache, settings).
        gzip_min_size: the gzip middleware's minimum size: a body it would compress is left to it.
        gzip_excluded: media types the gzip middleware leaves alone.
        cors: the keyword arguments of the application's `CORSMiddleware` (its header rules are reused as they are).
        log_requests: write the request log line, as `RequestLog` does.
    """

    def __init__(self, catalog: ServiceCatalog, gzip_min_size: int, gzip_excluded: tuple[str, ...],
                 cors: dict[str, Any], log_requests: bool = True) -> None:
        self.catalog = catalog
        self.gzip_min_size = gzip_min_size
        self.gzip_excluded = frozenset(gzip_excluded)
        self.cors = CORSMiddleware(_no_app, **cors)  # only its rules for response headers are used
        self.log_requests = log_requests
        self.cache = cache_control(True, catalog.settings.cache_max_age).encode()

    async def try_answer(self, scope: Scope, send: Send) -> bool:
        """Answer the request if it is one for the lean path; False (nothing sent) when the application must."""
        if scope["type"] == "http" and scope["path"].startswith(_PREFIX) and scope["method"] in ("GET", "HEAD"):
            t0 = time.perf_counter()
            answer = self._answer(scope)
            if answer is not None:
                status, headers, body, origin = answer
                start: Message = {"type": "http.response.start", "status": status, "headers": headers}
                if origin:
                    out: list[Message] = []

                    async def keep(message: Message) -> None:
                        out.append(message)

                    await self.cors.send(start, send=keep, request_headers=Headers(scope=scope))
                    start = out[0]
                else:
                    headers.append((b"vary", headers.pop()[1] + b", Origin"))
                with_key_vary(start)
                await send(start)
                await send({"type": "http.response.body", "body": body})
                if self.log_requests:
                    log_request(scope, status, len(body), t0)
                return True
        return False

    def _answer(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool] | None:
        model_name, _, path = scope["path"][len(_PREFIX):].partition("/")
        model = self.catalog.models.get(model_name)
        if model is None or model.security != "public" or not path:
            return None
        file = model.files.get(path)
        query = scope.get("query_string", b"")
        if file is None or _KEY_QUERY in query or b"%" in query:  # a key, maybe percent-encoded: the app checks it
            return None
        accept = inm = b""
        origin = False
        for name, value in scope["headers"]:
            # any credentials (a key in Authorization: Bearer, Basic, ...) are the application's to check: 401 if bad
            if name in _LEAVE or name == b"authorization":
                return None
            if name == b"accept-encoding":
                accept = value
            elif name == b"if-none-match":
                inm = value
            elif name == b"origin":
                origin = True
        entry = self.catalog.files.cached(file)
        if entry is None:
            return None
        # the headers of `tile_response(..., ranges=True)`, in its order; Vary last, as the middleware leaves it
        etag, media_type, body = entry.etag, entry.media_type, entry.content
        gzip = b"gzip" in accept and entry.gzipped is not None
        if gzip:
            etag, body = etag.removesuffix('"') + '-gzip"', entry.gzipped  # type: ignore[assignment]
        headers = [(b"etag", etag.encode()), (b"cache-control", self.cache), (b"accept-ranges", b"bytes")]
        if inm and inm_matches(inm.decode("latin-1"), entry.etag):
            headers[0] = (b"etag", etag.encode())  # the validator of what a 200 would have sent (gzip or not)
            headers.append((b"vary", b"Accept-Encoding"))
            return 304, headers, b"", origin
        if (not gzip and b"gzip" in accept and len(body) >= self.gzip_min_size
                and not {media_type, media_type.partition("/")[0] + "/*"} & self.gzip_excluded):
            return None  # the gzip middleware would compress this one: let the application answer
        if gzip:
            headers.append((b"content-encoding", b"gzip"))
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            media_type += "; charset=utf-8"
        headers += [(b"content-length", str(len(body)).encode()), (b"content-type", media_type.encode()),
                    (b"vary", b"Accept-Encoding")]
        return 200, headers, body, origin


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("StaticFastPath's CORS rules are not an application")


__all__ = ["StaticFastPath"]
