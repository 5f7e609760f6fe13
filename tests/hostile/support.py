"""Helpers of the hostile suite: deterministic Hypothesis settings, the store content digest that "unchanged" is
judged by, a log capture, the running server's handle, and the checks every answer must pass."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from hypothesis import HealthCheck, settings

from layers import LayerStore

# deterministic examples, no example database on disk, no per-example deadline (the machine is shared); applied per
# test (`@settings(HOSTILE, max_examples=n)`), so other suites keep Hypothesis' defaults
HOSTILE = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])

OGC_EXCEPTION_TYPES = {"application/vnd.ogc.se_xml", "text/xml", "application/xml"}
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")


def store_digest(path: Path) -> str:
    """A digest of everything a store holds: the list of tables, and the rows of each one in row order."""
    h = hashlib.sha256()
    with LayerStore(path, read_only=True) as s:
        cur = s.cursor()
        tables = sorted(cur.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall())
        for schema, table in tables:
            h.update(f"{schema}.{table}\n".encode())
            geom = {c for c, t, *_ in cur.execute(f'DESCRIBE "{schema}"."{table}"').fetchall() if t == "GEOMETRY"}
            cols = [c for c, *_ in cur.execute(f'DESCRIBE "{schema}"."{table}"').fetchall()]
            select = ", ".join(f'ST_AsWKB("{c}")' if c in geom else f'"{c}"' for c in cols)
            for row in cur.execute(f'SELECT {select} FROM "{schema}"."{table}" ORDER BY rowid').fetchall():
                h.update(repr(row).encode())
    return h.hexdigest()


class LogCapture(logging.Handler):
    """Every record of the server's loggers, formatted as a log file would hold it (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class HostileServer:
    """A running server over generated data (a public, an internal and a confidential layer, a model, two maps)."""

    base: str
    root: Path
    store: Path
    keys: dict[str, str]
    log: LogCapture
    app: object
    secrets: list[str] = field(default_factory=list)

    def client(self, key: str | None = None, **kw: object) -> httpx.Client:
        raw = self.keys.get(key, key) if key else None
        headers = {"X-API-Key": raw} if raw else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    """No secret, in any of the spellings a client could send it in, appears in `text`."""
    from urllib.parse import quote

    for secret in secrets:
        for spelling in {secret, quote(secret, safe=""), "".join(f"%{b:02X}" for b in secret.encode()),
                         secret[:12]}:
            assert spelling not in text, f"a key secret ({spelling[:6]}...) is in the log"


def assert_clean_error(r: httpx.Response) -> None:
    """A 4xx answer is a JSON error document (the OGC API exception shape), with no Python traceback in it."""
    assert r.status_code < 500, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}"
    assert not TRACEBACK.search(r.text), f"{r.request.url}: a traceback in the body"
    if 400 <= r.status_code < 500 and r.request.method != "HEAD":
        if r.headers.get("content-type", "").split(";")[0] in OGC_EXCEPTION_TYPES:
            # WMS answers errors as its standard says: an OGC ServiceExceptionReport naming the problem
            assert re.search(r"<ServiceException\b[^>]*>\s*\S", r.text), r.text[:300]
            return
        doc = r.json()
        assert doc["status"] == r.status_code and isinstance(doc["description"], str) and doc["description"]


def budget_answer(r: httpx.Response) -> bool:
    """A 503 that says the request ran out of its time budget: a bounded, honest answer."""
    return r.status_code == 503 and "time budget" in r.json().get("description", "")


def event_stream_paths(doc: dict) -> set[str]:
    """The paths of an OpenAPI document whose GET answers a Server-Sent Events stream (which never ends)."""
    return {path for path, ops in doc["paths"].items()
            if "text/event-stream" in ops.get("get", {}).get("responses", {}).get("200", {}).get("content", {})}


def fetch(c: httpx.Client, url: str, method: str = "GET", **kw: object) -> httpx.Response:
    """`c.get(url)` (or HEAD) that also works on an event stream: a stream's answer is read up to its first bytes
    (status, headers and the opening comment), then closed; any other answer is read whole."""
    with c.stream(method, url, **kw) as r:  # type: ignore[arg-type]
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            first = next(r.iter_raw(), b"")
            head = httpx.Response(r.status_code, headers=r.headers, content=first, request=r.request)
            if "content-length" not in r.headers:  # httpx adds one for `content`; the stream had none
                head.headers.pop("content-length", None)
            return head
        r.read()
    return r
