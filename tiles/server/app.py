"""The FastAPI application of `cim serve`: routers, middleware, and the one table from errors to HTTP statuses.

    >>> from tiles.server import ServerSettings, create_app
    >>> app = create_app(ServerSettings(store="city.duckdb", models={"city": "out/city"}))  # doctest: +SKIP
    >>> serve(ServerSettings(...))  # doctest: +SKIP  (uvicorn on 127.0.0.1:8000)
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import cim
from cim.errors import CimError, InputError, InputNotFoundError
from layers.budget import time_budget
from layers.errors import LayerInputError, LayerNotFoundError, QueryTimeoutError, StoreError, StoreLockedError
from layers.sensing.errors import WriteForbiddenError
from tiles.errors import (InvalidKeyError, JobLimitError, NotAllowedError, RequestTooLargeError, ServerConfigError,
                          TileNotFoundError, TileRequestError)
from tiles.server import ogc, redact
from tiles.server.catalog import ServiceCatalog
from tiles.server.deps import HEAD_SCOPE_KEY, HINT_HEADER, KEY_HEADER, KEY_PARAM
from tiles.server.fastpath import StaticFastPath
from tiles.server.jobs import JobManager
from tiles.server.openapi import openapi_document
from tiles.server.responses import json_response, log_request, with_key_vary
from tiles.server.routes import (addresses, analysis, core, documents, features, flood, jobs, maps, sensing, sta,
                                 styles, terrain, tiles3d, vector, viewer, wms)
from tiles.server.settings import ServerSettings

log = logging.getLogger("cim.server")

# One table from error class to HTTP status; the first matching class (most specific first) wins.
STATUS_CODES: list[tuple[type[BaseException], int]] = [
    (InvalidKeyError, 401),
    (WriteForbiddenError, 403),
    (RequestTooLargeError, 413),
    (NotAllowedError, 403),
    (TileNotFoundError, 404),
    (LayerNotFoundError, 404),
    (InputNotFoundError, 404),
    (TileRequestError, 400),
    (LayerInputError, 400),
    (InputError, 400),
    (JobLimitError, 503),
    (StoreLockedError, 503),
    (StoreError, 503),
    (QueryTimeoutError, 503),
    (CimError, 500),
]
_CODES = {308: "PermanentRedirect", 400: "InvalidParameterValue", 401: "InvalidApiKey", 403: "Forbidden",
          404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 500: "ServerError",
          503: "ServiceUnavailable"}


def status_for(exc: BaseException) -> int:
    """The HTTP status of a library error (see STATUS_CODES)."""
    return next((code for cls, code in STATUS_CODES if isinstance(exc, cls)), 500)


def error_body(status: int, description: str) -> dict[str, Any]:
    """The JSON body of every error (the OGC API exception schema: code, description)."""
    return {"code": _CODES.get(status, "Error"), "status": status, "description": description}


# A 401 asks for HTTP Basic first: the one scheme QGIS, ArcGIS and GDAL prompt for and keep in their credential stores.
WWW_AUTHENTICATE = 'Basic realm="cim", charset="UTF-8", ApiKey header="X-API-Key"'


def not_found_hint(request: Request) -> str:
    """What a client can show for a 404 of a model, map or layer. The same for a hidden and a missing one (a 404
    never tells which), but it says whether the request carried a key, since a silent blank is what desktop users
    see when they forgot it."""
    keyed = bool(request.headers.get(KEY_HEADER) or request.headers.get("authorization")
                 or request.query_params.get(KEY_PARAM))
    if keyed:
        return ("not found for this key: it does not exist, or the key does not grant it; "
                "/catalog lists what the key can see")
    return ("not found for anonymous callers, who see public data only; if it needs a key, send the key as the "
            "password of HTTP Basic authentication (QGIS, ArcGIS: a stored Basic login; the same URL under /basic/ "
            "asks for it), as the X-API-Key header or as ?api_key=; /catalog lists what you can see")


async def _cim_error(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    headers: dict[str, str] = {}
    body = error_body(status, str(exc))
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    elif status == 404:
        body["hint"] = headers[HINT_HEADER] = not_found_hint(request)
    return json_response(body, status=status, headers=headers or None)


async def _validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('path', 'query'))}: {e.get('msg', '')}"
             for e in errors]
    return json_response(error_body(400, "; ".join(parts) or str(exc)), status=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and request.url.path.endswith("/") and request.url.path != "/":
        target = _without_slash(request)
        if target is not None:
            return json_response(error_body(308, f"see {target}"), status=308, headers={"Location": target})
    text = exc.detail if exc.status_code != 404 else f"no such resource {request.url.path!r}; see / and /catalog"
    return json_response(error_body(exc.status_code, str(text)), status=exc.status_code,
                         headers=getattr(exc, "headers", None))


def _without_slash(request: Request) -> str | None:
    """The URL of the same request without its trailing slash when a route answers it, built from the configured
    public URL (or relative to this host): never from the Host header a client sent."""
    path = request.url.path.rstrip("/")
    scope = {**request.scope, "path": path}
    if not any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
        return None
    public = request.app.state.catalog.settings.public_url
    query = request.url.query
    return (public.rstrip("/") if public else "") + path + (f"?{query}" if query else "")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return json_response(error_body(500, "internal error; the server log has the details"), status=500)


class RequestLog:
    """ASGI middleware around every request: its time budget, HEAD answered as GET without the body, one log line
    (method, path and query with credentials masked, the status and bytes the client got, ms), a JSON 500 for an
    error nothing else caught (logged with its traceback), and `Vary` on the key headers, since what a response
    holds depends on the caller.

    Args:
        app: the application.
        enabled: write the log line.
        budget: seconds a request may take (`layers.budget.time_budget`: DuckDB statements are interrupted at the
            deadline and answer 503); 0 for none.
    """

    def __init__(self, app: ASGIApp, enabled: bool = True, budget: float = 0.0) -> None:
        self.app = app
        self.enabled = enabled
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state = {"status": 0, "bytes": 0}
        head = scope["method"] == "HEAD"
        # routes see GET; HEAD_SCOPE_KEY tells a route whose body never ends (the event stream) to send none
        inner = {**scope, "method": "GET", HEAD_SCOPE_KEY: True} if head else scope

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                with_key_vary(message)
            elif message["type"] == "http.response.body":
                if head:  # the headers of GET (Content-Length included), no body
                    if message.get("more_body", False):
                        return
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            with time_budget(self.budget):
                await self.app(inner, receive, wrapped)
        except Exception as exc:  # the last resort: the client gets a JSON 500, the log gets the traceback
            if state["status"]:
                log.error("%s %s failed after its response started (status %d)", scope["method"], scope["path"],
                          state["status"], exc_info=exc)
            else:
                log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
                response = json_response(error_body(500, "internal error; the server log has the details"),
                                         status=500)
                await response(inner, receive, wrapped)
        finally:
            if self.enabled:
                log_request(scope, state["status"], state["bytes"], t0)


BASIC_PREFIX = "/basic"


class BasicChallenge:
    """ASGI middleware: every URL also exists under `/basic/...`, where a request without credentials is answered
    401 with a `WWW-Authenticate: Basic` challenge instead of as anonymous.

    Why: ArcGIS Pro sends a stored login only after a server challenges it (RFC 7617's flow), and our services
    answer anonymous requests with the public data, so it would never send the key. Under `/basic` the base URL of
    every link the server writes keeps the prefix (ASGI `root_path`), so the links a client follows challenge too.
    This is the keyed half of the documented URL pair: `/wmts/1.0.0/WMTSCapabilities.xml` (anonymous) and
    `/basic/wmts/1.0.0/WMTSCapabilities.xml` (asks for the key as a Basic password)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == BASIC_PREFIX or path.startswith(BASIC_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "root_path": scope.get("root_path", "") + BASIC_PREFIX}
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        keyed = (b"authorization" in headers or KEY_HEADER.encode() in headers
                 or f"{KEY_PARAM}=".encode() in scope.get("query_string", b""))
        if keyed or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        response = json_response(error_body(401, "this URL asks for an API key: send it as the password of HTTP "
                                                 "Basic authentication (any user name)"), status=401,
                                 headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        await response(scope, receive, send)


class CimApp(FastAPI):
    """The FastAPI application with `StaticFastPath` asked before any middleware (and FastAPI's own per-request
    checks): cached public 3D Tiles files are answered there, with the headers and log line of the stack below."""

    fast_path: StaticFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and await self.fast_path.try_answer(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app(settings: ServerSettings | None = None, catalog: ServiceCatalog | None = None) -> FastAPI:
    """The application: opens the catalogue now (configuration errors raise here, before any port is bound) and
    closes it on shutdown.

    Args:
        settings: server settings (default: from `CIM_*` environment variables).
        catalog: an open catalogue to serve instead (tests, notebooks).

    Raises:
        ServerConfigError: a model, map or setting is unusable.
        StoreError: the store cannot be opened read-only.
    """
    settings = settings or (catalog.settings if catalog else ServerSettings())
    catalog = catalog or ServiceCatalog(settings).open()
    job_manager = JobManager(settings.jobs_max_running, settings.jobs_max_queued, settings.jobs_keep_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog.start()
        try:
            yield
        finally:
            job_manager.shutdown()
            catalog.close()

    app = CimApp(title=settings.title, version=cim.__version__, openapi_url=None, docs_url=None, redoc_url=None,
                  lifespan=lifespan,
                  description="3D Tiles, raster and vector tiles and OGC API - Features of a city digital twin. "
                              "Send an API key as the password of HTTP Basic authentication, as X-API-Key, as "
                              "Authorization: Bearer, or as api_key=.")
    app.state.catalog = catalog
    app.state.jobs = job_manager
    app.router.redirect_slashes = False  # its redirect names the Host header's host; `_http_error` redirects instead
    redact.install()
    app.add_exception_handler(CimError, _cim_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    # documents before viewer (the viewer's `/viewer/{asset}` must not answer for /viewer/scenes or
    # /viewer/annotations); viewer before the rest: it answers browsers at /
    for module in (documents, viewer, core, tiles3d, maps, vector, features, jobs, analysis, sta, sensing, styles, wms,
                   addresses, terrain, flood):
        app.include_router(module.router)

    flood.attach_warnings(app)

    @app.get("/api", summary="This API's OpenAPI 3.0 document", tags=["core"])
    def api() -> Response:
        return json_response(openapi_document(app.openapi(), settings), media_type=ogc.OPENAPI)

    # gzip everything compressible that a route did not compress itself; glb textures do not gain from it
    gzip_excluded = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "model/gltf-binary")
    app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_size, compresslevel=settings.gzip_level,
                       exclude_content_types=gzip_excluded)
    cors = {"allow_origins": settings.cors_origins,
            "allow_methods": ["GET", "HEAD", "OPTIONS", "POST", "PATCH", "PUT", "DELETE"],  # writes: /jobs, /sta/v1.1/
            "allow_headers": ["X-API-Key", "Authorization", "If-None-Match", "Range", "Content-Type",
                              "Last-Event-ID"],
            "expose_headers": ["ETag", "Content-Range", "Content-Length", "Location", HINT_HEADER], "max_age": 3600}
    app.add_middleware(CORSMiddleware, **cors)  # type: ignore[arg-type]
    app.add_middleware(BasicChallenge)
    if settings.allowed_hosts != ["*"]:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(RequestLog, enabled=settings.log_requests, budget=settings.request_budget)
    app.fast_path = StaticFastPath(catalog, settings.gzip_min_size, gzip_excluded, cors, settings.log_requests)
    return app


_WORKER_SETTINGS = "CIM_SERVE_WORKER_SETTINGS"
_LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


def worker_app() -> FastAPI:
    """The application of one uvicorn worker process (`serve` with `workers` > 1 hands its settings over in the
    environment, as JSON)."""
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    redact.install()
    return create_app(ServerSettings.model_validate_json(os.environ[_WORKER_SETTINGS]))


def serve(settings: ServerSettings) -> None:
    """Run the server with uvicorn until interrupted (the library function behind `cim serve`).

    With `settings.workers` > 1, uvicorn runs that many processes on the port, each with its own catalogue: the
    store is opened read-only by each (DuckDB allows many readers), and caches are per process.

    Raises:
        ServerConfigError: a model, map or setting is unusable (before any port is bound).
        StoreError: the store cannot be opened read-only.
    """
    import uvicorn

    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    if settings.workers > 1 and settings.writes_store:
        raise ServerConfigError(
            f"--workers {settings.workers} with --ingest/--mqtt: DuckDB lets one process write the store or many "
            f"read it, never both, so the server that takes observations is one process; drop --workers, or use "
            f"--workers N without --ingest/--mqtt when no process takes observations (docs/sensing.md)")
    redact.install()
    # live streams (/sensing/stream) never end by themselves: give open connections 5 s at shutdown, then close
    common = {"host": settings.host, "port": settings.port, "access_log": False, "log_level": "info",
              "server_header": False, "timeout_graceful_shutdown": 5}
    if settings.workers <= 1:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return
    ServiceCatalog(settings).open().close()  # configuration errors raise here, once, not in every worker
    os.environ[_WORKER_SETTINGS] = settings.model_dump_json()
    uvicorn.run("tiles.server.app:worker_app", factory=True, workers=settings.workers,
                **common)  # type: ignore[arg-type]


__all__ = ["BASIC_PREFIX", "HINT_HEADER", "BasicChallenge", "STATUS_CODES", "WWW_AUTHENTICATE", "not_found_hint", "CimApp", "create_app", "error_body", "serve", "status_for", "worker_app"]
