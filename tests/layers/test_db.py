"""`layers.db.connect`: spatial loaded from the pinned wheel, and no further extension or file access through SQL."""

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
