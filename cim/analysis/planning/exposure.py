"""When sample points see the sun: the ray-casting engine shared by sunlight hours, ground rasters and shadows.

Scheme (numerics): the sun's position is tabulated at every second of the analysed window (NREL SPA, see `sun`).
Each point casts a ray towards the sun every `step` seconds (GB/T 50947-2014: at most one minute) when the sun is
up and in front of its facade by at least the sweep angle; Embree answers whether anything (buildings, terrain)
is in the way. Between two consecutive steps whose states differ, the change is located to the second by
bisection on the 1-second table (six more rays for a one-minute step). A point's sunlit segments are then exact to
one second, except that a change of state and its reversal within one step are not seen (a shadow or a gleam
shorter than the step). `tests/cim/analysis/planning` compares this with a brute-force reference that checks
every second with an exact ray/prism intersection.

Segments are half-open on the 1-second grid: a segment [a, b) lasts b - a seconds; a point lit until the window's
end is lit until its last instant (a full 8-hour window gives 480 minutes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np

from cim.analysis.planning.scene import CityScene, RayTracer
from cim.analysis.planning.sun import Site, sun_positions, true_solar_to_utc

Progress = Callable[[str, int, int], None]
CHUNK = 1024  # points per ray batch


@dataclass
class SunTable:
    """Sun positions at every second of a window.

    Attributes:
        day: the civil date.
        window: (start, end) true solar hours.
        unixtime: (T,) epoch seconds of the instants (T = window length in seconds + 1).
        vectors: (T, 3) float64 unit vectors towards the sun (grid frame).
        elevation: (T,) apparent elevation, degrees.
        site: where it was computed.
    """

    day: date
    window: tuple[float, float]
    unixtime: np.ndarray
    vectors: np.ndarray
    elevation: np.ndarray
    site: Site

    @classmethod
    def compute(cls, site: Site, day: date, window: tuple[float, float]) -> SunTable:
        """SPA positions at every second of `window` (true solar hours) on `day`."""
        t0, t1 = true_solar_to_utc(site, day, np.array(window, np.float64))
        n = int(round((window[1] - window[0]) * 3600))
        # instants are true-solar seconds: the UTC step differs from 1 s by the equation of time's drift (under 1 s an
        # hour, nearly constant over a day)
        t = t0 + np.arange(n + 1, dtype=np.float64) * ((t1 - t0) / n)
        pos = sun_positions(site, t)
        return cls(day, window, t, pos.vectors(), pos.elevation, site)

    def __len__(self) -> int:
        return len(self.unixtime)

    def true_solar(self, seconds: np.ndarray) -> np.ndarray:
        """True solar hours of offsets (seconds from the window's start)."""
        return self.window[0] + np.asarray(seconds, np.float64) / 3600.0


@dataclass
class Segments:
    """Sunlit segments of n points: segment i of point `point[i]` is [start[i], end[i]) seconds from the window's
    start (sorted by point, then start)."""

    n: int
    point: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @property
    def seconds(self) -> np.ndarray:
        return (self.end - self.start).astype(np.int64)

    def total(self, min_seconds: float = 0.0) -> np.ndarray:
        """(n,) sunlit seconds per point, counting only segments of at least `min_seconds`."""
        s = self.seconds
        keep = s >= min_seconds
        return np.bincount(self.point[keep], weights=s[keep], minlength=self.n)

    def longest(self) -> np.ndarray:
        """(n,) seconds of each point's longest segment (0 without any)."""
        out = np.zeros(self.n)
        np.maximum.at(out, self.point, self.seconds)
        return out

    def of(self, i: int) -> list[tuple[int, int]]:
        """Segments of point i as (start, end) seconds."""
        lo, hi = np.searchsorted(self.point, [i, i + 1])
        return list(zip(self.start[lo:hi].tolist(), self.end[lo:hi].tolist()))


@dataclass
class _Steps:
    """What every batch needs from the sun table, computed once: the ray steps and per-instant arrays."""

    coarse: np.ndarray  # (K,) instants rays are cast at
    vec32: np.ndarray  # (T, 3) float32 sun vectors
    inv_dz: np.ndarray  # (T,) float32 1 / z of the sun vector (inf when the sun is not above the horizon)
    hdir: np.ndarray  # (T, 2) float64 horizontal unit vector towards the sun (0 when the sun is at the zenith)
    up: np.ndarray  # (T,) bool: the sun is above the horizon

    @classmethod
    def of(cls, sun: SunTable, step: int) -> _Steps:
        T = len(sun)
        h = sun.vectors[:, :2]
        hn = np.linalg.norm(h, axis=1)
        up = (sun.elevation > 0.0) & (hn > 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            hdir = np.where(hn[:, None] > 1e-9, h / hn[:, None], 0.0)
            inv_dz = np.where(sun.vectors[:, 2] > 1e-9, 1.0 / sun.vectors[:, 2], np.inf).astype(np.float32)
        return cls(np.unique(np.r_[np.arange(0, T, step), T - 1]), sun.vectors.astype(np.float32), inv_dz, hdir, up)

    def valid(self, idx: np.ndarray, normal: np.ndarray | None, cos_limit: float) -> np.ndarray:
        """(p, len(idx)) bool: the sun is up and (for facades) in front of the facade by the sweep angle."""
        up = self.up[idx]
        if normal is None:
            return np.broadcast_to(up, (1, len(idx)))
        uniq, inv = np.unique(normal, axis=0, return_inverse=True)  # points of a facade share its normal
        ok = ((uniq @ self.hdir[idx].T) >= cos_limit) & up[None, :]
        return ok[inv.ravel()]

    def valid_at(self, t: np.ndarray, normal: np.ndarray | None, cos_limit: float) -> np.ndarray:
        """(n,) bool: `valid` for one instant per point."""
        ok = self.up[t]
        if normal is not None:
            ok = ok & (np.einsum("ij,ij->i", normal, self.hdir[t]) >= cos_limit)
        return ok


def _chunk(tracer: RayTracer, steps: _Steps, org: np.ndarray, normal: np.ndarray | None, cos_limit: float,
           ztop: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sunlit segments of one batch of points: (point, start, end) arrays and the number of rays cast."""
    coarse = steps.coarse
    T = int(coarse[-1]) + 1
    p = len(org)
    valid = np.array(steps.valid(coarse, normal, cos_limit), dtype=bool)
    if valid.shape[0] != p:
        valid = np.repeat(valid, p, axis=0)
    rise = (ztop - org[:, 2]).astype(np.float32)  # how far each point is below the top of everything

    def occluded(pts: np.ndarray, t: np.ndarray) -> np.ndarray:
        # a rising ray is above everything after (ztop - z) / dz metres: Embree need not look further
        far = rise[pts] * steps.inv_dz[t] + np.float32(1.0)
        return tracer.occluded(org[pts], steps.vec32[t], np.minimum(far, np.float32(1e30)))

    pi, ki = np.nonzero(valid)
    counts = valid.sum(axis=1)
    t = coarse[ki]
    # rays grouped by point (row-major nonzero): the per-point arrays are repeated, not gathered
    far = np.repeat(rise, counts) * steps.inv_dz[t] + np.float32(1.0)
    occ = tracer.occluded(np.repeat(org, counts, axis=0), steps.vec32[t], np.minimum(far, np.float32(1e30)))
    rays = len(pi)
    lit = valid
    lit[pi[occ], ki[occ]] = False
    # changes between consecutive steps, located to the second
    tp, tj = np.nonzero(lit[:, :-1] != lit[:, 1:])
    lo = coarse[tj].astype(np.int64)
    hi = coarse[tj + 1].astype(np.int64)
    state_lo = lit[tp, tj]
    active = np.flatnonzero(hi - lo > 1)
    while len(active):
        mid = (lo[active] + hi[active]) // 2
        pts = tp[active]
        st = steps.valid_at(mid, None if normal is None else normal[pts], cos_limit)
        if st.any():
            w = np.flatnonzero(st)
            st[w] = ~occluded(pts[w], mid[w])
            rays += len(w)
        same = st == state_lo[active]
        lo[active[same]] = mid[same]
        hi[active[~same]] = mid[~same]
        active = active[hi[active] - lo[active] > 1]
    ons = ~state_lo  # the state turns on at `hi`
    starts_p = np.r_[np.flatnonzero(lit[:, 0]), tp[ons]]
    starts_t = np.r_[np.zeros(int(lit[:, 0].sum()), np.int64), hi[ons]]
    ends_p = np.r_[tp[~ons], np.flatnonzero(lit[:, -1])]
    ends_t = np.r_[hi[~ons], np.full(int(lit[:, -1].sum()), T - 1, np.int64)]
    so = np.lexsort((starts_t, starts_p))
    eo = np.lexsort((ends_t, ends_p))
    return starts_p[so], starts_t[so], ends_t[eo], rays


def sunlit_segments(scene: CityScene, sun: SunTable, xyz: np.ndarray, normal: np.ndarray | None = None, *,
                    sweep_angle: float = 0.0, step: int = 60, workers: int | None = None,
                    progress: Progress | None = None, stage: str = "rays") -> tuple[Segments, int]:
    """Sunlit segments of sample points over the sun table's window.

    Args:
        scene: buildings and terrain (its ray tracer is built on first use).
        sun: sun positions at every second.
        xyz: (n, 3) float64 absolute positions of the points.
        normal: (n, 2) outward facade normals (grid frame), or None for points that see the whole sky (ground).
        sweep_angle: degrees; with normals, the sun must be at least this far from the facade plane.
        step: seconds between rays (at most 60; GB/T 50947).
        workers: threads casting rays (default: CPU count).
        progress: called as progress(stage, points done, points).

    Returns:
        (segments, rays cast).
    """
    n = len(xyz)
    tracer = scene.tracer()
    org = scene.to_local(xyz) if n else np.zeros((0, 3), np.float32)
    ztop = _scene_top(scene) - float(scene.origin[2])
    cos_limit = math.sin(math.radians(sweep_angle)) if normal is not None else -1.0
    nrm = None if normal is None else np.asarray(normal, np.float64)
    steps = _Steps.of(sun, step)
    bounds = [(a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    rays = 0
    workers = workers or os.cpu_count() or 1
    if progress:
        progress(stage, 0, n)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cim-rays") as pool:
        futures = [pool.submit(_chunk, tracer, steps, org[a:b], None if nrm is None else nrm[a:b], cos_limit,
                               ztop) for a, b in bounds]
        done = 0
        try:
            for (a, b), fut in zip(bounds, futures):
                pp, st, en, r = fut.result()
                parts.append((pp + a, st, en))
                rays += r
                done += b - a
                if progress:
                    progress(stage, done, n)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    if parts:
        point = np.concatenate([p[0] for p in parts])
        start = np.concatenate([p[1] for p in parts])
        end = np.concatenate([p[2] for p in parts])
    else:
        point = start = end = np.zeros(0, np.int64)
    return Segments(n, point.astype(np.int64), start.astype(np.int64), end.astype(np.int64)), rays


def _scene_top(scene: CityScene) -> float:
    top = float(np.nanmax(scene.buildings.top(scene.level))) if len(scene.buildings) else -np.inf
    if scene.dem is not None:
        top = max(top, float(np.nanmax(scene.dem.heights)))
    return top + 1.0 if np.isfinite(top) else float(scene.origin[2]) + 1.0


__all__ = ["Segments", "SunTable", "sunlit_segments"]
