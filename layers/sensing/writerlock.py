"""Who writes a store's sensing tables: the record `<store>.writer.json` that the writing process (`cim serve
--ingest`) keeps beside the store, so that a process finding the file locked can say where to send its writes
(see `layers.sensing.store` for why exactly one process writes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from layers.sensing.values import iso, now_utc


def writer_file(store_path: str | os.PathLike[str]) -> Path:
    """The file in which the writing server records itself: `city.duckdb` -> `city.writer.json`."""
    p = Path(store_path)
    return p.with_name(p.stem + ".writer.json")


def claim_writer(store_path: str | os.PathLike[str], url: str | None) -> None:
    """Record this process as the store's writer (pid, URL) beside the store."""
    doc = {"pid": os.getpid(), "url": url, "since": iso(now_utc())}
    path = writer_file(store_path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def release_writer(store_path: str | os.PathLike[str]) -> None:
    """Remove the writer record if this process wrote it."""
    path = writer_file(store_path)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def current_writer(store_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The running server that writes the store, from its record (None when none is alive)."""
    try:
        doc = json.loads(writer_file(store_path).read_text(encoding="utf-8"))
        os.kill(int(doc["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return doc


def locked_message(store_path: str | os.PathLike[str]) -> str:
    """What to do when the store is held by another process, naming the writing server when there is one."""
    w = current_writer(store_path)
    if w is not None:
        return (f"a `cim serve --ingest` server (pid {w['pid']}, {w.get('url') or 'URL unknown'}) writes {store_path}; "
                f"send the data through it: cim sensors import FILE --server {w.get('url') or 'URL'} "
                f"--api-key KEY (a key with the grant sensing:write), or stop the server first")
    return (f"another process holds {store_path} (a `cim serve` or an import); stop it, or run the server with "
            f"--ingest and send the data through it (cim sensors import FILE --server URL --api-key KEY)")


__all__ = ["claim_writer", "current_writer", "locked_message", "release_writer", "writer_file"]
