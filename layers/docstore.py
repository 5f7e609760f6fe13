"""Documents kept beside the layer store: layer styles, scenes and annotations, in one SQLite file.

Why a sidecar and not the DuckDB store: the server holds the DuckDB store read-only for its whole life (DuckDB allows
one read-write process or many read-only ones, and `cim serve` may run several worker processes), yet a planner who
saves a thematic map or a scene in the viewer expects it saved at once. SQLite in WAL mode lets every process write
short transactions, as the key file does (`tiles.server.auth`). The file is `<store>.docs.sqlite`
(`city.duckdb` -> `city.docs.sqlite`). Every document is JSON text, written in one transaction (a failed write
leaves the old document).

    >>> from layers.docstore import DocumentStore, docs_path
    >>> with DocumentStore(docs_path("city.duckdb")) as docs:  # doctest: +SKIP
    ...     docs.scene_names()
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layers.db import connect_sqlite
from layers.errors import LayerNotFoundError

_DDL = """
CREATE TABLE IF NOT EXISTS styles (layer TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at TEXT, updated_by TEXT);
CREATE TABLE IF NOT EXISTS scenes (name TEXT PRIMARY KEY, doc TEXT NOT NULL, owner TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS annotations (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, doc TEXT NOT NULL,
                                        created_at TEXT);
CREATE INDEX IF NOT EXISTS annotations_owner ON annotations (owner);
"""


class DocumentNotFoundError(LayerNotFoundError):
    """No style, scene or annotation by that name or id."""


def docs_path(store: str | os.PathLike[str]) -> Path:
    """The document file of a store: `city.duckdb` -> `city.docs.sqlite`."""
    p = Path(store)
    return p.with_name(p.stem + ".docs.sqlite")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DocumentStore:
    """Styles, scenes and annotations in one SQLite file; thread-safe (one connection behind a lock).

    Cheap to construct; `open()` (or `with`) opens and creates the file.

    Args:
        path: the SQLite file (see `docs_path`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> DocumentStore:
        if self._con is None:
            self._con = connect_sqlite(self.path, _DDL)
        return self

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> DocumentStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.open()
        assert self._con is not None
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ styles
    def style(self, layer: str) -> dict[str, Any] | None:
        """The stored style document of a layer, or None."""
        rows = self._execute("SELECT doc FROM styles WHERE layer = ?", [layer])
        return json.loads(rows[0][0]) if rows else None

    def styles(self, layers: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored style documents of the given layers that have one, by layer."""
        out: dict[str, dict[str, Any]] = {}
        names = list(layers)
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            rows = self._execute(f"SELECT layer, doc FROM styles WHERE layer IN ({','.join('?' * len(chunk))})", chunk)
            out.update({layer: json.loads(doc) for layer, doc in rows})
        return out

    def put_style(self, layer: str, doc: dict[str, Any], by: str | None = None) -> None:
        self._execute("INSERT INTO styles VALUES (?, ?, ?, ?) ON CONFLICT (layer) DO UPDATE SET doc = excluded.doc, "
                      "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                      [layer, json.dumps(doc, ensure_ascii=False), now(), by])

    def delete_style(self, layer: str) -> None:
        """Forget a layer's style (the default applies again). Raises `DocumentNotFoundError`."""
        if not self._execute("DELETE FROM styles WHERE layer = ? RETURNING layer", [layer]):
            raise DocumentNotFoundError(f"layer {layer!r} has no stored style")

    def styled_layers(self) -> list[str]:
        return [r[0] for r in self._execute("SELECT layer FROM styles ORDER BY layer")]

    # ------------------------------------------------------------------ scenes
    def scene(self, name: str) -> dict[str, Any]:
        """A scene document by name. Raises `DocumentNotFoundError`."""
        rows = self._execute("SELECT doc FROM scenes WHERE name = ?", [name])
        if not rows:
            raise DocumentNotFoundError(f"no scene {name!r}; see /catalog for the scenes you may open")
        return json.loads(rows[0][0])

    def scenes(self) -> list[dict[str, Any]]:
        """Every scene document, by name."""
        return [json.loads(r[0]) for r in self._execute("SELECT doc FROM scenes ORDER BY name")]

    def scene_names(self) -> list[str]:
        return [r[0] for r in self._execute("SELECT name FROM scenes ORDER BY name")]

    def scene_owner(self, name: str) -> str | None:
        rows = self._execute("SELECT owner FROM scenes WHERE name = ?", [name])
        if not rows:
            raise DocumentNotFoundError(f"no scene {name!r}")
        return rows[0][0]

    def put_scene(self, name: str, doc: dict[str, Any], owner: str | None = None) -> None:
        self._execute("INSERT INTO scenes VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, "
                      "owner = excluded.owner, updated_at = excluded.updated_at",
                      [name, json.dumps(doc, ensure_ascii=False), owner, now()])

    def delete_scene(self, name: str) -> None:
        if not self._execute("DELETE FROM scenes WHERE name = ? RETURNING name", [name]):
            raise DocumentNotFoundError(f"no scene {name!r}")

    # ------------------------------------------------------------------ annotations (per key)
    def annotations(self, owner: str) -> list[dict[str, Any]]:
        """The annotations of one key, oldest first, each with its `id`."""
        rows = self._execute("SELECT id, doc FROM annotations WHERE owner = ? ORDER BY id", [owner])
        return [{**json.loads(doc), "id": i} for i, doc in rows]

    def add_annotation(self, owner: str, doc: dict[str, Any]) -> dict[str, Any]:
        rows = self._execute("INSERT INTO annotations (owner, doc, created_at) VALUES (?, ?, ?) RETURNING id",
                             [owner, json.dumps(doc, ensure_ascii=False), now()])
        return {**doc, "id": rows[0][0]}

    def delete_annotation(self, owner: str, annotation_id: int) -> None:
        if not self._execute("DELETE FROM annotations WHERE owner = ? AND id = ? RETURNING id", [owner, annotation_id]):
            raise DocumentNotFoundError(f"no annotation {annotation_id} of this key")


__all__ = ["DocumentNotFoundError", "DocumentStore", "docs_path"]
