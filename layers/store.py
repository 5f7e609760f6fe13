"""`LayerStore`: a city's themed business layers, with versions, in one DuckDB spatial file.

Layout of the file:

- `catalogue.layers`: one row per layer (title, theme, department, security level, current version, dropped flag);
- `catalogue.versions`: one row per version (source file and CRS, geometry type, count, extent, field schema,
  repair counts) naming the table that holds its features;
- `catalogue.themes`: the users' sub-themes (the standard tree ships with the package, `layers.themes`);
- `data."<layer>__v<n>"`: the features of one version: `fid BIGINT`, attribute columns, `geom GEOMETRY` in
  EPSG:4490 lon/lat, rows in Hilbert order, with an R-tree index on `geom`. A rollback adds a version row that
  points at an older table, so versions never copy features.

Concurrency follows DuckDB's rule: one read-write process (any number of threads, a cursor each) or any number of
read-only processes, never both. Imports stage everything (reading, repair, reprojection, Hilbert sort) in private
memory and hold the store only for the commit: the feature table and its R-tree, then the catalogue rows in one
transaction. A failed import drops the table again and leaves the store exactly as it was, and readers of the same
process see the old version until the catalogue commit. See docs/layers.md.

The queries (`query`, `query_arrow`, `count`, `features`, `stats`, ...) live in `layers.queries` (`LayerQueries`,
which `LayerStore` is made with); their helpers (`check_bbox`, `to_geodataframe`, ...) are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

from cim.errors import OutputExistsError
from cim.files import user_path
from cim.sources.crs import parse_crs, transformer
from layers import themes as theme_registry
from layers.cache import LayerCache, budget_mb_from_env
from layers.db import ROW_GROUP_SIZE, ThreadCursors, connect, first_row, quote
from layers.errors import (
    LayerExistsError,
    LayerInputError,
    LayerNotFoundError,
    StoreError,
    StoreWriteError,
    StoreLockedError,
    StoreNotFoundError,
    VersionNotFoundError,
)
from layers.ingest import FID, Staged, crs_label, is_store_crs, stage
from layers.models import (
    DiffResult,
    DropResult,
    ExportResult,
    FieldInfo,
    ImportReport,
    LayerInfo,
    VersionInfo,
)
from layers.queries import (  # the query names are importable from here too
    LayerQueries,
    check_bbox,
    geojson_features,
    selection_geometry,
    to_geodataframe,
)
from layers.sources import GEOM, read_source
from layers.themes import Theme, ThemeRegistry
from layers.types import LIBRARY_LEVELS, SECURITY_LEVELS, STORE_CRS, security_rank

SCHEMA_VERSION = "1"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_LOCK_WORDS = ("lock", "conflicting")
_COMPRESSION_OFF = "fsst,dict_fsst,dictionary,alp,alprd"
# a write the file system or memory refused: the change is dropped, the store stays as it was
_WRITE_FAILURES = (duckdb.IOException, duckdb.OutOfMemoryException, OSError)


def _write_failure(exc: BaseException) -> bool:
    """True for an error of the file system or memory under a write (a full disk, a file size limit): DuckDB
    reports some of them as the commit's TransactionException or as a FatalException."""
    if isinstance(exc, _WRITE_FAILURES):
        return True
    text = str(exc)
    return isinstance(exc, (duckdb.TransactionException, duckdb.FatalException)) and any(
        s in text for s in ("Could not write", "No space left", "File too large", "Disk quota"))
_BATCH = ROW_GROUP_SIZE  # rows per Arrow batch handed to DuckDB: one row group each, written without merging

_DDL = """
CREATE SCHEMA IF NOT EXISTS catalogue;
CREATE SCHEMA IF NOT EXISTS data;
CREATE TABLE IF NOT EXISTS catalogue.meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS catalogue.layers (
    name VARCHAR NOT NULL, title VARCHAR, theme VARCHAR, level VARCHAR, department VARCHAR, security VARCHAR,
    key_field VARCHAR, current_version INTEGER, created_at TIMESTAMP, updated_at TIMESTAMP, dropped_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS catalogue.versions (
    layer VARCHAR NOT NULL, version INTEGER NOT NULL, table_name VARCHAR NOT NULL, operation VARCHAR, note VARCHAR,
    created_at TIMESTAMP, source VARCHAR, source_format VARCHAR, source_crs VARCHAR, source_crs_wkt VARCHAR,
    geometry_type VARCHAR, feature_count BIGINT, xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE,
    fields VARCHAR, key_field VARCHAR, repaired BIGINT, rejected BIGINT);
CREATE TABLE IF NOT EXISTS catalogue.themes (
    path VARCHAR NOT NULL, zh VARCHAR, en VARCHAR, level VARCHAR, created_at TIMESTAMP);
"""


def default_store_path() -> Path:
    """`$CIM_STORE`, else `./cim.duckdb`."""
    return Path(os.environ.get("CIM_STORE") or "cim.duckdb")


def check_name(name: str) -> str:
    """Return `name` if it is a safe layer identifier.

    Raises:
        LayerInputError: not lower-case letters, digits and _ starting with a letter, at most 63 characters.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise LayerInputError(
            f"layer name {name!r} is not a safe identifier; use lower-case letters, digits and _, starting with "
            f"a letter, at most 63 characters (e.g. shelters_2024)"
        )
    return name


def _stat_state(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _is_lock_error(exc: BaseException) -> bool:
    return any(w in str(exc).lower() for w in _LOCK_WORDS)


class LayerStore(LayerQueries):
    """The layer store in one DuckDB file.

    Cheap to construct; `open()` (or `with`) opens the file. Read verbs respect `clearance`: layers above it are
    invisible, as if they did not exist.

    Args:
        path: the DuckDB file; default `$CIM_STORE`, else `./cim.duckdb`.
        read_only: open read-only (many read-only processes may share the file while no process writes).
        clearance: the highest security level the caller may see.
        lock_timeout: seconds to wait, retrying, while another process holds the file.
        cache_mb: memory budget of the hot-layer cache for bbox queries (`layers.cache`), in megabytes; default
            `$CIM_LAYER_CACHE_MB`, else 1024; 0 disables it.

    Example:
        >>> with LayerStore("city.duckdb") as store:  # doctest: +SKIP
        ...     store.import_file("shelters.gpkg", "shelters", theme="public_topics/society")
        ...     gdf = store.query("shelters", bbox=(116.3, 39.9, 116.4, 40.0))
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        clearance: str = "confidential",
        lock_timeout: float = 10.0,
        cache_mb: float | None = None,
    ) -> None:
        if clearance not in SECURITY_LEVELS:
            raise LayerInputError(f"clearance {clearance!r} is not one of {', '.join(SECURITY_LEVELS)}")
        self.path = user_path(path) if path is not None else default_store_path()
        self.read_only = read_only
        self.clearance = clearance
        self.lock_timeout = lock_timeout
        self._con: duckdb.DuckDBPyConnection | None = None
        self._empty = False
        self._readers = ThreadCursors()
        self._commit_lock = threading.Lock()  # one import commit at a time (version numbers)
        # (name, version) -> (info, table, cache key): the catalogue of a layer is read once and forgotten on every
        # write through this store, and when the file or its WAL changes (another store object of this process
        # shares the same DuckDB database and may write to it).
        self._meta: dict[tuple[str, int | None], tuple[LayerInfo, str, str]] = {}
        self._file_state: tuple[Any, ...] | None = None
        self._meta_generation = 0
        self._meta_lock = threading.Lock()
        self._stat_paths = (os.fspath(self.path), os.fspath(self.path) + ".wal")
        budget = budget_mb_from_env() if cache_mb is None else float(cache_mb)
        self.cache = LayerCache(int(max(budget, 0.0) * 1e6))

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> LayerStore:
        """Open the file (creating it and its catalogue when writable).

        Raises:
            StoreNotFoundError: read-only and the file does not exist.
            StoreLockedError: another process held the file for longer than `lock_timeout`.
        """
        if self._con is not None:
            return self
        if self.read_only and not self.path.is_file():
            raise StoreNotFoundError(f"store {self.path} does not exist; import a layer first "
                                     f"(cim layers import FILE --name N --theme T --store {self.path})")
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.02
        while True:
            try:
                self._con = connect(self.path, read_only=self.read_only)
                break
            except StoreError as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    mode = "read" if self.read_only else "write"
                    raise StoreLockedError(
                        f"store {self.path} is held by another process, so this one cannot {mode} it "
                        f"(DuckDB allows one read-write process or many read-only ones); waited "
                        f"{self.lock_timeout:g} s. Retry when the other import/server is done, or send writes "
                        f"through the process that holds the store"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        if self.read_only:
            self._empty = not self._con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'catalogue' AND table_name = 'layers'"
            ).fetchall()[0][0]
        else:
            # A bbox query fetches its hits by row id, and FSST strings and ALP doubles decompress a whole vector
            # per fetched row (a 300 m window of 1M polygons: 20 ms instead of 1.5 ms); dictionary compression
            # analyses every distinct geometry and id on write (2.5x the CPU of writing 1M polygons). Layer tables
            # do without them and are about 20% larger.
            self._con.execute(f"SET disabled_compression_methods = '{_COMPRESSION_OFF}'")
            self._con.execute(_DDL)
            if not self._con.execute("SELECT count(*) FROM catalogue.meta").fetchall()[0][0]:
                self._con.execute("INSERT INTO catalogue.meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        return self

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._con is not None:
            self._readers.close()
            self._con.close()
            self._con = None
            self._meta.clear()
            self.cache.clear()

    def __enter__(self) -> LayerStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open connection (for SQL of your own, e.g. `ST_AsMVT` over `table_name()`).

        Raises:
            StoreError: the store is not open.
        """
        if self._con is None:
            raise StoreError(f"store {self.path} is not open; use `with LayerStore(...)` or call open()")
        return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the open database: one per thread (a transaction of its own)."""
        return self.connection.cursor()

    def _reader(self) -> duckdb.DuckDBPyConnection:
        """This thread's reading cursor (autocommit: every statement sees the latest commit)."""
        return self._readers.get(self.connection)

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only; open it with read_only=False to change it")
        cur = self.cursor()
        cur.begin()
        try:
            yield cur
            cur.commit()
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # a failed write may have invalidated the connection already
                cur.rollback()
            if _write_failure(exc):
                raise self._write_failed(exc) from exc
            raise
        finally:
            cur.close()
            self._meta.clear()

    def _write_failed(self, exc: BaseException) -> StoreWriteError:
        """The error of a write the file system or memory refused (a full disk, a file size limit)."""
        return StoreWriteError(
            f"store {self.path}: the write failed ({str(exc).splitlines()[0]}); nothing of this change was stored "
            f"and what was stored before is intact. Free disk space (or memory) and retry")

    # ------------------------------------------------------------------ themes
    def themes(self) -> ThemeRegistry:
        """The standard theme tree plus this store's sub-themes."""
        if self._empty:
            return theme_registry.builtin()
        rows = self._reader().execute("SELECT path, zh, en, level FROM catalogue.themes").fetchall()
        extra = [Theme(path=p, zh=z, en=e, level=lv, builtin=False) for p, z, e, lv in rows]
        return theme_registry.builtin().with_themes(extra)

    def add_theme(self, parent: str, theme_id: str, zh: str, en: str, level: str | None = None) -> Theme:
        """Add a sub-theme under `parent` (a path of ids or titles).

        Returns:
            The new theme.
        """
        theme = self.themes().new_child(parent, theme_id, zh, en, level)
        with self._transaction() as cur:
            cur.execute("INSERT INTO catalogue.themes VALUES (?, ?, ?, ?, ?)",
                        [theme.path, theme.zh, theme.en, theme.level, _now()])
        return theme

    # ------------------------------------------------------------------ import
    def import_file(
        self,
        path: str | os.PathLike[str],
        name: str,
        theme: str | None = None,
        *,
        title: str | None = None,
        department: str | None = None,
        security: str | None = None,
        level: str | None = None,
        crs: str | None = None,
        encoding: str | None = None,
        source_layer: str | None = None,
        key: str | None = None,
        new_version: bool = False,
    ) -> ImportReport:
        """Import a vector file as a new layer, or as a new version of a layer with `new_version=True`.

        Args:
            path: GeoJSON, GeoPackage, Shapefile (or .zip), FlatGeobuf, SQLite, GeoParquet, CSV or CityJSON.
            name: layer name, a safe identifier.
            theme: theme path (ids or titles); required for a new layer.
            title: display title (default: the name).
            department: owning department.
            security: public, internal or confidential (default internal for a new layer).
            level: library level base/theme/topic (default: the theme's).
            crs: CRS of the coordinates when the file declares none.
            encoding: attribute text encoding (Shapefile without .cpg, CSV).
            source_layer: the layer to read from a multi-layer file.
            key: attribute identifying features across versions (default: the source feature id).
            new_version: add a version to an existing layer instead of failing.

        Returns:
            The import report (counts, repairs, rejected features with reasons).

        Raises:
            LayerExistsError: the layer exists and `new_version` is False.
            LayerInputError: bad name, theme, security, level or file (nothing is stored).
        """
        self.connection  # fail fast when not open
        self._check_import_args(name, theme, security, level, new_version)
        t0 = time.perf_counter()
        staged = stage(read_source(user_path(path), crs=crs, encoding=encoding, layer=source_layer), key_field=key)
        return self.commit(staged, name, theme, title=title, department=department, security=security,
                           level=level, new_version=new_version, started=t0)

    def _check_import_args(self, name: str, theme: str | None, security: str | None, level: str | None,
                           new_version: bool) -> None:
        check_name(name)
        if security is not None and security not in SECURITY_LEVELS:
            raise LayerInputError(f"--security {security!r} is not one of {', '.join(SECURITY_LEVELS)}")
        if level is not None and level not in LIBRARY_LEVELS:
            raise LayerInputError(f"--level {level!r} is not one of {', '.join(LIBRARY_LEVELS)}")
        if theme is not None:
            self.themes().get(theme)
        row = self._layer_row(name) if not self._empty else None
        if row is not None and not new_version:
            state = "was dropped (its history is kept)" if row["dropped_at"] else f"exists (version {row['current_version']})"
            raise LayerExistsError(f"layer {name!r} {state}; pass --new-version to add a version, "
                                   f"or choose another --name")
        if row is None and theme is None:
            raise LayerInputError(f"layer {name!r} is new: pass --theme (see `cim layers themes`)")

    def commit(
        self,
        staged: Staged,
        name: str,
        theme: str | None = None,
        *,
        title: str | None = None,
        department: str | None = None,
        security: str | None = None,
        level: str | None = None,
        new_version: bool = False,
        started: float | None = None,
    ) -> ImportReport:
        """Write a staged import (the only part of an import that holds the store).

        The feature table and its R-tree are written first, then the catalogue rows in one transaction; until that
        commits no reader can see the new version, and if anything fails the table is dropped again, so the store
        is left as it was. Arguments as for `import_file`. Returns the import report.
        """
        self._check_import_args(name, theme, security, level, new_version)
        t0 = started if started is not None else time.perf_counter()
        src = staged.source
        theme_obj = self.themes().get(theme) if theme is not None else None
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only; open it with read_only=False to change it")
        with self._commit_lock:
            cur = self.cursor()
            version = int(cur.execute("SELECT coalesce(max(version), 0) + 1 FROM catalogue.versions WHERE layer = ?",
                                      [name]).fetchall()[0][0])
            table = f"{name}__v{version}"
            try:
                fields = self._write_features(cur, staged.table, table)
                ext = staged.extent
                gtype = _geometry_type(staged.types, staged.has_z)
                with self._transaction() as tx:
                    self._record_version(tx, staged, name, version, table, gtype, ext, fields, theme_obj,
                                         title=title, department=department, security=security, level=level)
            except BaseException as exc:
                # no catalogue row names the table: a leftover is replaced by the next import of this version
                with contextlib.suppress(duckdb.Error):
                    cur.execute(f"DROP TABLE IF EXISTS data.{quote(table)}")
                if _write_failure(exc):
                    raise self._write_failed(exc) from exc
                raise
            finally:
                cur.close()
        count = staged.table.num_rows
        return ImportReport(
            layer=name, version=version, source=str(src.path), source_format=src.format,
            source_crs=crs_label(staged.source_crs), geometry_type=gtype, feature_count=count, read=staged.read,
            repaired=staged.repaired, rejected=staged.rejected, extent=tuple(ext) if ext[0] is not None else None,
            seconds=round(time.perf_counter() - t0, 3))

    @staticmethod
    def _write_features(cur: duckdb.DuckDBPyConnection, features: pa.Table, table: str) -> list[FieldInfo]:
        """Write a version's feature table (rows as staged: in Hilbert order) and its R-tree; returns its fields.

        Runs outside the catalogue transaction: DuckDB builds an R-tree in bulk only over committed rows (inside a
        transaction it adds the rows to the index at commit, four times slower). No catalogue row names the table
        yet, so no reader can see it; `commit` drops it again if anything after this fails.
        """
        # DuckDB scans an Arrow table in parallel by batch, and a one-batch table of 1M rows costs it 5x more CPU
        cur.register("staged_import", pa.Table.from_batches(features.to_batches(max_chunksize=_BATCH),
                                                            features.schema))
        try:
            cols = ", ".join(quote(c) for c in features.column_names if c != GEOM)
            # OR REPLACE: a table of this version can only be the leftover of an import killed before its commit.
            cur.execute(f"CREATE OR REPLACE TABLE data.{quote(table)} AS "
                        f"SELECT {cols}, ST_GeomFromWKB(geom) AS geom FROM staged_import")
        finally:
            cur.unregister("staged_import")
        cur.execute(f"CREATE INDEX {quote(table + '_rtree')} ON data.{quote(table)} USING RTREE (geom)")
        return [FieldInfo(name=c, type=t) for c, t, *_ in
                cur.execute(f"DESCRIBE data.{quote(table)}").fetchall() if c not in (FID, GEOM)]

    def _record_version(self, cur: duckdb.DuckDBPyConnection, staged: Staged, name: str, version: int, table: str,
                        gtype: str, ext: tuple[Any, ...], fields: list[FieldInfo], theme_obj: Theme | None,
                        **meta: str | None) -> None:
        """The catalogue rows of a new version (and of its layer), in the caller's transaction."""
        src, now = staged.source, _now()
        cur.execute(
            "INSERT INTO catalogue.versions VALUES (?, ?, ?, 'import', '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, version, table, now, str(src.path), src.format, crs_label(staged.source_crs),
             staged.source_crs.to_wkt(), gtype, staged.table.num_rows, *ext,
             json.dumps([f.to_dict() for f in fields], ensure_ascii=False), staged.key_field,
             staged.repaired, len(staged.rejected)])
        prev = self._layer_row(name, cur)
        title, department, security, level = (meta.get(k) for k in ("title", "department", "security", "level"))
        if prev is None:
            assert theme_obj is not None
            cur.execute(
                "INSERT INTO catalogue.layers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [name, title or name, theme_obj.path, level or theme_obj.level, department or "",
                 security or "internal", staged.key_field, version, now, now])
        else:
            cur.execute(
                "UPDATE catalogue.layers SET title = ?, theme = ?, level = ?, department = ?, security = ?, "
                "key_field = ?, current_version = ?, updated_at = ?, dropped_at = NULL WHERE name = ?",
                [title or prev["title"], theme_obj.path if theme_obj else prev["theme"], level or prev["level"],
                 department if department is not None else prev["department"], security or prev["security"],
                 staged.key_field, version, now, name])

    # ------------------------------------------------------------------ catalogue reads
    def _layer_row(self, name: str, cur: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any] | None:
        cur = cur or self._reader()
        res = cur.execute("SELECT * FROM catalogue.layers WHERE name = ?", [name])
        columns = [d[0] for d in res.description]
        row = first_row(res)
        if row is None:
            return None
        return dict(zip(columns, row, strict=True))

    def _version_rows(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        res = self._reader().execute(
            "SELECT * FROM catalogue.versions WHERE layer = ? AND (? IS NULL OR version = ?) ORDER BY version",
            [name, version, version])
        cols = [d[0] for d in res.description]
        return [dict(zip(cols, r, strict=True)) for r in res.fetchall()]

    def _visible_row(self, name: str, *, allow_dropped: bool = False) -> dict[str, Any]:
        row = None if self._empty else self._layer_row(name)
        if row is None or security_rank(row["security"]) > security_rank(self.clearance):
            raise LayerNotFoundError(f"no layer {name!r} in {self.path}; see `cim layers list`")
        if row["dropped_at"] is not None and not allow_dropped:
            raise LayerNotFoundError(
                f"layer {name!r} was dropped; its history is kept: `cim layers history {name}`, restore it with "
                f"`cim layers rollback {name} --to N`, or remove it with `cim layers drop {name} --purge`")
        return row

    def _version_row(self, name: str, version: int | None, row: dict[str, Any]) -> dict[str, Any]:
        v = row["current_version"] if version is None else version
        rows = self._version_rows(name, v)
        if not rows:
            known = [r["version"] for r in self._version_rows(name)]
            raise VersionNotFoundError(f"layer {name!r} has no version {v}; versions: {known}")
        return rows[0]

    def _info(self, row: dict[str, Any], vrow: dict[str, Any], reg: ThemeRegistry | None = None) -> LayerInfo:
        reg = reg or self.themes()
        theme = reg.get(row["theme"]) if row["theme"] in reg else None
        return LayerInfo(
            name=row["name"], title=row["title"], theme=row["theme"],
            theme_title=f"{theme.zh} / {theme.en}" if theme else row["theme"], level=row["level"],
            department=row["department"], security=row["security"], version=vrow["version"],
            source=vrow["source"], source_format=vrow["source_format"], source_crs=vrow["source_crs"],
            geometry_type=vrow["geometry_type"], feature_count=vrow["feature_count"], extent=_extent(vrow),
            fields=[FieldInfo(**f) for f in json.loads(vrow["fields"])], key_field=vrow["key_field"],
            created_at=row["created_at"], updated_at=row["updated_at"], dropped=row["dropped_at"] is not None)

    def list(self, theme: str | None = None, *, security: str | None = None) -> list[LayerInfo]:
        """Layers visible at this store's clearance, by name.

        Args:
            theme: only layers in this theme or below it.
            security: only layers visible at this level (at most the store's clearance).
        """
        if self._empty:
            return []
        limit = min(security_rank(security or self.clearance), security_rank(self.clearance))
        prefix = self.themes().get(theme).path if theme else None
        out = []
        cur = self._reader()
        res = cur.execute("SELECT * FROM catalogue.layers WHERE dropped_at IS NULL ORDER BY name")
        cols = [d[0] for d in res.description]
        rows = [dict(zip(cols, r, strict=True)) for r in res.fetchall()]
        # one query for the current versions and one theme registry: a city's 2,372 layers listed one query each
        # took 87 s under load
        res = cur.execute("SELECT v.* FROM catalogue.versions v JOIN catalogue.layers l ON v.layer = l.name "
                          "AND v.version = l.current_version WHERE l.dropped_at IS NULL")
        vcols = [d[0] for d in res.description]
        current = {r[0]: dict(zip(vcols, r, strict=True)) for r in res.fetchall()}
        reg = self.themes()
        for row in rows:
            if security_rank(row["security"]) > limit:
                continue
            if prefix and not (row["theme"] == prefix or row["theme"].startswith(prefix + "/")):
                continue
            vrow = current.get(row["name"]) or self._version_row(row["name"], None, row)
            out.append(self._info(row, vrow, reg))
        return out

    def _layer_entry(self, name: str, version: int | None) -> tuple[LayerInfo, str, str]:
        """Catalogue facts of a layer version: info, quoted table and hot-layer cache key (cached; see `__init__`)."""
        state = (_stat_state(self._stat_paths[0]), _stat_state(self._stat_paths[1]))  # a stat each, no SQL
        if state != self._file_state:
            with self._meta_lock:
                if state != self._file_state:
                    self._meta.clear()
                    self._meta_generation += 1
                    self._file_state = state
        key = (name, version)
        entry = self._meta.get(key)
        if entry is None:
            generation = self._meta_generation
            row = self._visible_row(name)
            vrow = self._version_row(name, version, row)
            # versions never change, but a purged layer's table name comes back with its next import: the cache
            # key adds the time the table was written (its first version row)
            written = self._reader().execute(
                "SELECT min(created_at) FROM catalogue.versions WHERE layer = ? AND table_name = ?",
                [name, vrow["table_name"]]).fetchall()[0][0]
            entry = (self._info(row, vrow), "data." + quote(vrow["table_name"]), f"{vrow['table_name']}@{written}")
            if generation == self._meta_generation:  # else a change was seen meanwhile: this read may predate it
                self._meta[key] = entry
        return entry

    def _layer_meta(self, name: str, version: int | None) -> tuple[LayerInfo, str]:
        info, table, _ = self._layer_entry(name, version)
        return info, table

    def info(self, name: str, version: int | None = None) -> LayerInfo:
        """Catalogue record of a layer (schema, extent, source, CRS...), of its current version by default."""
        return self._layer_meta(name, version)[0].model_copy()

    def table_name(self, name: str, version: int | None = None) -> str:
        """The quoted SQL name (`data."name__vN"`) of a layer version's feature table, for SQL of your own."""
        return self._layer_meta(name, version)[1]

    def history(self, name: str) -> list[VersionInfo]:
        """Every version of a layer, oldest first (also for a dropped layer)."""
        row = self._visible_row(name, allow_dropped=True)
        return [VersionInfo(
            version=v["version"], operation=v["operation"], note=v["note"] or "", created_at=v["created_at"],
            source=v["source"], source_format=v["source_format"], source_crs=v["source_crs"],
            geometry_type=v["geometry_type"], feature_count=v["feature_count"], extent=_extent(v),
            fields=[FieldInfo(**f) for f in json.loads(v["fields"])], repaired=v["repaired"],
            rejected=v["rejected"], current=v["version"] == row["current_version"] and row["dropped_at"] is None,
        ) for v in self._version_rows(name)]

    # ------------------------------------------------------------------ versions
    def diff(self, name: str, from_version: int, to_version: int | None = None) -> DiffResult:
        """Features added, removed and changed (attributes or geometry) between two versions.

        Features are matched by the layer's key field (the source feature id unless `--key` was given at import).
        """
        row = self._visible_row(name, allow_dropped=True)
        a = self._version_row(name, from_version, row)
        b = self._version_row(name, to_version, row)
        key = b["key_field"]
        fa = {f["name"]: f["type"] for f in json.loads(a["fields"])}
        fb = {f["name"]: f["type"] for f in json.loads(b["fields"])}
        if key != FID and (key not in fa or key not in fb):
            raise LayerInputError(f"layer {name!r}: key field {key!r} is not in both versions; cannot match features")
        ta, tb = "data." + quote(a["table_name"]), "data." + quote(b["table_name"])
        k = quote(key)
        cur = self._reader()
        for t in (ta, tb):
            n, d = cur.execute(f"SELECT count(*), count(DISTINCT {k}) FROM {t}").fetchall()[0]
            if n != d:
                raise LayerInputError(f"layer {name!r}: key field {key!r} is not unique; diff needs a unique key "
                                      f"(re-import with --key FIELD)")
        common = [c for c in fa if c in fb and c != key]
        changed_expr = " OR ".join(
            ["ST_AsWKB(a.geom) IS DISTINCT FROM ST_AsWKB(b.geom)"]
            + [f"a.{quote(c)}::VARCHAR IS DISTINCT FROM b.{quote(c)}::VARCHAR" for c in common])
        added = [r[0] for r in cur.execute(
            f"SELECT b.{k} FROM {tb} b WHERE NOT EXISTS (SELECT 1 FROM {ta} a WHERE a.{k} = b.{k}) ORDER BY 1"
        ).fetchall()]
        removed = [r[0] for r in cur.execute(
            f"SELECT a.{k} FROM {ta} a WHERE NOT EXISTS (SELECT 1 FROM {tb} b WHERE a.{k} = b.{k}) ORDER BY 1"
        ).fetchall()]
        changed = [r[0] for r in cur.execute(
            f"SELECT a.{k} FROM {ta} a JOIN {tb} b ON a.{k} = b.{k} WHERE {changed_expr} ORDER BY 1").fetchall()]
        return DiffResult(layer=name, from_version=a["version"], to_version=b["version"], key=key, added=added,
                          removed=removed, changed=changed, fields_added=[c for c in fb if c not in fa],
                          fields_removed=[c for c in fa if c not in fb])

    def rollback(self, name: str, version: int) -> VersionInfo:
        """Make an old version current again, as a new version (history is never rewritten).

        Also restores a dropped layer. Returns the new version.
        """
        row = self._visible_row(name, allow_dropped=True)
        old = self._version_row(name, version, row)
        now = _now()
        with self._transaction() as cur:
            new = int(cur.execute("SELECT max(version) + 1 FROM catalogue.versions WHERE layer = ?",
                                  [name]).fetchall()[0][0])
            cur.execute(
                "INSERT INTO catalogue.versions SELECT layer, ?, table_name, 'rollback', ?, ?, source, source_format,"
                " source_crs, source_crs_wkt, geometry_type, feature_count, xmin, ymin, xmax, ymax, fields, key_field,"
                " repaired, rejected FROM catalogue.versions WHERE layer = ? AND version = ?",
                [new, f"rollback to version {old['version']}", now, name, old["version"]])
            cur.execute("UPDATE catalogue.layers SET current_version = ?, key_field = ?, updated_at = ?, "
                        "dropped_at = NULL WHERE name = ?", [new, old["key_field"], now, name])
        return self.history(name)[-1]

    def drop(self, name: str, *, purge: bool = False) -> DropResult:
        """Drop a layer: hide it but keep its history, or with `purge` delete it and every version's features."""
        row = self._visible_row(name, allow_dropped=purge)
        versions = self._version_rows(name)
        tables = sorted({v["table_name"] for v in versions})
        with self._transaction() as cur:
            if purge:
                for t in tables:
                    cur.execute(f"DROP TABLE IF EXISTS data.{quote(t)}")
                cur.execute("DELETE FROM catalogue.versions WHERE layer = ?", [name])
                cur.execute("DELETE FROM catalogue.layers WHERE name = ?", [name])
            else:
                cur.execute("UPDATE catalogue.layers SET dropped_at = ? WHERE name = ?", [_now(), row["name"]])
        return DropResult(layer=name, purged=purge, versions=len(versions), tables_dropped=len(tables) if purge else 0)


    # ------------------------------------------------------------------ export
    def export(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        crs: str | None = None,
        version: int | None = None,
        overwrite: bool = False,
        encoding: str | None = None,
    ) -> ExportResult:
        """Write a layer to GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet (CRS in the `geo` metadata) or
        CSV (WKT column).

        Args:
            name: the layer.
            path: output file.
            format: geojson, gpkg, shp, fgb, parquet or csv (default: from the extension).
            crs: reproject to this CRS (default: the CRS the layer version was imported from; CGCS2000 lon/lat,
                the store's own, only when the source was in it).
            version: an older version (default current).
            overwrite: replace an existing file (a Shapefile's .shx, .dbf, .prj, .cpg with it).
            encoding: a Shapefile's text encoding, named in its .cpg (default UTF-8; "GBK" for older GIS).

        Raises:
            OutputExistsError: the file (or part of the Shapefile) exists, without `overwrite`.
            LayerInputError: an unknown format or encoding, or a layer the format cannot hold.
        """
        from layers.writers import SHAPEFILE_PARTS, write_table

        out = user_path(path)
        fmt = format or _format_from_suffix(out)
        existing = [out.with_suffix(p) for p in SHAPEFILE_PARTS if out.with_suffix(p).exists()] if fmt == "shp" \
            else ([out] if out.exists() else [])
        if existing and not overwrite:
            raise OutputExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
        info = self.info(name, version)
        table = self.query_arrow(name, version=version, order=True)
        target = parse_crs(crs, what="--crs") if crs else self.source_crs(name, version)
        if not is_store_crs(target):
            t = transformer(STORE_CRS, target)

            def move(c: np.ndarray) -> np.ndarray:
                o = c.copy()
                o[:, 0], o[:, 1] = t.transform(c[:, 0], c[:, 1])
                return o

            geoms = shapely.transform(shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False)), move,
                                      include_z=None)
            table = table.set_column(table.column_names.index(GEOM), GEOM, pa.array(shapely.to_wkb(geoms)))
        written = write_table(table, out, fmt, target, info.geometry_type, layer=name, overwrite=overwrite,
                              encoding=encoding)
        return ExportResult(layer=name, version=info.version, path=str(out), format=fmt, crs=crs_label(target),
                            feature_count=table.num_rows, encoding=(encoding or "UTF-8") if fmt == "shp" else None,
                            renamed=written.renamed, warnings=written.warnings)

    def source_crs(self, name: str, version: int | None = None) -> CRS:
        """The CRS a layer version was imported from (its coordinates are kept in CGCS2000 lon/lat)."""
        self.info(name, version)  # visibility and version checks, with their errors
        vrow = self._version_row(name, version, self._visible_row(name))
        for text in (vrow.get("source_crs_wkt"), vrow.get("source_crs")):
            if text:
                with contextlib.suppress(Exception):
                    return CRS.from_user_input(text)
        return parse_crs(STORE_CRS)


# ---------------------------------------------------------------------- helpers and module-level API
def _geometry_type(types: Sequence[str], has_z: bool) -> str:
    names = {"POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon", "MULTIPOINT": "MultiPoint",
             "MULTILINESTRING": "MultiLineString", "MULTIPOLYGON": "MultiPolygon",
             "GEOMETRYCOLLECTION": "GeometryCollection"}
    found = {names.get(t.upper(), "Geometry") for t in types}
    if len(found) == 1:
        gtype = found.pop()
    elif len(found) == 2 and any(f"Multi{t}" in found for t in ("Point", "LineString", "Polygon")):
        gtype = next(t for t in found if t.startswith("Multi"))
    else:
        gtype = "Geometry"
    return gtype + (" Z" if has_z else "")


def _extent(v: dict[str, Any]) -> tuple[float, float, float, float] | None:
    return None if v["xmin"] is None else (v["xmin"], v["ymin"], v["xmax"], v["ymax"])








def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    fmt = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".parquet": "parquet",
           ".geoparquet": "parquet", ".csv": "csv", ".shp": "shp", ".fgb": "fgb"}.get(suffix)
    if fmt is None:
        raise LayerInputError(f"{path}: cannot tell the export format from {suffix or 'no extension'!r}; "
                              f"use .geojson, .gpkg, .shp, .fgb, .parquet or .csv, or pass --format")
    return fmt




def open_read_only(path: str | os.PathLike[str] | None = None, *, clearance: str = "public",
                   lock_timeout: float = 10.0) -> LayerStore:
    """An open read-only store (for servers and notebooks); close it, or use it in `with`."""
    return LayerStore(path, read_only=True, clearance=clearance, lock_timeout=lock_timeout).open()


def import_layer(
    store: str | os.PathLike[str] | None,
    path: str | os.PathLike[str],
    name: str,
    theme: str | None = None,
    *,
    crs: str | None = None,
    encoding: str | None = None,
    source_layer: str | None = None,
    key: str | None = None,
    lock_timeout: float = 30.0,
    **meta: Any,
) -> ImportReport:
    """Import a file into a store file, holding the store only for the commit (the CLI's import).

    The file is read, repaired and reprojected before the store is opened, so other processes (read-only
    servers) keep the store during that time; the commit then waits up to `lock_timeout` for them.
    Keyword arguments as `LayerStore.import_file`.
    """
    check_name(name)
    target = Path(store) if store is not None else default_store_path()
    if target.is_file():  # fail before the (long) read when the arguments cannot be committed
        try:
            with LayerStore(target, read_only=True, lock_timeout=0) as s:
                s._check_import_args(name, theme, meta.get("security"), meta.get("level"),
                                     meta.get("new_version", False))
        except StoreLockedError:
            pass
    t0 = time.perf_counter()
    staged = stage(read_source(path, crs=crs, encoding=encoding, layer=source_layer), key_field=key)
    with LayerStore(store, lock_timeout=lock_timeout) as s:
        return s.commit(staged, name, theme, started=t0, **meta)


__all__ = [
    "LayerStore",
    "check_bbox",
    "check_name",
    "default_store_path",
    "geojson_features",
    "import_layer",
    "open_read_only",
    "quote",
    "to_geodataframe",
]
