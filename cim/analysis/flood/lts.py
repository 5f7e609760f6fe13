"""Local time stepping (LTS) for the local-inertial solver: each block of cells takes the longest power-of-two
multiple of the finest step that its own water allows, and mass stays exactly conserved.

Why: rain wets every cell of a city within minutes, but the global CFL step `cfl dx / sqrt(g max h)` is set by the
deepest water (a flooded underpass, a pond): on the 1 km² / 1 m benchmark storm 1.4-1.7 m of water in a few
thousand cells sets a 0.12 s step for 700k cells that mostly hold centimetres. With LTS the grid is cut into square
blocks (`block` cells a side) and block b advances with `dt_b = 2^L_b dt_0`, `L_b` in 0..`levels` (Sanders 2008,
J. Hydraul. Res. 46(4), 466-475: power-of-two levels; the same idea as the LTS of Dazzi, Vacondio, Dal Palù &
Mignosa 2018, Adv. Water Resour. 111, 193-206):

- Levels are set at the start of each macro step (`2^L_max` finest steps): `dt_0` is the global CFL step, and a
  block takes the largest `L` with `2^L dt_0 <= cfl dx / sqrt(g H_b)` where `H_b` is the block's largest "wave
  depth" `(sqrt(g h) + |u|)^2 / g` (`block_max`; the speed counts where h > `VELOCITY_DEPTH`), or half that of a
  neighbour block if more (water from a neighbour arrives over the edge, not at once); neighbouring blocks then
  differ by at most one level. From the depth alone (the local-inertial scheme's own CFL: it has no advection
  term) the 1 km² storm's fast shallow street flow over-topped by up to 0.3 m (docs/flood.md#local-time-stepping).
- Finest step `s` of a macro step fires every cell whose level divides it (`s mod 2^L == 0`). A face takes the
  smaller level of its two cells, so it fires at the finer side's rate with that side's step; its discharge follows
  the same face equation as the global solver (`solver.py`) with its own `dt`. Rain and losses of a cell act over
  its own step when it fires.
- Mass: the volume `q w d dt_face` of each face that fires leaves one cell and enters the other in the same finest
  step, whatever their levels (a coarse cell beside a fine block takes each fine flux as it happens), so rain in =
  stored + out + losses to rounding. The positivity limiter of the global solver runs on exactly the faces that
  fire, against each cell's current volume, so depths stay >= 0.
- The kernel is the global solver's fused row pipeline (faces of row k, limiter of row k-1, continuity of row k-2,
  rows in small buffers, chunks of rows that recompute two halo rows instead of sharing them), run on each row only
  over the column spans that change at this finest step: the firing cells and their four neighbours (`spans`,
  from the block levels, once per change of levels). It updates h and q in place (the pipeline has read row k-2
  when it writes it; the rows a neighbour chunk reads go through side rows), so a cell outside the spans costs
  nothing; faces inside a span that do not fire keep their discharge. Results do not depend on the chunking or the
  thread count, and with every block at level 0 a step is the global one (to rounding).

Cost (one thread, the 1 km² storm's state at 30 min, 2026-12-04): a full-grid finest step 11-12 ms against the
global kernel's 9-10 ms; steps over the finest level's scattered short spans cost 2-3x more per cell (memory
latency). With levels from the depth alone that state takes 45-51 ms per 8 finest steps against 79 ms; with the
speed counted most of that storm's blocks stay fine and the whole storm took 233 against 249 CPU-seconds.

The global solver stays the reference and the default: LTS is an approximation whose error against it is measured
(tests/cim/analysis/flood/test_flood_lts.py, docs/flood.md#local-time-stepping).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cim.analysis.flood.solver import (_JIT, _JIT_ENTRY, _JIT_PARALLEL, G, _bits, _from_bits, _mark, _pow_m7_3,
                                       _settle, _slot, side_rows)

#: step multiplier of the outside ring: a face takes its inner cell's
_MOUT = 1.0e300
#: buffer rows per chunk: slots of raw x/y discharges, x/y volumes per width, limiters; then ex, ey, ey_next
_S = 4
_WORK_ROWS = 5 * _S + 3
#: column indices are unsigned in the span loops: a signed start that LLVM cannot prove >= 0 keeps numba's
#: negative-index wraparound in the loop, which then is not vectorised ("cannot identify array bounds")
_U1 = np.uint64(1)
#: spans closer than this are merged: the cells between them (no face of theirs fires) cost less than the fixed
#: cost of a span (a dozen loops, each with its runtime alias checks and scalar remainder)
_GAP = 16
#: depth (m) above which a cell's flow speed counts in its block's level (thinner films: their gravity wave only)
VELOCITY_DEPTH = 0.01


@njit(inline="always", **_JIT)
def _faces(k, ax, ay, i0, i1, z, h, qa, qb, wa, n2, mult, pc, dt0, d, theta, hmin, out):  # pragma: no cover
    """Raw discharges of the faces i0..i1 of row k (x faces: `ax, ay = 1, 0`; y faces north of row k: `0, 1`)
    into out[i]: `solver._faces` with each face's own step, 0 for a face that does not fire (`min(mult) > pc`)."""
    ux = np.uint64(ax)
    uy = np.uint64(ay)
    u0 = np.uint64(i0)
    for j in range(i1 + 1 - i0):
        i = u0 + np.uint64(j)
        mf = min(mult[k - ay, i - ux], mult[k, i])
        dt = dt0 * mf
        zl = z[k - ay, i - ux]
        zr = z[k, i]
        el = zl + h[k - ay, i - ux]
        er = zr + h[k, i]
        hf = max(el, er) - max(zl, zr)
        wet = (hf > hmin) & (wa[k, i] > 0.0) & (mf <= pc)
        hs = hf if wet else 1.0
        q0 = qa[k, i]
        qm = qa[k - ay, i - ux] if wa[k - ay, i - ux] > 0.0 else q0
        qp = qa[k + ay, i + ux] if wa[k + ay, i + ux] > 0.0 else q0
        qo = 0.25 * (qb[k - ay, i - ux] + qb[k - ay + ax, i - ux + uy] + qb[k, i] + qb[k + ax, i + uy])
        qbar = theta * q0 + 0.5 * (1.0 - theta) * (qm + qp)
        den = 1.0 + G * dt * 0.5 * (n2[k - ay, i - ux] + n2[k, i]) * math.sqrt(q0 * q0 + qo * qo) * _pow_m7_3(hs)
        q = (qbar - G * hs * dt * (er - el) / d) / den
        out[i] = q if wet else 0.0


@njit(inline="always", **_JIT)
def _volumes(k, ax, ay, i0, i1, mult, pc, dt0, q, v):  # pragma: no cover
    """v[i] = q[i] x the face's step for the faces i0..i1 of row k (0 where it does not fire)."""
    ux = np.uint64(ax)
    u0 = np.uint64(i0)
    for j in range(i1 + 1 - i0):
        i = u0 + np.uint64(j)
        mf = min(mult[k - ay, i - ux], mult[k, i])
        v[i] = q[i] * dt0 * mf if mf <= pc else 0.0


@njit(inline="always", **_JIT)
def _open_faces(k, ax, ay, h, qa, n2, mult, pc, dt0, b_ptr, b_i, b_dir, b_s, hmin, out, v):  # pragma: no cover
    """The open boundary faces of row k (`solver._faces`' ghost-cell outflow) that fire at this finest step."""
    for b in range(b_ptr[k], b_ptr[k + 1]):
        i = b_i[b]
        s = b_dir[b]
        mf = mult[k - ay, i - ax] if s > 0 else mult[k, i]
        q = 0.0
        if mf <= pc:
            dt = dt0 * mf
            hin = h[k - ay, i - ax] if s > 0 else h[k, i]
            nin = n2[k - ay, i - ax] if s > 0 else n2[k, i]
            q0 = qa[k, i]
            if hin > hmin:
                q = (q0 + s * G * hin * dt * b_s[b]) / (1.0 + G * dt * nin * abs(q0) * _pow_m7_3(hin))
                q = max(q, 0.0) if s > 0 else min(q, 0.0)
            v[i] = q * dt
        else:
            v[i] = 0.0
        out[i] = q


@njit(**_JIT)
def _chunk(c, z, h, qx, qy, sa, wx, wy, n2, mult, pc, rain_arr, drain, infil, hmax, t15,
           bx_ptr, bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, cs, cn, fs, fn, nx, dx, dy, dt0, theta,
           hmin, rain_rate, t_sub, depth_mark, work, side_h, side_qx, side_qy, defer, acc,
           chunk_hmax):  # pragma: no cover
    """One finest step over chunk c (rows bounds[c]..bounds[c+1]) on the spans of this step, in place: `solver._chunk`
    with per-face steps; `cs/cn` the cell spans (first, last column) of each row, `fs/fn` the face spans (the row's
    and the previous row's cell spans).

    The pipeline writes row k-2 after it read everything of it, so a chunk can update h, qx, qy in place; the rows
    its neighbour chunks read (its first three and last two) go to `side_*[c]` instead (`defer`), and
    `_write_back` copies them after every chunk is done."""
    ny = z.shape[0] - 2
    r0 = bounds[c]
    r1 = bounds[c + 1]
    wk = work[c]
    ex = wk[5 * _S]
    ey = wk[5 * _S + 1]
    ey_next = wk[5 * _S + 2]
    v_drain = 0.0
    v_infil = 0.0
    v_out = 0.0
    v_clamp = 0.0
    top_bits = np.int64(0)
    bad = 0
    for k in range(r0 - 1, r1 + 2):
        # stage 1: raw faces of row k over its face spans, and their volumes per unit width
        qxr = wk[k % _S]
        qyr = wk[_S + k % _S]
        vxr = wk[2 * _S + k % _S]
        vyr = wk[3 * _S + k % _S]
        if 1 <= k <= ny:
            for p in range(fn[k]):
                a = fs[k, p, 0]
                b = fs[k, p, 1]
                _faces(k, 1, 0, a, b + 1, z, h, qx, qy, wx, n2, mult, pc, dt0, dx, theta, hmin, qxr)
                _volumes(k, 1, 0, a, b + 1, mult, pc, dt0, qxr, vxr)
            _open_faces(k, 1, 0, h, qx, n2, mult, pc, dt0, bx_ptr, bx_i, bx_dir, bx_s, hmin, qxr, vxr)
        else:
            qxr[:] = 0.0
            vxr[:] = 0.0
        if 1 <= k <= ny + 1:
            for p in range(fn[k]):
                a = fs[k, p, 0]
                b = fs[k, p, 1]
                _faces(k, 0, 1, a, b, z, h, qy, qx, wy, n2, mult, pc, dt0, dy, theta, hmin, qyr)
                _volumes(k, 0, 1, a, b, mult, pc, dt0, qyr, vyr)
            _open_faces(k, 0, 1, h, qy, n2, mult, pc, dt0, by_ptr, by_i, by_dir, by_s, hmin, qyr, vyr)
        else:
            qyr[:] = 0.0
            vyr[:] = 0.0
        # stage 2: limiter of row k-1 over its cell spans (its south faces are the faces north of row k)
        m = k - 1
        if m >= r0 - 1:
            sm = wk[4 * _S + m % _S]
            if 1 <= m <= ny:
                vxm = wk[2 * _S + m % _S]
                vym = wk[3 * _S + m % _S]
                for p in range(cn[m]):
                    u0 = np.uint64(cs[m, p, 0])
                    for j in range(cs[m, p, 1] + 1 - cs[m, p, 0]):
                        i = u0 + np.uint64(j)
                        out = (max(-vxm[i], 0.0) * wx[m, i] * dy + max(vxm[i + _U1], 0.0) * wx[m, i + _U1] * dy
                               + max(-vym[i], 0.0) * wy[m, i] * dx + max(vyr[i], 0.0) * wy[m + 1, i] * dx)
                        have = h[m, i] * sa[m, i]
                        sm[i] = have / out if out > have else 1.0
            else:
                sm[:] = 1.0
        # stage 3: continuity of row k-2 over its cell spans (cells and faces outside them keep their values)
        m = k - 2
        if m < r0 or m > ny:
            continue
        s_up = wk[4 * _S + (m - 1) % _S]
        s_m = wk[4 * _S + m % _S]
        s_dn = wk[4 * _S + (m + 1) % _S]
        qxm = wk[m % _S]
        qym = wk[_S + m % _S]
        qys = wk[_S + (m + 1) % _S]
        vxm = wk[2 * _S + m % _S]
        vym = wk[3 * _S + m % _S]
        vys = wk[3 * _S + (m + 1) % _S]
        slot = _slot(m, r0, r1) if defer else -1
        if slot >= 0:
            hrow = side_h[c, slot]
            qxrow = side_qx[c, slot]
            qyrow = side_qy[c, slot]
            for p in range(cn[m]):
                a = cs[m, p, 0]
                b = cs[m, p, 1]
                hrow[a:b + 1] = h[m, a:b + 1]
                qxrow[a:b + 2] = qx[m, a:b + 2]
                qyrow[a:b + 1] = qy[m, a:b + 1]
        else:
            hrow = h[m]
            qxrow = qx[m]
            qyrow = qy[m]
        for p in range(cn[m]):
            a = cs[m, p, 0]
            b = cs[m, p, 1]
            ua = np.uint64(a)
            n = b + 1 - a
            for j in range(n):
                i = ua + np.uint64(j)
                v = vym[i]
                ey[i] = v * (s_up[i] if v > 0.0 else s_m[i])
            for j in range(n):
                i = ua + np.uint64(j)
                v = vys[i]
                ey_next[i] = v * (s_m[i] if v > 0.0 else s_dn[i])
            for j in range(n + 1):
                i = ua + np.uint64(j)
                v = vxm[i]
                ex[i] = v * (s_m[i - _U1] if v > 0.0 else s_m[i])
            for j in range(n + 1):
                i = ua + np.uint64(j)
                q = qxm[i]
                qs = q * (s_m[i - _U1] if q > 0.0 else s_m[i])
                qxrow[i] = qs if min(mult[m, i - _U1], mult[m, i]) <= pc else qxrow[i]
            for j in range(n):
                i = ua + np.uint64(j)
                q = qym[i]
                qs = q * (s_up[i] if q > 0.0 else s_m[i])
                qyrow[i] = qs if min(mult[m - 1, i], mult[m, i]) <= pc else qyrow[i]
            if m == ny:
                for j in range(n):
                    i = ua + np.uint64(j)
                    q = qys[i]
                    qs = q * (s_m[i] if q > 0.0 else s_dn[i])
                    qy[m + 1, i] = qs if mult[m, i] <= pc else qy[m + 1, i]
            for j in range(n):
                i = ua + np.uint64(j)
                ar = sa[m, i]
                mc = mult[m, i]
                dtc = dt0 * mc if mc <= pc else 0.0
                net = (ex[i] * wx[m, i] - ex[i + _U1] * wx[m, i + _U1]) * dy + (
                    ey[i] * wy[m, i] - ey_next[i] * wy[m + 1, i]) * dx
                d, ld, li, neg = _settle(hrow[i] * ar + net + dtc * rain_rate * rain_arr[m, i], ar,
                                         drain[m, i] * dtc, infil[m, i] * dtc)
                v_drain += ld
                v_infil += li
                v_clamp += neg
                d = d if (dtc > 0.0) | (net != 0.0) else hrow[i]  # nothing fired: keep h, not h a / a
                hrow[i] = d
                hm, first = _mark(hmax[m, i], d, depth_mark)
                hmax[m, i] = hm
                t15[m, i] = t_sub + max(dtc, dt0) if first > 0.0 else t15[m, i]
                top_bits = max(top_bits, _bits(d))
                bad += not (d < 1.0e6)
            # boundary outflow through the fired open faces this row owns (x faces, the faces north of it; the
            # last row also the faces south of it): the inner cell of each is in this span if the face fired
            for bb in range(bx_ptr[m], bx_ptr[m + 1]):
                i = bx_i[bb]
                if a <= i <= b + 1:
                    v_out += abs(ex[i]) * wx[m, i] * dy
            for bb in range(by_ptr[m], by_ptr[m + 1]):
                i = by_i[bb]
                if a <= i <= b:
                    v_out += abs(ey[i]) * wy[m, i] * dx
            if m == ny:
                for bb in range(by_ptr[m + 1], by_ptr[m + 2]):
                    i = by_i[bb]
                    if a <= i <= b:
                        v_out += abs(ey_next[i]) * wy[m + 1, i] * dx
    acc[c, 1] += v_drain
    acc[c, 2] += v_infil
    acc[c, 3] += v_out
    acc[c, 5] += v_clamp
    chunk_hmax[c] = _from_bits(top_bits) if bad == 0 else -1.0


@njit(**_JIT)
def _write_back(bounds, cs, cn, h, qx, qy, side_h, side_qx, side_qy):  # pragma: no cover - compiled
    """Copy the side rows of every chunk (their spans) into h, qx, qy."""
    for c in range(bounds.shape[0] - 1):
        r0 = bounds[c]
        r1 = bounds[c + 1]
        for m in range(r0, r1):
            slot = _slot(m, r0, r1)
            if slot < 0:
                continue
            for p in range(cn[m]):
                a = cs[m, p, 0]
                b = cs[m, p, 1]
                h[m, a:b + 1] = side_h[c, slot, a:b + 1]
                qx[m, a:b + 2] = side_qx[c, slot, a:b + 2]
                qy[m, a:b + 1] = side_qy[c, slot, a:b + 1]


@njit(parallel=True, **_JIT_PARALLEL)
def _step_parallel(order, z, h, qx, qy, sa, wx, wy, n2, mult, pc, rain_arr, drain, infil, hmax, t15,
                   bx_ptr, bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, cs, cn, fs, fn, nx, dx, dy, dt0,
                   theta, hmin, rain_rate, t_sub, depth_mark, work, side_h, side_qx, side_qy, acc,
                   chunk_hmax):  # pragma: no cover
    """One finest step, the chunks shared among the cores (in `order`: interleaved, so that the contiguous share
    of each thread mixes rows from the whole grid)."""
    for j in prange(order.shape[0]):
        _chunk(order[j], z, h, qx, qy, sa, wx, wy, n2, mult, pc, rain_arr, drain, infil, hmax, t15, bx_ptr, bx_i,
               bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, cs, cn, fs, fn, nx, dx, dy, dt0, theta, hmin,
               rain_rate, t_sub, depth_mark, work, side_h, side_qx, side_qy, True, acc, chunk_hmax)


@njit(**_JIT)
def block_max(h, qx, qy, bsz, hvel, row, bmax):  # pragma: no cover - compiled
    """For each block into bmax (nby, nbx) the largest "wave depth" of its cells, `(sqrt(g h) + |u|)^2 / g` (the
    depth whose gravity wave is as fast as the cell's fastest signal: the full shallow-water CFL; |u| from the mean
    discharges through the cell's two faces in each direction, counted where h > hvel); returns the deepest water
    of all, or -1 if a depth is not finite or above 1 km (the solver's instability mark)."""
    ny = h.shape[0] - 2
    nx = h.shape[1] - 2
    nby, nbx = bmax.shape
    bmax[:, :] = 0.0
    bad = 0
    top_bits = np.int64(0)
    for k in range(1, ny + 1):
        for i in range(1, nx + 1):
            d = h[k, i]
            ux = 0.5 * (abs(qx[k, i]) + abs(qx[k, i + 1]))
            uy = 0.5 * (abs(qy[k, i]) + abs(qy[k + 1, i]))
            fast = d > hvel
            u = math.sqrt(ux * ux + uy * uy) / (d if fast else 1.0)
            c = math.sqrt(G * d) + (u if fast else 0.0)
            row[i] = c * c * (1.0 / G)
            top_bits = max(top_bits, _bits(d))
            bad += not (d < 1.0e6)
        bj = (k - 1) // bsz
        for bi in range(nbx):
            top = bmax[bj, bi]
            for i in range(1 + bi * bsz, min(nx, (bi + 1) * bsz) + 1):
                top = max(top, row[i])
            bmax[bj, bi] = top
    if bad:
        return -1.0
    return _from_bits(top_bits)


@njit(**_JIT)
def assign_levels(bmax, levels, dt0, cfl, cell, dt_max, lvb):  # pragma: no cover - compiled
    """Block levels for a macro step: the largest L <= levels with 2^L dt0 within the CFL step of the block's
    wave depth `bmax` (`block_max`), or half that of one of its eight neighbours if more; then neighbours at most
    one level apart. Returns the largest level."""
    nby, nbx = lvb.shape
    for bj in range(nby):
        for bi in range(nbx):
            hb = bmax[bj, bi]
            for dj in range(-1, 2):
                for di in range(-1, 2):
                    j = bj + dj
                    i = bi + di
                    if 0 <= j < nby and 0 <= i < nbx:
                        hb = max(hb, 0.5 * bmax[j, i])
            allowed = dt_max if hb <= 0.0 else min(dt_max, cfl * cell / math.sqrt(G * hb))
            lev = 0
            while lev < levels and dt0 * (1 << (lev + 1)) <= allowed * (1.0 + 1e-12):
                lev += 1
            lvb[bj, bi] = lev
    changed = True
    while changed:
        changed = False
        for bj in range(nby):
            for bi in range(nbx):
                lev = lvb[bj, bi]
                if bj > 0:
                    lev = min(lev, lvb[bj - 1, bi] + 1)
                if bj < nby - 1:
                    lev = min(lev, lvb[bj + 1, bi] + 1)
                if bi > 0:
                    lev = min(lev, lvb[bj, bi - 1] + 1)
                if bi < nbx - 1:
                    lev = min(lev, lvb[bj, bi + 1] + 1)
                if lev != lvb[bj, bi]:
                    lvb[bj, bi] = lev
                    changed = True
    return lvb.max()


@njit(inline="always", **_JIT)
def _add(spans, n, row, a, b):  # pragma: no cover - compiled
    """Append [a, b] to the sorted spans of `row` (n of them), merging it with the last if fewer than `_GAP` cells
    lie between them."""
    if n > 0 and a <= spans[row, n - 1, 1] + 1 + _GAP:
        spans[row, n - 1, 1] = max(spans[row, n - 1, 1], b)
        return n
    spans[row, n, 0] = a
    spans[row, n, 1] = b
    return n + 1


@njit(**_JIT)
def spans(lvb, c, bsz, nx, ny, cs, cn, fs, fn):  # pragma: no cover - compiled
    """The spans of finest steps whose firing level is <= c: for each row m, the cells that fire (block level <=
    c) and their four neighbours as sorted disjoint column spans cs[m, :cn[m]]; fs/fn: per row k the union of the
    cell spans of rows k and k-1 (the faces whose values those cells read). Returns the number of cells in the
    cell spans."""
    nby, nbx = lvb.shape
    cn[0] = 0
    cn[ny + 1] = 0
    total = 0
    for m in range(1, ny + 1):
        bj = (m - 1) // bsz
        o = (m - 1) - bj * bsz
        first = o == 0 and bj > 0
        last = o == bsz - 1 and bj + 1 < nby
        n = 0
        for bi in range(nbx):
            c0 = 1 + bi * bsz
            c1 = min(nx, (bi + 1) * bsz)
            if lvb[bj, bi] <= c:
                n = _add(cs, n, m, max(c0 - 1, 1), min(c1 + 1, nx))
            if (first and lvb[bj - 1, bi] <= c) or (last and lvb[bj + 1, bi] <= c):
                n = _add(cs, n, m, c0, c1)
        cn[m] = n
        for p in range(n):
            total += cs[m, p, 1] - cs[m, p, 0] + 1
    for k in range(0, ny + 2):
        n = 0
        p = 0
        q = 0
        na = cn[k]
        nb = cn[k - 1] if k > 0 else 0
        while p < na or q < nb:
            if q >= nb or (p < na and cs[k, p, 0] <= cs[k - 1, q, 0]):
                n = _add(fs, n, k, cs[k, p, 0], cs[k, p, 1])
                p += 1
            else:
                n = _add(fs, n, k, cs[k - 1, q, 0], cs[k - 1, q, 1])
                q += 1
        fn[k] = n
    return total


@njit(**_JIT)
def cell_multipliers(lvb, bsz, mult):  # pragma: no cover - compiled
    """mult[k, i] = 2^level of the block of cell (k, i) (the outside ring keeps its `_MOUT`)."""
    ny = mult.shape[0] - 2
    nx = mult.shape[1] - 2
    for k in range(1, ny + 1):
        bj = (k - 1) // bsz
        for i in range(1, nx + 1):
            mult[k, i] = float(1 << lvb[bj, (i - 1) // bsz])


@njit(**_JIT_ENTRY)
def advance_lts(z, h, qx, qy, sa, wx, wy, n2, rain_arr, rain_sum, drain, infil, hmax, t15,
                bx_ptr, bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, order, nx, dx, dy, t, t_stop, cfl,
                dt_max, theta, hmin, rain_rate, depth_mark, src_cell, src_rate, levels, bsz, hvel, lvb, lvb_old,
                bmax, mult, cs, cn, fs, fn, ctot, work, side_h, side_qx, side_qy, acc, chunk_hmax,
                max_steps):  # pragma: no cover
    """Advance from t to t_stop by macro steps of 2^L_max finest steps, in place; returns (t, finest steps,
    cell-steps in spans, last dt0); finest steps < 0: unstable. `lvb_old` holds the levels the spans were made for
    (-1: none yet)."""
    ny = z.shape[0] - 2
    cell = min(dx, dy)
    steps = 0
    updates = 0.0
    dt0 = dt_max
    row = np.empty(nx + 2)
    while t < t_stop and steps < max_steps:
        top = block_max(h, qx, qy, bsz, hvel, row, bmax)
        if top < 0.0:
            return t, -max(steps, 1), updates, dt0
        dt0 = dt_max if top <= 0.0 else min(dt_max, cfl * cell / math.sqrt(G * top))
        lmax = assign_levels(bmax, levels, dt0, cfl, cell, dt_max, lvb)
        nsub = 1 << lmax
        if t_stop - t < dt0 * nsub * (1.0 + 1e-9):
            dt0 = (t_stop - t) / nsub
        same = True
        for bj in range(lvb.shape[0]):
            for bi in range(lvb.shape[1]):
                if lvb[bj, bi] != lvb_old[bj, bi]:
                    same = False
        if not same:
            cell_multipliers(lvb, bsz, mult)
            for c in range(levels + 1):
                ctot[c] = spans(lvb, c, bsz, nx, ny, cs[c], cn[c], fs[c], fn[c])
            lvb_old[:, :] = lvb
        for sub in range(nsub):
            c = lmax
            if sub > 0:
                c = 0
                while (sub >> c) & 1 == 0:
                    c += 1
            pc = float(1 << c)
            for k in range(src_cell.shape[0]):  # point inflows: adding water keeps depths >= 0
                j = src_cell[k] // (nx + 2)
                i = src_cell[k] - j * (nx + 2)
                h[j, i] += src_rate[k] * dt0 / sa[j, i]
                acc[0, 4] += src_rate[k] * dt0
            t_sub = t + sub * dt0
            _step_parallel(order, z, h, qx, qy, sa, wx, wy, n2, mult, pc, rain_arr, drain, infil, hmax, t15, bx_ptr,
                           bx_i, bx_dir, bx_s, by_ptr, by_i, by_dir, by_s, bounds, cs[c], cn[c], fs[c], fn[c], nx, dx,
                           dy, dt0, theta, hmin, rain_rate, t_sub, depth_mark, work, side_h, side_qx, side_qy, acc,
                           chunk_hmax)
            _write_back(bounds, cs[c], cn[c], h, qx, qy, side_h, side_qx, side_qy)
            steps += 1
            updates += ctot[c]
            for j in range(chunk_hmax.shape[0]):
                if chunk_hmax[j] < 0.0 or chunk_hmax[j] != chunk_hmax[j]:
                    return t_sub + dt0, -steps, updates, dt0
        acc[0, 0] += rain_rate * rain_sum * dt0 * nsub
        t += dt0 * nsub
    return t, steps, updates, dt0


def chunk_order(nchunks: int, threads: int) -> np.ndarray:
    """Chunk indices interleaved by thread: numba hands each thread a contiguous share of a `prange`, and deep
    water (fine levels, more work) is not spread evenly over the rows."""
    k = max(1, threads)
    return np.concatenate([np.arange(t, nchunks, k) for t in range(k)]).astype(np.int64)


def work_buffers(nchunks: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row buffers of the chunks (limiter rows start at 1: the rows around a span read a few outside it) and their
    side rows for h, qx, qy (`solver.side_rows`)."""
    w = np.zeros((nchunks, _WORK_ROWS, nx + 3))
    w[:, 4 * _S:5 * _S] = 1.0
    return (w, *side_rows(nchunks, nx))
