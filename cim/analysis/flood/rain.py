"""Rain for a flood run: a design storm (Chicago hyetograph), a rainfall series from a file, or rain gauges.

Design storms follow the Chinese rainstorm-intensity formula (暴雨强度公式, GB 50014-2021 4.1.2)

    q = 167 A1 (1 + C lg P) / (t + b)^n        q in L/(s ha), t in minutes, P the return period in years

so the mean intensity over a duration t is i = A1 (1 + C lg P) / (t + b)^n mm/min (167 L/(s ha) = 1 mm/min). The
Chicago hyetograph (芝加哥雨型; Keifer & Chu 1957, J. Hydraul. Div. 83) puts the peak at `peak_ratio` of the storm
and is built so that every window around the peak holds the formula's depth for its duration; the whole storm of
duration T holds exactly `A1 (1 + C lg P) T / (T + b)^n` mm. Intervals take the exact depth between two points of
the cumulative curve, so no rain is lost to discretisation.

The default formula is Beijing's classic one, q = 2001 (1 + 0.811 lg P) / (t + 8)^0.711 (给水排水设计手册 vol. 5):
a formula from a real North-China city, which the sample city (Datong) resembles in climate. Use your own city's
published parameters (A1 = the coefficient / 167) for real work.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cim.analysis.flood.errors import FloodInputError


class RainInterval(NamedTuple):
    """Constant rain from `start` to `end` (seconds since the run's start) at `mm_h`."""

    start: float
    end: float
    mm_h: float


class StormFormula(BaseModel):
    """A city's rainstorm-intensity formula q = 167 A1 (1 + C lg P) / (t + b)^n (GB 50014-2021 4.1.2).

    Attributes:
        a1: A1 in mm/min (the formula's leading coefficient divided by 167).
        c: C, the return-period coefficient.
        b: b in minutes.
        n: the exponent n.
        name: where the parameters come from.
    """

    model_config = ConfigDict(frozen=True)

    a1: float = Field(2001.0 / 167.0, gt=0)
    c: float = Field(0.811, ge=0)
    b: float = Field(8.0, ge=0)
    n: float = Field(0.711, gt=0, lt=1)
    name: str = "Beijing, q = 2001(1 + 0.811 lg P)/(t + 8)^0.711"

    def intensity(self, return_period: float, minutes: float) -> float:
        """Mean intensity (mm/min) of the `return_period`-year storm over `minutes`."""
        return self.a1 * (1.0 + self.c * math.log10(return_period)) / (minutes + self.b) ** self.n

    def q(self, return_period: float, minutes: float) -> float:
        """The formula's q in L/(s ha)."""
        return 167.0 * self.intensity(return_period, minutes)

    def depth(self, return_period: float, minutes: float) -> float:
        """Rain depth (mm) of the `return_period`-year storm over `minutes`."""
        return self.intensity(return_period, minutes) * minutes


class ChicagoStorm(BaseModel):
    """A design storm with the Chicago hyetograph.

    Attributes:
        return_period: P in years (> 0; 1 year has lg P = 0).
        duration_min: the storm's duration (minutes).
        peak_ratio: where the peak sits, as a fraction of the duration (0.3-0.5 is usual in China).
        step_min: the hyetograph's interval (minutes).
        formula: the city's rainstorm-intensity formula.
    """

    model_config = ConfigDict(frozen=True)

    return_period: float = 50.0
    duration_min: float = 60.0
    peak_ratio: float = 0.4
    step_min: float = 1.0
    formula: StormFormula = StormFormula()

    @model_validator(mode="after")
    def _check(self) -> ChicagoStorm:
        for name, value, ok in (("return_period", self.return_period, self.return_period >= 1),
                                ("duration_min", self.duration_min, self.duration_min > 0),
                                ("peak_ratio", self.peak_ratio, 0 < self.peak_ratio < 1),
                                ("step_min", self.step_min, 0 < self.step_min <= self.duration_min)):
            if not (ok and math.isfinite(value)):
                raise ValueError(
                    f"Chicago storm {name}={value} is out of range (return period >= 1 year, duration > 0 min, "
                    f"0 < peak ratio < 1, 0 < step <= duration)")
        return self

    def cumulative(self, minutes: np.ndarray | float) -> np.ndarray:
        """Cumulative depth (mm) from the storm's start to `minutes` (clipped to the storm)."""
        f = self.formula
        a = f.a1 * (1.0 + f.c * math.log10(self.return_period))
        t_total = self.duration_min
        r = self.peak_ratio
        peak = r * t_total

        def shape(u: np.ndarray) -> np.ndarray:  # u / (u + b)^n: the integral of the Chicago branch
            return u / (u + f.b) ** f.n

        m = np.clip(np.asarray(minutes, np.float64), 0.0, t_total)
        before = r * a * (shape(np.full_like(m, t_total)) - shape((peak - np.minimum(m, peak)) / r))
        after = (1 - r) * a * shape(np.maximum(m - peak, 0.0) / (1 - r))
        return before + after

    def series(self) -> RainSeries:
        """The hyetograph as a rain series (interval depths from the cumulative curve)."""
        edges = np.append(np.arange(0.0, self.duration_min, self.step_min), self.duration_min)
        depth = np.diff(self.cumulative(edges))
        hours = np.diff(edges) / 60.0
        return RainSeries(edges * 60.0, depth / hours, source=f"Chicago storm P={self.return_period:g} a, "
                          f"{self.duration_min:g} min, r={self.peak_ratio:g} ({self.formula.name})")


@dataclass(frozen=True)
class RainSeries:
    """Rain intensity constant between successive times.

    Attributes:
        edges: (n + 1,) seconds since the run's start, increasing; interval k is [edges[k], edges[k+1]).
        mm_h: (n,) intensity in each interval (mm/h, >= 0).
        source: where it came from (for run.json).
    """

    edges: np.ndarray
    mm_h: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        e = np.asarray(self.edges, np.float64)
        v = np.asarray(self.mm_h, np.float64)
        if e.ndim != 1 or v.ndim != 1 or e.size != v.size + 1 or v.size == 0:
            raise FloodInputError(f"rain series {self.source!r}: needs n intensities and n + 1 interval edges")
        if not (np.isfinite(e).all() and np.isfinite(v).all()):
            raise FloodInputError(f"rain series {self.source!r} has a missing or infinite value")
        if (np.diff(e) <= 0).any():
            raise FloodInputError(f"rain series {self.source!r}: times must increase")
        if (v < 0).any():
            k = int(np.argmax(v < 0))
            raise FloodInputError(f"rain series {self.source!r}: intensity {v[k]} mm/h at {e[k] / 60:g} min is "
                                  f"negative; rain must be >= 0")
        object.__setattr__(self, "edges", e)
        object.__setattr__(self, "mm_h", v)

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last edge."""
        return float(self.edges[-1] - self.edges[0])

    @property
    def depth_mm(self) -> float:
        """Total rain depth (mm)."""
        return float(np.sum(self.mm_h * np.diff(self.edges)) / 3600.0)

    @property
    def peak_mm_h(self) -> float:
        """The highest intensity (mm/h)."""
        return float(self.mm_h.max())

    def intervals(self) -> Iterator[RainInterval]:
        """The intervals in order."""
        for k in range(self.mm_h.size):
            yield RainInterval(float(self.edges[k]), float(self.edges[k + 1]), float(self.mm_h[k]))

    def depth_between(self, t0: float, t1: float) -> float:
        """Rain depth (mm) that falls between t0 and t1 (s)."""
        lo = np.clip(self.edges[:-1], t0, t1)
        hi = np.clip(self.edges[1:], t0, t1)
        return float(np.sum(self.mm_h * (hi - lo)) / 3600.0)

    def to_dict(self) -> dict[str, object]:
        """Summary for run.json."""
        return {"source": self.source, "depth_mm": self.depth_mm, "peak_mm_h": self.peak_mm_h,
                "duration_min": self.duration_s / 60.0, "intervals": int(self.mm_h.size)}


_TIME_COLUMNS = ("minutes", "minute", "time", "datetime", "timestamp")
_RATE_COLUMNS = ("mm_h", "intensity_mm_h", "mm/h", "intensity")
_DEPTH_COLUMNS = ("mm", "depth_mm", "rain_mm", "depth")


def _parse_time(text: str) -> float:
    """Seconds: a number is minutes since the start; anything else must be an ISO-8601 timestamp."""
    try:
        return float(text) * 60.0
    except ValueError:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()


def read_rain(path: str | os.PathLike[str]) -> RainSeries:
    """Read a rainfall series from CSV.

    Columns (header names, case-insensitive): a time (`minutes` since the start, or an ISO-8601 `time`), and either
    an intensity in mm/h (`mm_h`, `intensity_mm_h`) or the depth that fell in the interval (`mm`, `depth_mm`). Each
    row starts an interval that lasts until the next row; the last lasts as long as the one before it.

    Raises:
        FloodInputError: unreadable file, missing column, a value that is not a number, negative rain, times not
            increasing.
    """
    p = Path(path)
    if not p.is_file():
        raise FloodInputError(f"rain file {p} does not exist")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise FloodInputError(f"rain file {p} has no rows (expected a header and one row per interval)")
    cols = {c.strip().lower(): c for c in rows[0].keys() if c}
    tcol = next((cols[c] for c in _TIME_COLUMNS if c in cols), None)
    rcol = next((cols[c] for c in _RATE_COLUMNS if c in cols), None)
    dcol = next((cols[c] for c in _DEPTH_COLUMNS if c in cols), None)
    if tcol is None or (rcol is None and dcol is None):
        raise FloodInputError(f"rain file {p}: needs a time column ({', '.join(_TIME_COLUMNS)}) and an intensity "
                              f"({', '.join(_RATE_COLUMNS)}) or depth ({', '.join(_DEPTH_COLUMNS)}) column; found "
                              f"{', '.join(cols) or 'none'}")
    try:
        t = np.array([_parse_time(r[tcol]) for r in rows])
        v = np.array([float(r[rcol or dcol]) for r in rows])  # type: ignore[index]
    except (TypeError, ValueError) as exc:
        raise FloodInputError(f"rain file {p}: a value is not a number or a time ({exc})") from exc
    t = t - t[0]
    if t.size > 1 and (np.diff(t) <= 0).any():
        raise FloodInputError(f"rain file {p}: times must increase row by row")
    last = t[-1] - t[-2] if t.size > 1 else 3600.0
    edges = np.append(t, t[-1] + last)
    rate = v if rcol is not None else v / (np.diff(edges) / 3600.0)
    return RainSeries(edges, rate, source=str(p))
