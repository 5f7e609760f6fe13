"""API keys and the audit log of the tile server, in a SQLite file beside the layer store.

Why a sidecar and not the DuckDB store: the server holds the store read-only for its whole life (DuckDB allows one
read-write process or many read-only ones), yet it must append to the audit log, and `cim keys create/revoke` must
work while a server runs. SQLite in WAL mode gives exactly that: many processes, short write transactions. The file
is `<store>.access.sqlite` (`city.duckdb` -> `city.access.sqlite`).

A key is `cim_<id>_<secret>`: the id names the key (list, revoke, audit), only the SHA-256 of the 32-byte random
secret is stored, and the secret is shown once, at creation. A scope is a list of grants:

- `public`, `internal`, `confidential`: every layer up to that security level;
- `layer:<name>`: that layer, whatever its level;
- `theme:<path>`: every layer in that theme or below it;
- `sensing:write`: may create, change and delete SensorThings entities and post observations (`/sta/v1.1/`), within
  what its other grants let it see (docs/sensing.md).

Anonymous callers see public layers only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from layers.db import connect_sqlite
from layers.types import SECURITY_LEVELS, security_rank
from tiles.errors import InvalidKeyError, TileRequestError

_KEY = re.compile(r"^cim_([0-9a-f]{8})_([A-Za-z0-9_-]{20,64})$")
_GRANT = re.compile(r"^(public|internal|confidential|layer:[a-z][a-z0-9_]{0,62}|theme:[^\s,]{1,200}|sensing:write)$")

_DDL = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, scope TEXT NOT NULL, label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS audit (
    at TEXT NOT NULL, key_id TEXT, layer TEXT NOT NULL, security TEXT NOT NULL, action TEXT NOT NULL,
    path TEXT NOT NULL, client TEXT);
CREATE INDEX IF NOT EXISTS audit_layer ON audit (layer, at);
"""


def access_path(store: str | os.PathLike[str]) -> Path:
    """The key and audit file of a store: `city.duckdb` -> `city.access.sqlite`."""
    p = Path(store)
    return p.with_name(p.stem + ".access.sqlite")


def parse_scope(scope: str | Iterable[str]) -> tuple[str, ...]:
    """Grants of a scope string (`"internal,layer:hazards"`) or list, checked and de-duplicated.

    Raises:
        TileRequestError: an empty scope or a grant that is not a level, `layer:NAME` or `theme:PATH`.
    """
    items = scope.split(",") if isinstance(scope, str) else list(scope)
    grants: list[str] = []
    for raw in items:
        g = raw.strip()
        if not g:
            continue
        if not _GRANT.match(g):
            raise TileRequestError(f"scope grant {g!r} is not one of {', '.join(SECURITY_LEVELS)}, layer:NAME, "
                                   f"theme:PATH or sensing:write (e.g. --scope internal,layer:hazards)")
        if g not in grants:
            grants.append(g)
    if not grants:
        raise TileRequestError("empty scope; pass e.g. --scope internal, --scope layer:hazards or "
                               "--scope theme:public_topics")
    return tuple(grants)


@dataclass(frozen=True)
class Principal:
    """Who is asking: anonymous (`key_id` None) or the holder of a key with its grants."""

    key_id: str | None = None
    grants: tuple[str, ...] = ("public",)

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    def can_see(self, name: str, security: str, theme: str = "") -> bool:
        """True when this principal may see a layer (or model, or map) of that name, level and theme."""
        if security == "public":
            return True
        rank = security_rank(security)
        for g in self.grants:
            if g in SECURITY_LEVELS and security_rank(g) >= rank:
                return True
            if g == f"layer:{name}":
                return True
            if g.startswith("theme:") and theme and (theme == g[6:] or theme.startswith(g[6:].rstrip("/") + "/")):
                return True
        return False


ANONYMOUS = Principal()


class KeyInfo(BaseModel):
    """A key as `cim keys list` shows it (never the secret)."""

    id: str
    scope: list[str]
    label: str
    created_at: datetime
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class NewKey(KeyInfo):
    """A key just created: `key` is the only time the secret is shown."""

    key: str


class AuditRecord(BaseModel):
    """One access to a confidential layer."""

    at: datetime
    key_id: str | None
    layer: str
    security: str
    action: str
    path: str
    client: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


class AccessStore:
    """Keys and audit log in one SQLite file; thread-safe (one connection behind a lock).

    Args:
        path: the SQLite file (see `access_path`); created by the first write, never by a read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> AccessStore:
        """Open the file when it exists. Reading never creates it (a server without keys, `cim keys list`): the
        first write does (a key created, an access audited)."""
        with self._lock:
            if self._con is None and self.path.is_file():
                self._connect()
        return self

    def _connect(self) -> None:
        self._con = connect_sqlite(self.path, _DDL)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> AccessStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, sql: str, params: Sequence[Any] = (), *, write: bool = False) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._con is None:
                if not write and not self.path.is_file():
                    return []  # no file yet: no keys and no audit records (another process may create it later)
                self._connect()
            assert self._con is not None
            return self._con.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ keys
    def create(self, scope: str | Iterable[str], label: str = "") -> NewKey:
        """Create a key; the returned `key` is the only copy of its secret."""
        grants = parse_scope(scope)
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        created = _now()
        self._execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, NULL)",
                      [key_id, _sha256(secret), ",".join(grants), label, created], write=True)
        return NewKey(id=key_id, scope=list(grants), label=label, created_at=datetime.fromisoformat(created),
                      key=f"cim_{key_id}_{secret}")

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key (it stays listed, marked revoked).

        Raises:
            TileRequestError: no key with that id.
        """
        key_id = key_id.removeprefix("cim_").split("_")[0]
        self._execute("UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [_now(), key_id],
                      write=True)
        found = [k for k in self.list() if k.id == key_id]
        if not found:
            raise TileRequestError(f"no key {key_id!r} in {self.path}; see `cim keys list`")
        return found[0]

    def list(self) -> list[KeyInfo]:
        """Every key, oldest first."""
        rows = self._execute("SELECT id, scope, label, created_at, revoked_at FROM keys ORDER BY created_at, id")
        return [KeyInfo(id=i, scope=s.split(","), label=lb, created_at=datetime.fromisoformat(c),
                        revoked_at=datetime.fromisoformat(r) if r else None) for i, s, lb, c, r in rows]

    def authenticate(self, key: str | None) -> Principal:
        """The principal of a presented key; anonymous for None.

        Raises:
            InvalidKeyError: the key is malformed, unknown or revoked.
        """
        if key is None:
            return ANONYMOUS
        m = _KEY.match(key.strip())
        if m is None:
            raise InvalidKeyError("the API key is malformed; keys look like cim_<8 hex>_<secret> "
                                  "(create one with `cim keys create --scope ...`)")
        rows = self._execute("SELECT secret_sha256, scope, revoked_at FROM keys WHERE id = ?", [m.group(1)])
        if not rows or not hmac.compare_digest(rows[0][0], _sha256(m.group(2))):
            raise InvalidKeyError(f"API key {m.group(1)} is not known to this server")
        if rows[0][2] is not None:
            raise InvalidKeyError(f"API key {m.group(1)} was revoked at {rows[0][2]}")
        return Principal(key_id=m.group(1), grants=tuple(rows[0][1].split(",")))

    # ------------------------------------------------------------------ audit
    def audit(self, principal: Principal, layer: str, security: str, action: str, path: str,
              client: str | None = None) -> None:
        """Append one access to the audit log."""
        self._execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [_now(), principal.key_id, layer, security, action, path, client], write=True)

    def audit_log(self, layer: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The latest audit records (newest first), of one layer or all."""
        rows = self._execute(
            "SELECT at, key_id, layer, security, action, path, client FROM audit WHERE (? IS NULL OR layer = ?) "
            "ORDER BY at DESC, rowid DESC LIMIT ?", [layer, layer, int(limit)])
        return [AuditRecord(at=datetime.fromisoformat(a), key_id=k, layer=lay, security=s, action=act, path=p,
                            client=c) for a, k, lay, s, act, p, c in rows]


__all__ = ["ANONYMOUS", "AccessStore", "AuditRecord", "KeyInfo", "NewKey", "Principal", "access_path",
           "parse_scope"]
