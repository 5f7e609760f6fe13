"""A folder of flood runs (what `cim serve` publishes, and where its jobs write new ones).

    runs = FloodRuns("city/flood")
    runs.ids()                      # ["storm-50y", "20240720-0805-3f2a", ...] newest first
    result = runs.get("storm-50y")  # a FloodResult
    out = runs.new_path()           # where a new run goes
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cim.analysis.flood.errors import FloodInputError
from cim.analysis.flood.run import FloodResult

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def run_start(result: FloodResult) -> datetime:
    """The wall-clock moment of the run's t = 0 (UTC): its gauge start, else when it was made."""
    p = result.report.get("params", {})
    text = p.get("start") or result.report.get("created")
    if not text:
        return datetime(2000, 1, 1, tzinfo=timezone.utc)
    t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).replace(microsecond=0)


def step_instants(result: FloodResult) -> list[str]:
    """ISO-8601 instants (UTC, `Z`) of the run's output steps: the values of its WMTS `Time` dimension."""
    start = run_start(result)
    return [(start + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ") for t in result.times]


def step_at(result: FloodResult, when: str) -> float | None:
    """The output time (s) a `Time` value names: seconds, an ISO instant, or `max` / `current` (None = maxima).

    Raises:
        FloodInputError: not a time of this run.
    """
    if when in ("max", "maximum", "default"):
        return None
    times = result.times
    try:
        t = float(when)
    except ValueError:
        try:
            instant = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise FloodInputError(f"time {when!r} is neither seconds, an ISO-8601 instant nor 'max'") from None
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=timezone.utc)
        t = (instant - run_start(result)).total_seconds()
    for s in times:
        if abs(s - t) < 0.5:
            return s
    raise FloodInputError(f"time {when!r} is not an output step of this run; its steps are "
                          f"{', '.join(step_instants(result)) or 'none (a static run: use max)'}")


@dataclass
class FloodRuns:
    """The runs in a folder (each a `run_flood` output folder with run.json), read on demand and cached."""

    root: Path
    _cache: dict[str, tuple[float, FloodResult]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def ids(self) -> list[str]:
        """Run ids (folder names), newest first."""
        if not self.root.is_dir():
            return []
        runs = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
                and (p / "run.json").is_file()]
        runs.sort(key=lambda p: (p / "run.json").stat().st_mtime, reverse=True)
        return [p.name for p in runs]

    def get(self, run_id: str) -> FloodResult:
        """A run by id (its report re-read when run.json changed).

        Raises:
            FloodInputError: no such run (a bad id is the same as a missing one).
        """
        if not _ID.match(run_id):
            raise FloodInputError(f"no flood run {run_id!r}")
        path = self.root / run_id
        report = path / "run.json"
        if not report.is_file():
            raise FloodInputError(f"no flood run {run_id!r}")
        mtime = report.stat().st_mtime
        with self._lock:
            hit = self._cache.get(run_id)
            if hit is None or hit[0] != mtime:
                hit = (mtime, FloodResult.open(path))
                self._cache[run_id] = hit
            return hit[1]

    def new_path(self, prefix: str = "run") -> Path:
        """A fresh run folder path (not created): `<prefix>-<utc time>-<random>`."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{prefix}-{stamp}-{secrets.token_hex(3)}"

    def writable(self) -> bool:
        """Whether new runs can be written here."""
        probe = self.root if self.root.exists() else self.root.parent
        return os.access(probe, os.W_OK)
