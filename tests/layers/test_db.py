"""`layers.db`: spatial loaded from the pinned wheel, no further extension or file access through SQL; per-thread
cursors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from layers.db import connect, spatial_extension_path


def test_spatial_works_and_arrow_tables_can_be_registered(tmp_path: Path) -> None:
    con = connect(tmp_path / "a.duckdb")
    con.register("t", pa.table({"x": [1.0, 2.0], "y": [3.0, 4.0]}))
    assert con.execute("SELECT ST_AsText(ST_Point(max(x), max(y))) FROM t").fetchone()[0] == "POINT (2 4)"
    con.close()


def test_no_statement_can_load_another_extension_or_touch_files(tmp_path: Path) -> None:
    con = connect(None)
    other = tmp_path / "other.duckdb_extension"
    other.write_bytes(spatial_extension_path().read_bytes()[:4096])
    with pytest.raises(duckdb.Error, match="disabled"):
        con.execute(f"LOAD '{other.as_posix()}'")
    (tmp_path / "t.csv").write_text("a\n1\n")
    with pytest.raises(duckdb.Error):
        con.execute(f"SELECT * FROM read_csv('{(tmp_path / 't.csv').as_posix()}')")
    with pytest.raises(duckdb.Error):
        con.execute(f"COPY (SELECT 1) TO '{(tmp_path / 'out.csv').as_posix()}'")
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")


@pytest.mark.timeout(120)
def test_first_row_leaves_no_read_transaction_to_block_a_checkpointing_commit(tmp_path: Path) -> None:
    """`fetchone()` keeps a one-row result, and the cursor's read transaction, open; a COMMIT whose automatic
    checkpoint needs the table locks then waits for it (forever, when the reader's thread waits for the commit).
    `first_row` reads the result to its end."""
    import threading

    from layers.db import first_row

    con = connect(tmp_path / "c.duckdb")
    con.execute("CREATE TABLE t (i BIGINT PRIMARY KEY)")
    con.execute("INSERT INTO t SELECT range FROM range(1000)")
    con.execute("SET checkpoint_threshold = '1KB'")  # every commit checkpoints
    reader, writer = con.cursor(), con.cursor()
    assert first_row(reader.execute("SELECT i FROM t WHERE i < 0")) is None
    assert first_row(reader.execute("SELECT i + 1 FROM t WHERE i = 41")) == (42,)
    assert first_row(reader.execute("SELECT max(i) FROM t")) == (999,)  # a scan: fetchone() would leave it open
    done = threading.Event()

    def write() -> None:
        writer.begin()
        writer.execute("INSERT INTO t SELECT range + 1000 FROM range(50000)")
        writer.commit()
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(60), "the COMMIT's checkpoint is still waiting for the reader's transaction"
    assert first_row(reader.execute("SELECT count(*) FROM t")) == (51_000,)


def test_library_code_reads_one_row_with_first_row_not_fetchone() -> None:
    """A `fetchone()` in the engine's code is a COMMIT that may never return in a process that also writes (the
    tile server with --ingest); see `layers.db.first_row`."""
    root = Path(__file__).resolve().parents[2]
    found = [f"{p.relative_to(root)}:{n}" for top in ("cim", "layers", "tiles") for p in sorted((root / top).rglob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if ".fetchone(" in line]
    assert found == []


def test_thread_cursors_one_per_thread_new_after_close_or_another_connection() -> None:
    import threading

    from layers.db import ThreadCursors

    con = duckdb.connect()
    cursors = ThreadCursors()
    mine = cursors.get(con)
    assert cursors.get(con) is mine  # handed out again to the same thread
    theirs: list[duckdb.DuckDBPyConnection] = []
    t = threading.Thread(target=lambda: theirs.append(cursors.get(con)))
    t.start()
    t.join()
    assert theirs[0] is not mine
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert mine.execute("SELECT x FROM t").fetchall() == [(1,)]  # an autocommit cursor sees the latest commit
    cursors.close()
    for cur in (mine, theirs[0]):  # every cursor handed out is closed, the other thread's too
        with pytest.raises(duckdb.Error):
            cur.execute("SELECT 1")
    again = cursors.get(con)
    assert again is not mine and again.execute("SELECT x FROM t").fetchall() == [(1,)]
    other = duckdb.connect()
    assert cursors.get(other) is not again  # the store was opened again: a cursor on the new connection
    cursors.close()
    cursors.close()  # idempotent
    con.close()
    other.close()


def test_sqlite_beside_the_store_is_created_in_wal_mode_and_writable_from_two_connections(tmp_path: Path) -> None:
    import threading

    from layers.db import connect_sqlite

    path = tmp_path / "new" / "city.docs.sqlite"
    ddl = "CREATE TABLE IF NOT EXISTS docs (name TEXT PRIMARY KEY, doc TEXT)"
    a = connect_sqlite(path, ddl)
    assert path.is_file()
    assert a.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert a.isolation_level is None  # autocommit: each statement its own short transaction
    a.execute("INSERT INTO docs VALUES ('x', '1')")
    b = connect_sqlite(path, ddl)  # a second process's connection: the tables are kept, not created again
    assert b.execute("SELECT doc FROM docs").fetchall() == [("1",)]
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(a.execute("INSERT INTO docs VALUES ('y', '2')").rowcount))
    t.start()
    t.join()
    assert done == [1] and b.execute("SELECT count(*) FROM docs").fetchone()[0] == 2  # usable from another thread
    a.close()
    b.close()
