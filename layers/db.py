"""The one place that opens DuckDB with its spatial extension.

DuckDB cannot download extensions on this project's machines (no internet), so the spatial extension comes from the
`duckdb-ext-spatial` wheel, pinned next to `duckdb==1.4.4` in pyproject.toml, and is loaded from the file that
wheel ships. Autoloading and autoinstalling are switched off so nothing ever reaches for the network.

DuckDB checks an extension's signature by hashing the whole file on every LOAD: 0.2-0.3 s for the 88 MB spatial
extension, most of the cost of opening a store. The file is the one pip installed from the pinned wheel (pip checked
its hash), so `connect` skips that check (`allow_unsigned_extensions`) and loads it in about 0.01 s. Right after
that LOAD it switches external access off for the life of the database (`enable_external_access = false`, which
DuckDB does not let anyone switch back on): no later statement can LOAD any other file, signed or not, nor read or
write files through SQL. The project needs neither: sources are read by GDAL/Arrow in Python and handed to DuckDB
as registered Arrow tables, and exports are written the same way.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import duckdb

from layers.errors import StoreError

ROW_GROUP_SIZE = 122_880  # rows per DuckDB row group (DuckDB's default): an Arrow batch of this size is written as is
_EXT_RELATIVE = Path("duckdb_ext", "extensions", f"v{duckdb.__version__}", "linux_amd64", "spatial.duckdb_extension")


def spatial_extension_path() -> Path:
    """Path of the spatial extension file shipped by the `duckdb-ext-spatial` wheel.

    Raises:
        StoreError: the wheel is not installed or does not match the installed DuckDB.
    """
    override = os.environ.get("CIM_DUCKDB_SPATIAL")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("duckdb_ext")
        roots = list(spec.submodule_search_locations or []) if spec else []
        candidates = [Path(r).parent / _EXT_RELATIVE for r in roots]
        path = next((c for c in candidates if c.is_file()), candidates[0] if candidates else _EXT_RELATIVE)
    if not path.is_file():
        raise StoreError(
            f"DuckDB spatial extension not found at {path} (duckdb {duckdb.__version__}); "
            f"install the pinned wheel: pip install 'duckdb=={duckdb.__version__}' "
            f"'duckdb-ext-spatial=={duckdb.__version__}.20260205'"
        )
    return path


def connect(path: str | os.PathLike[str] | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB database (a file, or in memory when `path` is None) with spatial loaded.

    Args:
        path: database file; None for an in-memory database.
        read_only: open the file read-only (many read-only processes may share a file no writer holds).

    Returns:
        A connection on which `ST_*` functions work.

    Raises:
        StoreError: the file cannot be opened (locked by a writer, not a DuckDB file) or spatial cannot load.
    """
    config = {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
              "allow_unsigned_extensions": "true"}
    target = ":memory:" if path is None else str(path)
    try:
        con = duckdb.connect(target, read_only=read_only, config=config)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open DuckDB store {target!r}: {exc}") from exc
    try:
        con.execute(f"LOAD '{spatial_extension_path().as_posix()}'")
        con.execute("SET enable_external_access = false")
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot load the DuckDB spatial extension into {target!r}: {exc}") from exc
    return con


def quote(identifier: str) -> str:
    """A SQL quoted identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def first_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of an executed query, after reading its result to the end (None when it has no rows).

    Use it instead of `fetchone()` on any cursor that lives on: `fetchone()` leaves even a one-row result open, and
    with it the cursor's read transaction and its shared lock on every table the query read. A COMMIT that triggers
    an automatic checkpoint (the WAL passed `checkpoint_threshold`) waits for an exclusive lock on each table, so it
    waits until that cursor runs its next query; when the thread that owns the cursor is itself waiting for the
    commit (the sensing batch writer, a caller waiting for its batch), it waits forever (DuckDB 1.4; fixed in 1.5 by
    duckdb/duckdb#20286, see duckdb/duckdb-python#182). Give queries whose result may have more rows a `LIMIT 1`.
    """
    rows = result.fetchall()
    return rows[0] if rows else None


def connect_sqlite(path: str | os.PathLike[str], ddl: str) -> sqlite3.Connection:
    """Open a SQLite file kept beside the store (keys and audit, documents), creating it and its folder.

    WAL mode and autocommit let every process write short transactions while a server holds the DuckDB store
    read-only; a writer waits up to 10 s for another's. The connection may be used from any thread: callers
    serialise their statements with a lock of their own.

    Args:
        path: the SQLite file.
        ddl: statements that create its tables when missing (`CREATE TABLE IF NOT EXISTS ...`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(ddl)
    return con


class ThreadCursors:
    """One cursor per thread on a connection, handed out again to the same thread and closed all together.

    A cursor is its own autocommit transaction, so a read through it sees the latest commit; sharing one between
    threads would serialise them. A thread asking with another connection than its cursor's (the store was closed
    and opened again) gets a new cursor.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def get(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on `con` (made on first use)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None or getattr(self._local, "owner", None) is not con:
            cur = self._local.cursor = con.cursor()
            self._local.owner = con
            with self._lock:
                self._all.append(cur)
        return cur

    def close(self) -> None:
        """Close every cursor handed out (one that fails to close is passed over); later calls of `get` make new
        ones."""
        with self._lock:
            for cur in self._all:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._all.clear()
        self._local = threading.local()
