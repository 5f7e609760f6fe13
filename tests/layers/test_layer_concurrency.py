"""Readers during writes: threads of one process (MVCC snapshots), and processes (DuckDB's file lock)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import layers.store as store_module
from layers import LayerStore, import_layer
from layers.errors import StoreLockedError

ADMIN = "spatiotemporal_base/admin_division"
ROOT = Path(__file__).resolve().parents[2]


def test_readers_in_other_threads_see_the_old_version_until_the_commit(tmp_path, communities_geojson,
                                                                       shelters_gpkg_projected, monkeypatch):
    in_commit, reader_done = threading.Event(), threading.Event()
    original = store_module._geometry_type

    def paused(types, has_z):  # runs inside the import's transaction
        in_commit.set()
        assert reader_done.wait(30)
        return original(types, has_z)

    with LayerStore(tmp_path / "c.duckdb") as store:
        store.import_file(communities_geojson, "layer", ADMIN)
        monkeypatch.setattr(store_module, "_geometry_type", paused)
        writer = threading.Thread(target=store.import_file, args=(shelters_gpkg_projected, "layer"),
                                  kwargs={"new_version": True})
        writer.start()
        assert in_commit.wait(30)
        seen = (store.info("layer").version, len(store.query("layer", bbox=(116.3, 39.9, 116.33, 39.92))))
        reader_done.set()
        writer.join(30)
        assert seen == (1, 6)
        assert (store.info("layer").version, len(store.query("layer"))) == (2, 60)


def _hold(path: Path, read_only: bool, seconds: float, flag: Path) -> subprocess.Popen:
    code = (f"import time, pathlib; from layers import LayerStore\n"
            f"s = LayerStore({str(path)!r}, read_only={read_only}).open()\n"
            f"pathlib.Path({str(flag)!r}).touch(); time.sleep({seconds}); s.close()")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "holder process did not start"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_processes_wait_for_the_lock_instead_of_failing(tmp_path, communities_geojson, shelters_gpkg_projected):
    path = tmp_path / "c.duckdb"
    import_layer(path, communities_geojson, "communities", ADMIN)

    writer = _hold(path, read_only=False, seconds=1.5, flag=tmp_path / "w")
    with pytest.raises(StoreLockedError, match="one read-write process or many read-only ones"):
        LayerStore(path, read_only=True, lock_timeout=0.1).open()
    with LayerStore(path, read_only=True, lock_timeout=60) as reader:  # retries until the writer is gone
        assert reader.info("communities").feature_count == 6
    writer.wait(30)

    server = _hold(path, read_only=True, seconds=1.5, flag=tmp_path / "r")  # e.g. a read-only tile server
    report = import_layer(path, shelters_gpkg_projected, "shelters", "public_topics", lock_timeout=60)
    server.wait(30)
    assert report.feature_count == 60
    with LayerStore(path, read_only=True) as reader:
        assert [i.name for i in reader.list()] == ["communities", "shelters"]
