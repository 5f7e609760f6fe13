"""Serve local folders over HTTP on 127.0.0.1 for clients under test (a browser, a tile loader).

`serve_mounts({"/tiles": out_dir, "/cesium": cesium_build, "/": page_dir})` maps URL prefixes to folders (longest
prefix wins), answers with the content types clients check (`model/gltf-binary`, `application/wasm`, ...), allows
cross-origin reads, and records every request so that a test can assert what was asked for.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".terrain": "application/vnd.quantized-mesh",
    ".mvt": "application/vnd.mapbox-vector-tile",
    ".pbf": "application/x-protobuf",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ktx2": "image/ktx2",
    ".svg": "image/svg+xml",
    ".xml": "application/xml",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server under test, or a benchmark's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoggedRequest(NamedTuple):
    """One request the server answered."""

    method: str
    path: str
    status: int


class Server(str):
    """A running server: the string is its base URL (`http://127.0.0.1:PORT`, no trailing slash).

    `requests` is the live request log, appended to by the server threads.
    """

    requests: list[LoggedRequest]

    def __new__(cls, base_url: str, requests: list[LoggedRequest]) -> Server:
        obj = super().__new__(cls, base_url)
        obj.requests = requests
        return obj

    @property
    def base_url(self) -> str:
        """The base URL as a plain string."""
        return str(self)

    def url(self, path: str) -> str:
        """Absolute URL of a server path (`/tiles/tileset.json`)."""
        return str(self) + "/" + path.lstrip("/")


def _handler(mounts: dict[str, Path], log: list[LoggedRequest], lock: threading.Lock) -> type:
    prefixes = sorted(mounts, key=len, reverse=True)

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}

        def translate_path(self, path: str) -> str:
            url_path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
            for prefix in prefixes:
                if prefix == "/" or url_path == prefix or url_path.startswith(prefix.rstrip("/") + "/"):
                    rest = url_path[len(prefix.rstrip("/")):]
                    break
            else:
                return os.path.join(os.devnull, "unmounted")  # answered 404
            parts = [p for p in posixpath.normpath(rest).split("/") if p not in ("", ".", "..")]
            target = os.path.join(str(mounts[prefix]), *parts)
            return target + "/" if rest.endswith("/") and parts else target

        def end_headers(self) -> None:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            status = int(code) if not isinstance(code, str) or code.isdigit() else 0
            with lock:
                log.append(LoggedRequest(self.command, self.path, status))

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    return Handler


@contextlib.contextmanager
def serve_mounts(mounts: Mapping[str, str | os.PathLike[str]]) -> Iterator[Server]:
    """Serve folders under URL prefixes on 127.0.0.1 and a free port, in a background thread.

    Args:
        mounts: URL prefix ("/", "/tiles", "/cesium") -> folder.

    Yields:
        The base URL, carrying the request log.
    """
    table = {"/" + k.strip("/") if k.strip("/") else "/": Path(v).resolve() for k, v in mounts.items()}
    for prefix, folder in table.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"mount {prefix!r}: {folder} is not a folder")
    log: list[LoggedRequest] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(table, log, threading.Lock()))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", log)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_directory(root: str | os.PathLike[str]) -> Iterator[Server]:
    """Serve one folder at `/` on 127.0.0.1; yields the base URL (a `Server`, so `.requests` is there too)."""
    with serve_mounts({"/": root}) as server:
        yield server
