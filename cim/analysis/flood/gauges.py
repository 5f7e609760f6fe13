"""Rain gauges as a rain source: observed intensities at points, interpolated over the grid.

The seam to the live sensors is small: a `GaugeSource` hands out `GaugeSeries` (a gauge's location and its readings
of rainfall rate in mm/h). `RecordedGauges` reads them from a CSV of recorded readings; `SensingGauges` reads the
`rainfall_rate` datastreams of the layer store's sensing tables (`layers.sensing`, issue 13).

Between readings a gauge's rate holds until its next reading (sample and hold), for at most `max_gap_s`; a gauge
without a reading in force takes no part at that moment. Over the grid the rate is the inverse-distance-squared
mean of the gauges in force (Shepard 1968), evaluated on a grid of at most 256 x 256 blocks (rain does not vary
at the scale of a cell) and routed like any rain (roofs to the ground).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pyproj import CRS

from cim.analysis.flood.errors import FloodInputError, FloodWarning


@dataclass(frozen=True)
class GaugeSeries:
    """One rain gauge and its readings.

    Attributes:
        id: the gauge's id (datastream id or name).
        x, y: its location in `crs`.
        crs: the CRS of x, y (lon/lat EPSG:4490 for the sensing store).
        times: (n,) datetime64[s] of the readings (UTC), increasing.
        mm_h: (n,) rainfall rate (mm/h) read at those times.
        name: a display name.
    """

    id: str
    x: float
    y: float
    crs: str
    times: np.ndarray
    mm_h: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        t = np.asarray(self.times, "datetime64[s]")
        v = np.asarray(self.mm_h, np.float64)
        if t.shape != v.shape or t.ndim != 1:
            raise FloodInputError(f"gauge {self.id}: {t.size} times but {v.size} readings")
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        if (v < 0).any() or not np.isfinite(v).all():
            bad = v[(v < 0) | ~np.isfinite(v)][0]
            raise FloodInputError(f"gauge {self.id}: reading {bad} mm/h is not a rain rate (must be >= 0)")
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "mm_h", v)

    def rate_at(self, when: np.datetime64, max_gap_s: float) -> float:
        """The rate in force at `when` (NaN when the last reading is older than `max_gap_s` or there is none)."""
        k = int(np.searchsorted(self.times, when, side="right")) - 1
        if k < 0 or (when - self.times[k]) / np.timedelta64(1, "s") > max_gap_s:
            return float("nan")
        return float(self.mm_h[k])


class GaugeSource(Protocol):
    """Where gauge readings come from (recorded files, the sensing store, a test)."""

    def rain_gauges(self, start: datetime, end: datetime) -> list[GaugeSeries]:
        """The rain gauges with their readings in [start, end) (UTC)."""
        ...


def _utc(value: datetime | str) -> np.datetime64:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(value, "s")


@dataclass
class RecordedGauges:
    """Gauge readings recorded in a CSV: `gauge_id, x, y, time, mm_h` (plus optional `name`), one row per reading.

    x, y are in `crs` (default EPSG:4490 lon/lat, as the sensing store keeps them); times are ISO-8601 (naive = UTC).
    """

    path: str | os.PathLike[str]
    crs: str = "EPSG:4490"
    _series: list[GaugeSeries] | None = field(default=None, init=False, repr=False)

    def _read(self) -> list[GaugeSeries]:
        p = Path(self.path)
        if not p.is_file():
            raise FloodInputError(f"gauge readings file {p} does not exist")
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        need = {"gauge_id", "x", "y", "time", "mm_h"}
        if not rows or not need <= set(rows[0]):
            raise FloodInputError(f"gauge readings file {p}: needs columns {', '.join(sorted(need))}")
        by: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            by.setdefault(r["gauge_id"], []).append(r)
        out = []
        for gid, rs in by.items():
            try:
                out.append(GaugeSeries(gid, float(rs[0]["x"]), float(rs[0]["y"]), self.crs,
                                       np.array([_utc(r["time"]) for r in rs]),
                                       np.array([float(r["mm_h"]) for r in rs]), rs[0].get("name", gid)))
            except ValueError as exc:
                raise FloodInputError(f"gauge readings file {p}, gauge {gid}: {exc}") from exc
        return out

    def rain_gauges(self, start: datetime, end: datetime) -> list[GaugeSeries]:
        if self._series is None:
            self._series = self._read()
        s, e = _utc(start), _utc(end)
        out = []
        for g in self._series:
            # keep the reading in force at the start, then those inside the window
            k = max(int(np.searchsorted(g.times, s, side="right")) - 1, 0)
            keep = np.zeros(g.times.size, bool)
            keep[k:] = True
            keep &= g.times < e
            out.append(GaugeSeries(g.id, g.x, g.y, g.crs, g.times[keep], g.mm_h[keep], g.name))
        return out


@dataclass
class SensingGauges:
    """Rain gauges from the layer store's sensing tables (`layers.sensing.SensingStore`, issue 13).

    Args:
        store: an open `SensingStore` (or anything with its `datastreams` and `observations` methods).
        observed_property: the ObservedProperty of rain gauges (name or definition URI).
    """

    store: Any
    observed_property: str = "rainfall_rate"

    def rain_gauges(self, start: datetime, end: datetime) -> list[GaugeSeries]:
        streams = self.store.datastreams(observed_property=self.observed_property)
        if len(streams) == 0:
            raise FloodInputError(f"the sensing store has no {self.observed_property!r} datastreams (rain gauges)")
        ids = [int(i) for i in streams["datastream_id"]]
        # one reading before the window may still be in force at its start
        frame = self.store.observations(ids, start=_iso(start, back_s=24 * 3600), end=_iso(end))
        out = []
        for row in streams.itertuples():
            obs = frame[frame["datastream_id"] == row.datastream_id]
            t = obs["phenomenon_time"].to_numpy().astype("datetime64[s]")
            v = obs["result"].to_numpy(np.float64)
            s = _utc(start)
            k = max(int(np.searchsorted(t, s, side="right")) - 1, 0)
            out.append(GaugeSeries(str(row.datastream_id), float(row.geometry.x), float(row.geometry.y),
                                   "EPSG:4490", t[k:], v[k:], str(getattr(row, "thing", row.name))))
        return out


def _iso(value: datetime | str, back_s: float = 0.0) -> str:
    t = _utc(value) - np.timedelta64(int(back_s), "s")
    return str(t) + "Z"


@dataclass
class GaugeRain:
    """Rain fields over a grid from gauges: piecewise constant between the moments any gauge reports.

    Args:
        gauges: the gauges (any CRS; moved to the grid's).
        start: the run's start (UTC); the run's t = 0.
        duration_s: how long to take rain from the gauges.
        transform, shape, crs: the grid.
        max_gap_s: a reading holds at most this long.
        hold_last_s: after the last reading, keep every gauge's last rate this long (a persistence nowcast for
            warning runs); 0 stops the rain at the last reading.
    """

    gauges: Sequence[GaugeSeries]
    start: datetime | str
    duration_s: float
    transform: Any
    shape: tuple[int, int]
    crs: CRS
    max_gap_s: float = 1800.0
    hold_last_s: float = 0.0
    _weights: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        usable = [g for g in self.gauges if g.times.size]
        for g in self.gauges:
            if not g.times.size:
                warnings.warn(f"rain gauge {g.id} has no readings in the run's window; it is left out",
                              FloodWarning, stacklevel=2)
        if not usable:
            raise FloodInputError("none of the rain gauges has a reading in the run's window")
        self.gauges = usable
        self._t0 = _utc(self.start)

    def _block(self) -> int:
        return max(1, int(np.ceil(max(self.shape) / 256)))

    def weights(self) -> np.ndarray:
        """(ngauges, by, bx) inverse-distance-squared weights on the block grid (not normalised)."""
        if self._weights is None:
            from cim.sources.crs import transformer

            k = self._block()
            ny, nx = self.shape
            by, bx = -(-ny // k), -(-nx // k)
            cols = (np.arange(bx) + 0.5) * k
            rows = (np.arange(by) + 0.5) * k
            t = self.transform
            xs = t.c + cols * t.a
            ys = t.f + rows * t.e
            gx = np.empty(len(self.gauges))
            gy = np.empty(len(self.gauges))
            for i, g in enumerate(self.gauges):
                tr = transformer(g.crs, self.crs)
                gx[i], gy[i] = tr.transform(g.x, g.y)
            d2 = (xs[None, None, :] - gx[:, None, None]) ** 2 + (ys[None, :, None] - gy[:, None, None]) ** 2
            self._weights = 1.0 / np.maximum(d2, 1e-6)
            self._xy = np.stack([gx, gy], 1)
        return self._weights

    def gauge_xy(self) -> np.ndarray:
        """(ngauges, 2) gauge locations in the grid's CRS."""
        self.weights()
        return self._xy

    def edges(self) -> np.ndarray:
        """Seconds since the start where any gauge's rate may change, from 0 to the end of the rain."""
        ts = [0.0]
        end = self.duration_s
        last = 0.0
        for g in self.gauges:
            s = (g.times - self._t0) / np.timedelta64(1, "s")
            ts.extend(float(v) for v in s if 0 < v < end)
            ts.extend(float(v + self.max_gap_s) for v in s if 0 < v + self.max_gap_s < end)
            if s.size:
                last = max(last, float(s[-1]))
        stop = min(end, max(last, 0.0) + self.hold_last_s) if self.hold_last_s > 0 else end
        ts.append(stop)
        e = np.unique(np.asarray(ts))
        return e[e <= stop]

    def rates(self, t: float) -> np.ndarray:
        """(ngauges,) rate (mm/h) of each gauge at run time t; NaN where none is in force."""
        when = self._t0 + np.timedelta64(int(round(t)), "s")
        out = np.array([g.rate_at(when, self.max_gap_s) for g in self.gauges])
        if self.hold_last_s > 0:
            for i, g in enumerate(self.gauges):
                if np.isnan(out[i]) and g.times.size and g.times[-1] <= when:
                    out[i] = g.mm_h[-1]
        return out

    def field(self, t: float) -> np.ndarray:
        """(ny, nx) rain rate (mm/h) at run time t."""
        r = self.rates(t)
        ok = np.isfinite(r)
        ny, nx = self.shape
        if not ok.any():
            return np.zeros(self.shape)
        w = self.weights()[ok]
        f = np.tensordot(r[ok], w, axes=1) / w.sum(axis=0)
        k = self._block()
        return np.repeat(np.repeat(f, k, axis=0), k, axis=1)[:ny, :nx]

    def intervals(self) -> Iterator[tuple[float, float, np.ndarray]]:
        """(start, end, rate field mm/h) for each interval of constant rates."""
        e = self.edges()
        for a, b in zip(e[:-1], e[1:], strict=True):
            yield float(a), float(b), self.field(float(a))

    def to_dict(self) -> dict[str, Any]:
        """Summary for run.json."""
        return {"source": "rain gauges", "gauges": [g.id for g in self.gauges], "start": str(self._t0) + "Z",
                "duration_min": self.duration_s / 60.0, "max_gap_s": self.max_gap_s,
                "hold_last_min": self.hold_last_s / 60.0}
