"""The dynamic model: a local-inertial 2D shallow-water solver on the DEM grid.

Scheme (Bates, Horritt & Fewtrell 2010, J. Hydrol. 387, 33-45, eq. 11, with the stability improvement of de Almeida,
Bates, Freer & Souvignet 2012, Water Resour. Res. 48, W05528, eq. 12): depths `h` live at cell centres, unit-width
discharges `q` (m²/s) on the faces of a staggered grid. Each step updates every face

    q' = [theta q + (1 - theta)/2 (q_prev + q_next) - g h_f dt d(eta)/dx] / [1 + g dt n² |q| / h_f^(7/3)]

with `h_f = max(eta_L, eta_R) - max(z_L, z_R)` the depth of water that can flow across the face (a face is dry, no
flow, while it is at most `h_min`: this is the wet/dry front), `|q|` the magnitude of the discharge vector at the
face (its own component and the mean of the four orthogonal faces around it, de Almeida & Bates 2013, Water Resour.
Res. 49) and `theta` (0.7 by default; 1 gives Bates 2010) weighting the face against its two neighbours along the
flow direction (a neighbour that is a wall counts as the face itself). Then every cell

    h' = h + dt [sum(q_in) - sum(q_out)] / (porosity x cell area) + rain - drainage - infiltration

The time step is adaptive: `dt = cfl * min(dx, dy) / sqrt(g max(h))` (Bates 2010 eq. 12; `cfl` 0.5 by default,
see `ShallowWaterSolver`), capped by `dt_max` and cut to land on every output time and change of rain.

Positivity and mass: a cell whose outgoing faces would take more than the water it holds has those faces scaled
down so that they take exactly what it holds (each face has one upwind cell, so every face is scaled at most once
and what leaves one cell enters the next). Depths stay >= 0 without clipping, and rain in = stored + out + losses to
rounding; every term is reported (`MassBalance`).

Boundaries: every face between an active cell and the outside (beyond the raster, or nodata) is closed or open. An
open face lets water out only: a ghost cell beyond it continues the bed at the inner cell's outward slope (at least
`min_boundary_slope`) with the same depth, which is free outflow at the local normal depth. Buildings as walls are
cells without storage whose faces are closed; as porosity they shrink a cell's storage area and its faces' widths.

Layout for speed: the grid is padded by one ring of outside cells (bed `_ZOUT`, so a face to the outside is dry in
the vector code and the few open faces are done by a scalar loop); state in float64, fixed fields in float32. One
step is one parallel pass over the grid: rows are split into chunks (`prange`, all cores; one thread for small
grids), and each chunk (`_chunk`) walks its rows as a pipeline: faces of row k, limiter of row k-1, continuity of
row k-2, with rows held in small per-chunk buffers and two rows past each chunk edge recomputed instead of shared.
The pipeline has read everything of row k-2 when it writes it, so depths and discharges are updated in place; the
few rows a neighbour chunk reads go through side rows copied back after the pass. The step is bound by memory
traffic, so it reads only what it needs: Manning's n per cell only if it varies, the loss fields only if a cell
has losses, and the time to the depth mark is written only where a cell first reaches it (one pass touches each
fixed field once and reads and rewrites h, qx, qy and the maximum depth once: `ShallowWaterSolver.step_arrays`).
The inner loops are branch-free, so LLVM vectorises them (`error_model="numpy"`, `_pow_m7_3` instead of the scalar
libm cbrt); the solver runs within a small factor of that pass's time (bench/bench_flood.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

# GNU OpenMP's default is to spin between parallel regions; on a shared machine (more runnable threads than cores)
# the spinning threads take the cores from the ones with work, and one step (one parallel region) took 20x longer
# (measured: 103 s instead of 5 s for the sample city at 16 m under a load of 27 on 2 cores). Passive waiting costs
# a few microseconds per step on an idle machine. It only takes effect if set before the OpenMP runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from cim.analysis.flood.errors import FloodError  # noqa: E402

G = 9.80665
#: bed of the outside ring: any face towards it is dry in the vector loops
_ZOUT = 1.0e15
#: fast-math flags without "nnan"/"ninf": the loops compute on masked lanes and discard them with selects
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = {"cache": True, "error_model": "numpy", "fastmath": _FM}
#: the parallel step and what calls it are compiled in each process, never loaded from numba's on-disk cache:
#: numba's cached `parallel=True` code can crash the process that loads it (numba/numba#4807, cache written by
#: several processes at once; seen here as a SIGSEGV in `Solver.advance` of `cim demo` in a fresh clone whose test
#: workers compiled the solver at the same time)
_JIT_PARALLEL = {**_JIT, "cache": False}
#: the loops Python calls (`_advance`, `lts.advance_lts`) release the GIL: a run's output rasters are written on
#: another thread while the solver runs on (`cim.analysis.flood.run`)
_JIT_ENTRY = {**_JIT_PARALLEL, "nogil": True}
#: buffer rows per chunk: raw x faces (4), raw y faces (4), limiter (4), effective x faces, effective y (2),
#: first times at the depth mark
_SLOTS = 4
_WORK_ROWS = 3 * _SLOTS + 4
#: grids with fewer cells run on one thread unless told otherwise
SMALL_GRID = 65536


@dataclass
class MassBalance:
    """Volumes (m³) over a run: what came in, what is stored, what left, and the difference.

    Attributes:
        rain: rain that fell on the active grid (roof rain included: it reaches the ground beside the building).
        inflow: water added by point inflows.
        initial: water on the grid at the start.
        stored: water on the grid now.
        outflow: water that left through open boundaries.
        drainage: water taken by the drainage network.
        infiltration: water that infiltrated.
        rounding: water removed where rounding left a depth a hair below zero.
    """

    rain: float = 0.0
    inflow: float = 0.0
    initial: float = 0.0
    stored: float = 0.0
    outflow: float = 0.0
    drainage: float = 0.0
    infiltration: float = 0.0
    rounding: float = 0.0

    @property
    def error(self) -> float:
        """Water in minus water accounted for (m³): initial + rain + inflow - (stored + out + losses)."""
        return (self.initial + self.rain + self.inflow) - (
            self.stored + self.outflow + self.drainage + self.infiltration + self.rounding)

    @property
    def relative_error(self) -> float:
        """|error| as a fraction of the water that came in (0 when none came in)."""
        total = self.initial + self.rain + self.inflow
        return abs(self.error) / total if total > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        """The volumes, the error and the relative error (run.json's `mass_balance`)."""
        return {"rain_m3": self.rain, "inflow_m3": self.inflow, "initial_m3": self.initial,
                "stored_m3": self.stored, "outflow_m3": self.outflow, "drainage_m3": self.drainage,
                "infiltration_m3": self.infiltration, "rounding_m3": self.rounding,
                "error_m3": self.error, "relative_error": self.relative_error}


# ---------------------------------------------------------------------------------------------------------- kernels


@intrinsic
def _bits(typingctx, x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The IEEE-754 bits of a float64 as an int64 (no conversion)."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The float64 whose IEEE-754 bits are the int64 `x`."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(inline="always", **_JIT)
def _pow_m7_3(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """x^(-7/3) of a positive normal float64 to ~1e-15, vectorisable and without a division: an inverse cube root
    from the bits (Moroz et al.'s constant, 3.4 % off) and four Newton steps y <- y (4 - x y³) / 3, then y^7.

    (numba's scalar libm `cbrt` blocks vectorisation of the face loop and was ~20x slower there; the friction term
    needs h^(-7/3), so the reciprocal root saves the divisions of a cube root as well.)
    """
    y = _from_bits(6142611920468694934 - np.int64(np.float64(_bits(x)) * 0.3333333333333333))
    for _ in range(4):
        y = y * (4.0 - x * y * y * y) * 0.3333333333333333
    y2 = y * y
    return y2 * y2 * y2 * y


@njit(inline="always", **_JIT)
def _faces(k, ax, ay, z, h, qa, qb, wa, n2, n2u, uniform, b_ptr, b_i, b_dir, b_s, nx, d, dt, theta, hmin,
           out):  # pragma: no cover
    """Raw (unlimited) discharges of one row of faces into `out[1..]`: the x faces of row k (`ax, ay = 1, 0`; face
    i between cells (k, i-1) | (k, i), `out[1..nx+1]`) or the faces north of row k (`ax, ay = 0, 1`; face (k, i)
    between cells (k-1, i) | (k, i), `out[1..nx]`).

    `qa`/`wa` are the discharges and widths of this direction's faces, `qb` the orthogonal ones, `d` the cell size
    along the flow. Called with literal `ax, ay`, so the index offsets fold to constants and the loop vectorises as
    a loop written for one direction does; likewise with a literal `uniform`: True when every cell with storage
    has Manning's n² `n2u`, and the face loop then does not read `n2` (the same value: n² + n² is exact).
    """
    for i in range(1, nx + 1 + ax):
        zl = z[k - ay, i - ax]
        zr = z[k, i]
        el = zl + h[k - ay, i - ax]
        er = zr + h[k, i]
        hf = max(el, er) - max(zl, zr)
        wet = (hf > hmin) & (wa[k, i] > 0.0)
        hs = hf if wet else 1.0
        q0 = qa[k, i]
        qm = qa[k - ay, i - ax] if wa[k - ay, i - ax] > 0.0 else q0
        qp = qa[k + ay, i + ax] if wa[k + ay, i + ax] > 0.0 else q0
        qo = 0.25 * (qb[k - ay, i - ax] + qb[k - ay + ax, i - ax + ay] + qb[k, i] + qb[k + ax, i + ay])
        qbar = theta * q0 + 0.5 * (1.0 - theta) * (qm + qp)
        ns = n2u + n2u if uniform else n2[k - ay, i - ax] + n2[k, i]
        den = 1.0 + G * dt * 0.5 * ns * math.sqrt(q0 * q0 + qo * qo) * _pow_m7_3(hs)
        q = (qbar - G * hs * dt * (er - el) / d) / den
        out[i] = q if wet else 0.0
    # open boundary faces: ghost cell continuing the bed at the inner cell's outward slope, outflow only
    for b in range(b_ptr[k], b_ptr[k + 1]):
        i = b_i[b]
        s = b_dir[b]  # +1: the inside is the west/north cell, water leaves eastwards/southwards; -1: the other way
        hin = h[k - ay, i - ax] if s > 0 else h[k, i]
        nin = n2[k - ay, i - ax] if s > 0 else n2[k, i]
        q0 = qa[k, i]
        q = 0.0
        if hin > hmin:
            q = (q0 + s * G * hin * dt * b_s[b]) / (1.0 + G * dt * nin * abs(q0) * _pow_m7_3(hin))
            q = max(q, 0.0) if s > 0 else min(q, 0.0)
        out[i] = q


@njit(inline="always", **_JIT)
def _limits(k, h, sa, wx, wy, qxr, qyr, qyr_s, nx, dx, dy, dt, s):  # pragma: no cover
    """Per cell of row k, the factor (<= 1) that keeps its outgoing faces from taking more water than it holds."""
    for i in range(1, nx + 1):
        out = dt * (max(-qxr[i], 0.0) * wx[k, i] * dy + max(qxr[i + 1], 0.0) * wx[k, i + 1] * dy
                    + max(-qyr[i], 0.0) * wy[k, i] * dx + max(qyr_s[i], 0.0) * wy[k + 1, i] * dx)
        have = h[k, i] * sa[k, i]
        s[i] = have / out if out > have else 1.0


@njit(inline="always", **_JIT)
def _settle(vol, a, ld, li):  # pragma: no cover - compiled
    """The new depth of a cell holding `vol` (m³) over its storage area `a` (m²), after drainage and infiltration
    of up to `ld` and `li` (m³), both scaled down together to what the cell holds; a volume a hair below zero
    (rounding) is taken out. Returns (depth, drained, infiltrated, taken out (<= 0)).

    The continuity update of both the global step and local time stepping (`lts`); called with literal zeros
    for a run without losses, whose loss terms then fold away."""
    f = min(1.0, max(vol, 0.0) / (ld + li)) if ld + li > 0.0 else 0.0
    ld *= f
    li *= f
    vol -= ld + li
    neg = min(vol, 0.0)
    vol -= neg
    return (vol / a if a > 0.0 else 0.0), ld, li, neg


@njit(inline="always", **_JIT)
def _mark(old, d, depth_mark):  # pragma: no cover - compiled
    """The deepest water of a cell after a step (`old` before, `d` now), and 1.0 if it first held `depth_mark`
    in this step, else 0.0 (branch-free: the loop stays vectorised; the rare first times are written after it)."""
    return max(old, d), 1.0 if (old < depth_mark) & (d >= depth_mark) else 0.0


@njit(inline="always", **_JIT)
def _row_faces(k, ax, ay, z, h, qa, qb, wa, n2, n2u, b_ptr, b_i, b_dir, b_s, nx, d, dt, theta, hmin,
               out):  # pragma: no cover - compiled
    """`_faces` of row k, with Manning's n² read per cell only if it varies (`n2u` < 0)."""
    if n2u >= 0.0:
        _faces(k, ax, ay, z, h, qa, qb, wa, n2, n2u, True, b_ptr, b_i, b_dir, b_s, nx, d, dt, theta, hmin, out)
    else:
        _faces(k, ax, ay, z, h, qa, qb, wa, n2, n2u, False, b_ptr, b_i, b_dir, b_s, nx, d, dt, theta, hmin, out)


@njit(inline="always", **_JIT)
def _row_depths(m, nx, hrow, ex, ey, ey_next, sa, wx, wy, rain_arr, drain, infil, losses, hmax, first, dx, dy, dt,
                rain_rate, depth_mark):  # pragma: no cover - compiled
    """Continuity of row m, in place: `hrow` (its depths) from the limited discharges of its faces (`ex` west
    faces, `ey`/`ey_next` north/south faces), rain and, with a literal `losses` True, drainage and infiltration
    (False: `drain` and `infil` are not read); the row's maximum depths, and 1.0 in `first` where a cell first
    reached `depth_mark`. Returns (drained, infiltrated, taken out by `_settle`, cells first at the mark, the
    largest depth's bits, non-finite or absurd depths)."""
    v_drain = 0.0
    v_infil = 0.0
    v_clamp = 0.0
    crossed = 0.0
    top_bits = np.int64(0)
    bad = 0
    for i in range(1, nx + 1):
        a = sa[m, i]
        net = (ex[i] * wx[m, i] - ex[i + 1] * wx[m, i + 1]) * dy + (ey[i] * wy[m, i] - ey_next[i] * wy[m + 1, i]) * dx
        d, ld, li, neg = _settle(hrow[i] * a + dt * (net + rain_rate * rain_arr[m, i]), a,
                                 drain[m, i] * dt if losses else 0.0, infil[m, i] * dt if losses else 0.0)
        v_drain += ld
        v_infil += li
        v_clamp += neg
        hrow[i] = d
        hm, first[i] = _mark(hmax[m, i], d, depth_mark)
        hmax[m, i] = hm
        crossed += first[i]
        top_bits = max(top_bits, _bits(d))
        bad += not (d < 1.0e6)
    return v_drain, v_infil, v_clamp, crossed, top_bits, bad


@njit(inline="always", **_JIT)
def _slot(m, r0, r1):  # pragma: no cover - compiled
    """The side row of row m in the chunk of rows r0..r1-1 (its first three rows: 0-2, its last two: 3-4), or -1:
    the rows that the neighbour chunks read (the pipeline reads two rows beyond a chunk's edge, three for qy)."""
    if m < r0 + 3:
        return m - r0
    if m >= r1 - 2:
        return 3 + m - (r1 - 2)
    return -1


@njit(**_JIT)
def _chunk(c, z, h, qx, qy, sa, wx, wy, n2, n2u, rain_arr, drain, infil, losses, hmax, t15,
           bx_ptr, bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, nx, dx, dy, dt, theta, hmin,
           rain_rate, t_end, depth_mark, work, side_h, side_qx, side_qy, acc, chunk_hmax):  # pragma: no cover
    """One time step over chunk c (rows bounds[c]..bounds[c+1]), in place: new discharges into `qx`/`qy` for the
    faces the chunk owns, new depths into `h`; volumes into `acc[c]`, the deepest water into `chunk_hmax[c]`.

    The pipeline writes row k-2 after it has read everything of it, so the rows the chunk owns are updated in
    place; the rows its neighbour chunks read (its first three and last two, `_slot`) go to `side_*[c]` instead,
    and `_write_back` copies them once every chunk is done. So chunks can run in any order or at once. `n2u`:
    Manning's n² of every cell with storage if it is one value, else -1 (`_faces`); `losses`: whether any cell has
    drainage or infiltration (without, `drain` and `infil` are not read).
    """
    ny = z.shape[0] - 2
    r0 = bounds[c]
    r1 = bounds[c + 1]
    wk = work[c]
    ex = wk[3 * _SLOTS]
    ey = wk[3 * _SLOTS + 1]
    ey_next = wk[3 * _SLOTS + 2]
    mk = wk[3 * _SLOTS + 3]
    v_drain = 0.0
    v_infil = 0.0
    v_out = 0.0
    v_clamp = 0.0
    top_bits = np.int64(0)
    bad = 0
    for k in range(r0 - 1, r1 + 2):
        # stage 1: raw faces of row k (x faces, and the y faces north of it)
        qxr = wk[k % _SLOTS]
        qyr = wk[_SLOTS + k % _SLOTS]
        if 1 <= k <= ny:
            _row_faces(k, 1, 0, z, h, qx, qy, wx, n2, n2u, bx_ptr, bx_i, bx_dir, bx_s, nx, dx, dt, theta, hmin, qxr)
        else:
            qxr[:] = 0.0
        if 1 <= k <= ny + 1:
            _row_faces(k, 0, 1, z, h, qy, qx, wy, n2, n2u, by_ptr, by_i, by_dir, by_s, nx, dy, dt, theta, hmin, qyr)
        else:
            qyr[:] = 0.0
        # stage 2: limiter of row k-1 (needs the faces north of row k, i.e. its south faces)
        m = k - 1
        if m >= r0 - 1:
            sm = wk[2 * _SLOTS + m % _SLOTS]
            if 1 <= m <= ny:
                _limits(m, h, sa, wx, wy, wk[m % _SLOTS], wk[_SLOTS + m % _SLOTS], qyr, nx, dx, dy, dt, sm)
            else:
                sm[:] = 1.0
        # stage 3: continuity of row k-2
        m = k - 2
        if m < r0 or m > ny:
            continue
        s_up = wk[2 * _SLOTS + (m - 1) % _SLOTS]
        s_m = wk[2 * _SLOTS + m % _SLOTS]
        s_dn = wk[2 * _SLOTS + (m + 1) % _SLOTS]
        qxm = wk[m % _SLOTS]
        slot = _slot(m, r0, r1)
        if slot >= 0:
            hrow = side_h[c, slot]
            qxrow = side_qx[c, slot]
            qyrow = side_qy[c, slot]
            hrow[1:nx + 1] = h[m, 1:nx + 1]
        else:
            hrow = h[m]
            qxrow = qx[m]
            qyrow = qy[m]
        if m == r0:  # the faces north of the chunk's first row: no previous row computed them
            qym = wk[_SLOTS + m % _SLOTS]
            for i in range(1, nx + 1):
                q = qym[i]
                ey[i] = q * (s_up[i] if q > 0.0 else s_m[i])
        qys = wk[_SLOTS + (m + 1) % _SLOTS]
        for i in range(1, nx + 1):
            q = qys[i]
            ey_next[i] = q * (s_m[i] if q > 0.0 else s_dn[i])
        for i in range(1, nx + 2):
            q = qxm[i]
            ex[i] = q * (s_m[i - 1] if q > 0.0 else s_m[i])
            qxrow[i] = ex[i]
        for i in range(1, nx + 1):
            qyrow[i] = ey[i]
        if m == ny:  # the faces south of the last row (chunk_bounds: no other chunk reads them)
            for i in range(1, nx + 1):
                qy[m + 1, i] = ey_next[i]
        if losses:
            sums = _row_depths(m, nx, hrow, ex, ey, ey_next, sa, wx, wy, rain_arr, drain, infil, True, hmax, mk,
                               dx, dy, dt, rain_rate, depth_mark)
        else:
            sums = _row_depths(m, nx, hrow, ex, ey, ey_next, sa, wx, wy, rain_arr, drain, infil, False, hmax, mk,
                               dx, dy, dt, rain_rate, depth_mark)
        v_drain += sums[0]
        v_infil += sums[1]
        v_clamp += sums[2]
        top_bits = max(top_bits, sums[4])
        bad += sums[5]
        if sums[3] > 0.0:  # first times at the depth mark: a few cells per step at most, so not stored every step
            for i in range(1, nx + 1):
                if mk[i] > 0.0:
                    t15[m, i] = t_end
        # boundary outflow through the faces this row owns (its x faces, the faces north of it; the last row
        # also owns the faces south of it)
        for b in range(bx_ptr[m], bx_ptr[m + 1]):
            v_out += abs(ex[bx_i[b]]) * wx[m, bx_i[b]] * dy * dt
        for b in range(by_ptr[m], by_ptr[m + 1]):
            v_out += abs(ey[by_i[b]]) * wy[m, by_i[b]] * dx * dt
        if m == ny:
            for b in range(by_ptr[m + 1], by_ptr[m + 2]):
                v_out += abs(ey_next[by_i[b]]) * wy[m + 1, by_i[b]] * dx * dt
        ey, ey_next = ey_next, ey
    acc[c, 1] += v_drain
    acc[c, 2] += v_infil
    acc[c, 3] += v_out
    acc[c, 5] += v_clamp
    chunk_hmax[c] = _from_bits(top_bits) if bad == 0 else -1.0


@njit(**_JIT)
def _write_back(bounds, h, qx, qy, side_h, side_qx, side_qy):  # pragma: no cover - compiled
    """Copy the side rows of every chunk into h, qx, qy (after all chunks of a step are done)."""
    nx = h.shape[1] - 2
    for c in range(bounds.shape[0] - 1):
        r0 = bounds[c]
        r1 = bounds[c + 1]
        for m in range(r0, r1):
            slot = _slot(m, r0, r1)
            if slot >= 0:
                h[m, 1:nx + 1] = side_h[c, slot, 1:nx + 1]
                qx[m, 1:nx + 2] = side_qx[c, slot, 1:nx + 2]
                qy[m, 1:nx + 1] = side_qy[c, slot, 1:nx + 1]


@njit(parallel=True, **_JIT_PARALLEL)
def _step_parallel(z, h, qx, qy, sa, wx, wy, n2, n2u, rain_arr, drain, infil, losses, hmax, t15,
                   bx_ptr, bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, nx, dx, dy, dt, theta, hmin,
                   rain_rate, t_end, depth_mark, work, side_h, side_qx, side_qy, acc,
                   chunk_hmax):  # pragma: no cover
    """One time step, the chunks shared among the caller's numba threads."""
    for c in prange(bounds.shape[0] - 1):
        _chunk(c, z, h, qx, qy, sa, wx, wy, n2, n2u, rain_arr, drain, infil, losses, hmax, t15, bx_ptr, bx_i,
               bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, nx, dx, dy, dt, theta, hmin, rain_rate, t_end,
               depth_mark, work, side_h, side_qx, side_qy, acc, chunk_hmax)


@njit(**_JIT_ENTRY)
def _advance(z, h, qx, qy, sa, wx, wy, n2, n2u, rain_arr, rain_sum, drain, infil, losses, hmax, t15,
             bx_ptr, bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, nx, dx, dy, t, t_stop, dt_first,
             cfl, dt_max, theta, hmin, rain_rate, depth_mark, src_cell, src_rate, work, side_h, side_qx, side_qy,
             acc, chunk_hmax, max_steps):  # pragma: no cover
    """Step from `t` to `t_stop` with constant forcing, in place; returns (t, steps, next dt); steps < 0: unstable.

    Each step's chunks run on the numba threads of the caller (`numba.set_num_threads`; one thread runs them one
    after the other). One thread or many run the same compiled step: a separate serial kernel was compiled in
    another context (inlined into its loop, or loaded from numba's cache) and, with the fast-math flags, could
    round differently from the parallel one.
    """
    steps = 0
    dt = dt_first
    cell = min(dx, dy)
    while t < t_stop and steps < max_steps:
        if t_stop - t < dt * (1.0 + 1e-9):
            dt = t_stop - t
        for k in range(src_cell.shape[0]):  # point inflows: adding water keeps depths >= 0
            j = src_cell[k] // (nx + 2)
            i = src_cell[k] - j * (nx + 2)
            h[j, i] += src_rate[k] * dt / sa[j, i]
            acc[0, 4] += src_rate[k] * dt
        acc[0, 0] += rain_rate * rain_sum * dt
        _step_parallel(z, h, qx, qy, sa, wx, wy, n2, n2u, rain_arr, drain, infil, losses, hmax, t15, bx_ptr, bx_i,
                       bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, nx, dx, dy, dt, theta, hmin, rain_rate,
                       t + dt, depth_mark, work, side_h, side_qx, side_qy, acc, chunk_hmax)
        _write_back(bounds, h, qx, qy, side_h, side_qx, side_qy)
        t += dt
        steps += 1
        top = 0.0
        for c in range(chunk_hmax.shape[0]):
            if chunk_hmax[c] < 0.0 or chunk_hmax[c] != chunk_hmax[c]:
                return t, -steps, dt
            top = max(top, chunk_hmax[c])
        dt = dt_max
        if top > 0.0:
            dt = min(dt_max, cfl * cell / math.sqrt(G * top))
    return t, steps, dt


def chunk_bounds(ny: int, rows: int) -> np.ndarray:
    """Row chunks of at least 5 rows (a chunk's first three and last two rows are its side rows, `_slot`), the
    last one merged into the one before if it would be shorter."""
    step = max(5, int(rows))
    b = np.append(np.arange(1, ny + 1, step), ny + 1).astype(np.int64)
    if b.size > 2 and b[-1] - b[-2] < 5:
        b = np.delete(b, -2)
    return b


def side_rows(nchunks: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The side rows of every chunk for h, qx, qy (`_slot`)."""
    return np.zeros((nchunks, 5, nx + 2)), np.zeros((nchunks, 5, nx + 3)), np.zeros((nchunks, 5, nx + 2))


# ---------------------------------------------------------------------------------------------------------- grid


def _pad(a: np.ndarray | float, shape: tuple[int, int], value: float, dtype: type) -> np.ndarray:
    out = np.full((shape[0] + 2, shape[1] + 2), value, dtype)
    out[1:-1, 1:-1] = np.broadcast_to(np.asarray(a, dtype), shape)
    return out


def _csr(rows: np.ndarray, ny: int, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Group face records by row: (row pointer of length ny + 3, then each column sorted by row)."""
    order = np.argsort(rows, kind="stable")
    ptr = np.zeros(ny + 4, np.int64)
    np.add.at(ptr, rows + 1, 1)
    return (np.cumsum(ptr)[: ny + 3],) + tuple(c[order] for c in cols)


@dataclass
class SolverGrid:
    """The grid as the solver sees it: padded by one ring of outside cells.

    Cell (j, i) of the unpadded grid is (j + 1, i + 1). Cell arrays are (ny + 2, nx + 2); `qx`/`wx` hold the west
    face of cell (j, i) at [j, i] and are (ny + 2, nx + 3); `qy`/`wy` its north face and are (ny + 3, nx + 2) (the
    extra column/row is always 0 so that neighbours of the last face need no bounds check).

    Attributes:
        z: bed elevation, float64; `_ZOUT` outside the domain (beyond the raster, nodata).
        sa: storage area of a cell (m²) = porosity x cell area, float32; 0 outside and in walls.
        wx, wy: face width factors (0..1; 0 closed), float32.
        n2: Manning's n squared per cell, float32.
        rain_area: area (m²) whose rain lands in this cell (its own plus roof cells routed to it), float32.
        drain, infil: loss capacities (m³/s) of a cell, float32.
        bx, by: open boundary faces (row pointer, face index, +1/-1 side of the inside, outward slope).
        dx, dy: cell size (m).
    """

    z: np.ndarray
    sa: np.ndarray
    wx: np.ndarray
    wy: np.ndarray
    n2: np.ndarray
    rain_area: np.ndarray
    drain: np.ndarray
    infil: np.ndarray
    bx: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    by: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    dx: float
    dy: float

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the unpadded grid."""
        return self.z.shape[0] - 2, self.z.shape[1] - 2

    @property
    def nbytes(self) -> int:
        """Bytes of the fixed arrays one step reads."""
        return sum(a.nbytes for a in (self.z, self.sa, self.wx, self.wy, self.n2, self.rain_area, self.drain,
                                      self.infil))


def solver_grid(z: np.ndarray, phi: np.ndarray, dx: float, dy: float, *, manning: np.ndarray | float,
                open_boundary: bool, rain_area: np.ndarray | None = None, drainage: np.ndarray | float = 0.0,
                infiltration: np.ndarray | float = 0.0, boundary_slope: float | None = None,
                min_boundary_slope: float = 1e-3) -> SolverGrid:
    """Build the padded solver grid from unpadded arrays.

    Args:
        z: (ny, nx) bed elevation, NaN outside the domain.
        phi: (ny, nx) porosity in [0, 1] (1 open ground, 0 a wall).
        dx, dy: cell size (m).
        manning: Manning's n (s m^-1/3), a scalar or (ny, nx).
        open_boundary: faces to the outside let water out (True) or are walls (False).
        rain_area: (ny, nx) area collecting into each cell (m²); default: each cell with storage its own area.
        drainage, infiltration: loss rates (m/s), scalars or (ny, nx): drainage over the whole cell area,
            infiltration over its open part.
        boundary_slope: bed slope of the ghost cells beyond open faces; default each inner cell's outward slope.
        min_boundary_slope: the least slope used on an open face.
    """
    ny, nx = z.shape
    shape = (ny, nx)
    zf = np.asarray(z, np.float64)
    inside = _pad(np.isfinite(zf), shape, False, bool)
    phi = np.where(np.isfinite(zf), np.clip(np.asarray(phi, np.float64), 0.0, 1.0), 0.0)
    phip = _pad(phi, shape, 0.0, np.float64)
    zp = _pad(np.where(np.isfinite(zf), zf, _ZOUT), shape, _ZOUT, np.float64)
    area = dx * dy
    sa = (phip * area).astype(np.float32)
    live = sa > 0
    # interior faces take the narrower side (0 next to a wall); open faces the inner cell's porosity
    wx = np.zeros((ny + 2, nx + 3), np.float32)
    wy = np.zeros((ny + 3, nx + 2), np.float32)
    lft, rgt = phip[:, :-1], phip[:, 1:]
    in_l, in_r = inside[:, :-1], inside[:, 1:]
    wx[:, 1:-1] = np.where(in_l & in_r, np.minimum(lft, rgt), 0.0)
    up, dn = phip[:-1, :], phip[1:, :]
    in_u, in_d = inside[:-1, :], inside[1:, :]
    wy[1:-1, :] = np.where(in_u & in_d, np.minimum(up, dn), 0.0)
    empty = (np.zeros(ny + 3, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    bx: tuple[np.ndarray, ...] = empty
    by: tuple[np.ndarray, ...] = empty
    if open_boundary:
        # x faces: face i of row j between padded cells (j, i-1) and (j, i)
        east_out = live[:, :-1] & ~inside[:, 1:]   # inside west, outside east: d = +1
        west_out = ~inside[:, :-1] & live[:, 1:]   # d = -1
        jj_e, ii_e = np.nonzero(east_out)
        jj_w, ii_w = np.nonzero(west_out)
        fj = np.concatenate([jj_e, jj_w])
        fi = np.concatenate([ii_e + 1, ii_w + 1])
        fd = np.concatenate([np.ones(jj_e.size, np.int64), -np.ones(jj_w.size, np.int64)])
        inner_i = np.where(fd > 0, fi - 1, fi)
        wx[fj, fi] = phip[fj, inner_i]
        slope = _outward_slope(zp, inside, fj, inner_i, fj, inner_i - fd, dx, boundary_slope, min_boundary_slope)
        bx = _csr(fj, ny, fi.astype(np.int64), fd, slope)
        # y faces: face (j, i) between padded cells (j-1, i) and (j, i)
        south_out = live[:-1, :] & ~inside[1:, :]  # inside north, outside south: d = +1
        north_out = ~inside[:-1, :] & live[1:, :]  # d = -1
        jj_s, ii_s = np.nonzero(south_out)
        jj_n, ii_n = np.nonzero(north_out)
        fj = np.concatenate([jj_s + 1, jj_n + 1])
        fi = np.concatenate([ii_s, ii_n])
        fd = np.concatenate([np.ones(jj_s.size, np.int64), -np.ones(jj_n.size, np.int64)])
        inner_j = np.where(fd > 0, fj - 1, fj)
        wy[fj, fi] = phip[inner_j, fi]
        slope = _outward_slope(zp, inside, inner_j, fi, inner_j - fd, fi, dy, boundary_slope, min_boundary_slope)
        by = _csr(fj, ny, fi.astype(np.int64), fd, slope)
    n2 = _pad(np.asarray(manning, np.float64) ** 2, shape, 0.0, np.float32)
    if rain_area is None:
        rain_area = np.where(phi > 0, area, 0.0)
    ra = np.where(live, _pad(rain_area, shape, 0.0, np.float32), 0.0).astype(np.float32)
    drain = np.where(live, _pad(drainage, shape, 0.0, np.float64) * area, 0.0).astype(np.float32)
    infil = np.where(live, _pad(infiltration, shape, 0.0, np.float64) * sa, 0.0).astype(np.float32)
    return SolverGrid(zp, sa, wx, wy, n2, ra, drain, infil, bx, by, float(dx), float(dy))  # type: ignore[arg-type]


def _outward_slope(zp: np.ndarray, inside: np.ndarray, j: np.ndarray, i: np.ndarray, jn: np.ndarray,
                   in_: np.ndarray, d: float, fixed: float | None, floor: float) -> np.ndarray:
    """Slope (>= floor) of the bed down towards an open face: inner neighbour (jn, in_) minus the boundary cell."""
    if fixed is not None:
        return np.full(j.size, max(float(fixed), floor))
    ok = (jn >= 0) & (jn < zp.shape[0]) & (in_ >= 0) & (in_ < zp.shape[1])
    jn_c, in_c = np.where(ok, jn, j), np.where(ok, in_, i)
    has = ok & inside[jn_c, in_c]
    s = np.where(has, (zp[jn_c, in_c] - zp[j, i]) / d, 0.0)
    return np.maximum(s, floor)


# ---------------------------------------------------------------------------------------------------------- solver


@dataclass
class SolverState:
    """What changes during a run (arrays padded like `SolverGrid`).

    Attributes:
        h: depth (m), float64.
        qx, qy: face discharges (m²/s), float64.
        hmax: the deepest water each cell saw (m), float32.
        t15: seconds until a cell first held `depth_mark`, float32, NaN where it never did.
        t: time (s); dt: the next step (s; with local time stepping the finest one); steps: steps taken (finest
            steps with local time stepping).
        cell_updates: cell-steps computed (steps x cells with storage for the global step; fewer with local
            time stepping, where coarse blocks skip steps).
    """

    h: np.ndarray
    qx: np.ndarray
    qy: np.ndarray
    hmax: np.ndarray
    t15: np.ndarray
    t: float = 0.0
    dt: float = 0.0
    steps: int = 0
    cell_updates: float = 0.0


@dataclass
class ShallowWaterSolver:
    """Advances a `SolverGrid` in time (the scheme is in the module docstring).

    Args:
        grid: the padded grid.
        cfl: Courant number of the adaptive step. Bates 2010 recommend 0.2-0.7, but in 2D the explicit staggered
            scheme's limit for the gravity wave is 1/sqrt(2) and wet/dry fronts on steep slopes with weak friction
            went unstable at 0.65 in the bowl test (tests/cim/analysis/flood/test_solver.py); 0.5 keeps a margin.
        theta: de Almeida's weighting (1: Bates 2010; 0.7 default).
        h_min: depth that can flow across a face below which the face is dry (m).
        dt_max: the longest step (s), used while the grid is (nearly) dry.
        depth_mark: the depth whose first arrival time is recorded (m; 0.15 = GB 51222's limit on a lane).
        chunk_rows: rows per chunk (chunks are what the cores share).
        threads: numba threads (default: all cores, or 1 below `SMALL_GRID` cells, where waking a second thread
            every step costs more than it brings).
        local_levels: local time stepping (`cim.analysis.flood.lts`): blocks of cells take steps of up to
            2^local_levels times the global CFL step where their water is shallow. 0 (the default) is the global
            step for every cell, the reference; LTS is an approximation (its error and status: `cim.analysis.flood.lts`).
        lts_block: cells a side of an LTS block.
    """

    grid: SolverGrid
    cfl: float = 0.5
    theta: float = 0.7
    h_min: float = 1e-3
    dt_max: float = 10.0
    depth_mark: float = 0.15
    chunk_rows: int = 256
    threads: int | None = None
    local_levels: int = 0
    lts_block: int = 16
    state: SolverState = field(init=False)
    balance: MassBalance = field(init=False)

    def __post_init__(self) -> None:
        ny, nx = self.grid.shape
        cells = (ny + 2, nx + 2)
        self.state = SolverState(np.zeros(cells), np.zeros((ny + 2, nx + 3)), np.zeros((ny + 3, nx + 2)),
                                 np.zeros(cells, np.float32), np.full(cells, np.nan, np.float32))
        self.balance = MassBalance()
        self._bounds = chunk_bounds(ny, self.chunk_rows)
        nchunks = self._bounds.size - 1
        self._acc = np.zeros((nchunks, 6))
        self._chunk_hmax = np.zeros(nchunks)
        self._work = np.zeros((nchunks, _WORK_ROWS, nx + 3))
        self._side = side_rows(nchunks, nx)
        self._losses = bool(self.grid.drain.any() or self.grid.infil.any())
        n2 = np.unique(self.grid.n2[self.grid.sa > 0])
        self._n2u = float(n2[0]) if n2.size == 1 else -1.0
        self._src_cell = np.zeros(0, np.int64)
        self._src_rate = np.zeros(0)
        self._rain_sum = float(self.grid.rain_area.sum(dtype=np.float64))
        self._ncells = int(np.count_nonzero(self.grid.sa))
        if not 0 <= int(self.local_levels) <= 8:
            raise FloodError(f"local_levels must be 0..8 (got {self.local_levels}); 0 is the global step")
        if int(self.lts_block) < 4:
            raise FloodError(f"lts_block must be at least 4 cells (got {self.lts_block})")
        self._lts: dict | None = None

    @property
    def ncells(self) -> int:
        """Cells with storage."""
        return self._ncells

    def step_arrays(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The arrays one global step reads whole (fixed fields) and those it reads and rewrites in place (state):
        each once, in one pass. Manning's n² only if it varies, the loss fields only if a cell has losses; `t15` is
        written only where a cell first reaches the depth mark."""
        g, s = self.grid, self.state
        fixed = [g.z, g.sa, g.wx, g.wy] + ([g.n2] if self._n2u < 0 else []) + [g.rain_area] + (
            [g.drain, g.infil] if self._losses else [])
        return fixed, [s.h, s.qx, s.qy, s.hmax]

    @property
    def nbytes(self) -> int:
        """Bytes one step reads (and rewrites, for the state) at least once: `step_arrays`."""
        fixed, state = self.step_arrays()
        return sum(a.nbytes for a in fixed + state)

    def set_depth(self, depth: np.ndarray) -> None:
        """Start from water depths (ny, nx), e.g. a still lake; they count as the initial volume."""
        d = np.asarray(depth, np.float64)
        if not np.isfinite(d).all() or (d < 0).any():
            raise FloodError("initial depths must be finite and >= 0")
        ny, nx = self.grid.shape
        h = np.where(self.grid.sa > 0, _pad(d, (ny, nx), 0.0, np.float64), 0.0)
        self.state.h[...] = h
        self.state.hmax[...] = np.maximum(self.state.hmax, h)
        self.balance.initial = self.stored_volume()

    def set_inflows(self, cells: np.ndarray, rates: np.ndarray) -> None:
        """Point inflows (m³/s) at unpadded flat cell indices; they apply from the next `advance` on."""
        ny, nx = self.grid.shape
        j, i = np.divmod(np.asarray(cells, np.int64), nx)
        cell = ((j + 1) * (nx + 2) + (i + 1)).astype(np.int64)
        if (self.grid.sa.ravel()[cell] <= 0).any():
            raise FloodError("an inflow point lies on a wall or outside the domain")
        self._src_cell = cell
        self._src_rate = np.asarray(rates, np.float64)

    def stored_volume(self) -> float:
        """Water on the grid now (m³)."""
        return float(np.sum(self.state.h * self.grid.sa, dtype=np.float64))

    def advance(self, t_stop: float, rain_rate: float = 0.0, rain_volume: np.ndarray | None = None,
                max_steps: int = 2**62) -> int:
        """Advance to `t_stop` (s) with constant forcing; returns the steps taken.

        Args:
            t_stop: the time to reach.
            rain_rate: rain intensity (m/s) over each cell's rain area (`SolverGrid.rain_area`).
            rain_volume: instead, rain as a volume rate (m³/s) per unpadded cell (ny, nx), already routed off the
                walls (`FloodGrid.route`), for rain that varies in space.
            max_steps: stop after this many steps even before `t_stop` (benchmarks).
        """
        threads = self.threads or (1 if self.ncells < SMALL_GRID else numba.config.NUMBA_NUM_THREADS)
        threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            return self._advance(float(t_stop), float(rain_rate), rain_volume, max_steps, threads)
        finally:
            numba.set_num_threads(before)

    def _advance(self, t_stop: float, rain_rate: float, rain_volume: np.ndarray | None, max_steps: int,
                 threads: int) -> int:
        g, s = self.grid, self.state
        rain_arr, rain_sum = g.rain_area, self._rain_sum
        if rain_volume is not None:
            ny, nx = g.shape
            rain_arr = np.where(g.sa > 0, _pad(rain_volume, (ny, nx), 0.0, np.float32), 0.0).astype(np.float32)
            rain_sum = float(rain_arr.sum(dtype=np.float64))
            rain_rate = 1.0
        if not (rain_rate >= 0 and (rain_volume is None or (rain_arr >= 0).all())):
            raise FloodError(f"rain must be >= 0 (got a rate of {rain_rate} m/s or a negative cell)")
        if s.dt <= 0:
            top = float(s.h.max())
            s.dt = self.dt_max if top <= 0 else min(self.dt_max, self.cfl * min(g.dx, g.dy) / math.sqrt(G * top))
        ny, nx = g.shape
        if self.local_levels > 0:
            return self._advance_lts(float(t_stop), float(rain_rate), rain_arr, rain_sum, threads, max_steps)
        t, steps, dt = _advance(
            g.z, s.h, s.qx, s.qy, g.sa, g.wx, g.wy, g.n2, self._n2u, rain_arr, rain_sum, g.drain, g.infil,
            self._losses, s.hmax, s.t15, *g.bx, *g.by, self._bounds, nx, g.dx, g.dy, s.t, float(t_stop), s.dt,
            self.cfl, self.dt_max, self.theta, self.h_min, float(rain_rate), self.depth_mark, self._src_cell,
            self._src_rate, self._work, *self._side, self._acc, self._chunk_hmax, max_steps)
        if steps < 0:
            raise FloodError(f"the solver became unstable at t={t:.1f} s (a depth went non-finite or above 1 km); "
                             f"lower cfl (now {self.cfl}) or raise theta (now {self.theta})")
        s.t, s.dt, s.steps = t, dt, s.steps + steps
        s.cell_updates += steps * self.ncells
        self._sum_balance(self._acc)
        return steps

    def _sum_balance(self, acc_rows: np.ndarray) -> None:
        acc = acc_rows.sum(axis=0)
        b = self.balance
        b.rain, b.drainage, b.infiltration, b.outflow, b.inflow = (float(v) for v in acc[:5])
        b.rounding = -float(acc[5])
        b.stored = self.stored_volume()

    def _advance_lts(self, t_stop: float, rain_rate: float, rain_arr: np.ndarray, rain_sum: float, threads: int,
                     max_steps: int) -> int:
        from cim.analysis.flood import lts

        g, s = self.grid, self.state
        ny, nx = g.shape
        bsz = int(self.lts_block)
        levels = int(self.local_levels)
        if self._lts is None:
            nby, nbx = -(-ny // bsz), -(-nx // bsz)
            bounds = chunk_bounds(ny, self.chunk_rows)
            width = 2 * nbx + 2
            work, side_h, side_qx, side_qy = lts.work_buffers(bounds.size - 1, nx)
            self._lts = {"lvb": np.zeros((nby, nbx), np.int64), "lvb_old": np.full((nby, nbx), -1, np.int64),
                         "bmax": np.zeros((nby, nbx)), "mult": np.full((ny + 2, nx + 2), lts._MOUT),
                         "cs": np.zeros((levels + 1, ny + 2, width, 2), np.int64),
                         "cn": np.zeros((levels + 1, ny + 2), np.int64),
                         "fs": np.zeros((levels + 1, ny + 2, width, 2), np.int64),
                         "fn": np.zeros((levels + 1, ny + 2), np.int64), "ctot": np.zeros(levels + 1, np.int64),
                         "bounds": bounds, "work": work, "side_h": side_h, "side_qx": side_qx, "side_qy": side_qy,
                         "acc": np.zeros((bounds.size - 1, 6)), "chunk_hmax": np.zeros(bounds.size - 1)}
        w = self._lts
        order = lts.chunk_order(w["bounds"].size - 1, threads)
        t, steps, updates, dt0 = lts.advance_lts(
            g.z, s.h, s.qx, s.qy, g.sa, g.wx, g.wy, g.n2, rain_arr, rain_sum, g.drain, g.infil, s.hmax, s.t15,
            *g.bx, *g.by, w["bounds"], order, nx, g.dx, g.dy, s.t, t_stop, self.cfl, self.dt_max, self.theta,
            self.h_min, rain_rate, self.depth_mark, self._src_cell, self._src_rate, levels, bsz,
            lts.VELOCITY_DEPTH, w["lvb"],
            w["lvb_old"], w["bmax"], w["mult"], w["cs"], w["cn"], w["fs"], w["fn"], w["ctot"], w["work"],
            w["side_h"], w["side_qx"], w["side_qy"], w["acc"], w["chunk_hmax"], max_steps)
        if steps < 0:
            raise FloodError(f"the solver became unstable at t={t:.1f} s (a depth went non-finite or above 1 km); "
                             f"lower cfl (now {self.cfl}) or local_levels (now {self.local_levels})")
        s.t, s.dt, s.steps = t, dt0, s.steps + steps
        s.cell_updates += updates * self.ncells / (ny * nx)
        self._sum_balance(w["acc"])
        return steps

    # unpadded views of the results
    def depth(self) -> np.ndarray:
        """(ny, nx) water depth now (m)."""
        return self.state.h[1:-1, 1:-1]

    def max_depth(self) -> np.ndarray:
        """(ny, nx) the deepest water each cell saw (m)."""
        return self.state.hmax[1:-1, 1:-1]

    def time_to_mark(self) -> np.ndarray:
        """(ny, nx) seconds until each cell first held `depth_mark` of water; NaN where it never did."""
        return self.state.t15[1:-1, 1:-1]

    def flow(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A copy of the flow now (padded h, qx, qy): `velocity` and `speed` of this moment later, or on another
        thread while the solver runs on (`cim.analysis.flood.run` writes each output step's rasters so)."""
        s = self.state
        return s.h.copy(), s.qx.copy(), s.qy.copy()

    def velocity(self, flow: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(ny, nx) cell-centred velocity (u towards east, v towards north) in m/s; 0 where no face flows.

        Each face's velocity is its discharge over its own flow depth `h_f` (not the cell's depth, which can be far
        smaller beside a deeper neighbour); a cell takes the mean of its two faces in each direction.

        Args:
            flow: (h, qx, qy) from `flow()`: the velocity at that moment; default the state now.
        """
        g = self.grid
        h, qx, qy = flow if flow is not None else (self.state.h, self.state.qx, self.state.qy)
        eta = g.z + h

        def face_velocity(q: np.ndarray, e0: np.ndarray, e1: np.ndarray, z0: np.ndarray, z1: np.ndarray
                          ) -> np.ndarray:
            hf = np.maximum(e0, e1) - np.maximum(z0, z1)
            ok = hf > self.h_min
            return np.where(ok, q / np.where(ok, hf, 1.0), 0.0)

        ux = face_velocity(qx[:, 1:-1], eta[:, :-1], eta[:, 1:], g.z[:, :-1], g.z[:, 1:])  # (ny+2, nx+1)
        uy = face_velocity(qy[1:-1, :], eta[:-1, :], eta[1:, :], g.z[:-1, :], g.z[1:, :])  # (ny+1, nx+2)
        u = 0.5 * (ux[1:-1, :-1] + ux[1:-1, 1:])
        v = -0.5 * (uy[:-1, 1:-1] + uy[1:, 1:-1])
        dry = h[1:-1, 1:-1] <= 0
        return np.where(dry, 0.0, u), np.where(dry, 0.0, v)

    def speed(self, flow: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(ny, nx) flow speed (m/s), now or at the moment of `flow` (`velocity`)."""
        u, v = self.velocity(flow)
        return np.hypot(u, v)
