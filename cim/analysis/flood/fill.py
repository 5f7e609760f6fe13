"""The static model: depression filling and fill-spill-merge on the DEM grid.

`fill_depressions` is Priority-Flood (Barnes, Lehman & Mulla 2014, Computers & Geosciences 62, 117-127, algorithm 2:
a priority queue seeded with the outlets plus a plain queue for cells inside depressions): every cell is raised to
the lowest level at which water could leave it for an outlet.

`fill_spill_merge` places a given depth of water (rain minus losses, per cell) the way it would settle: water runs
into the depression its cell drains to; a depression that overflows spills into its neighbour across its lowest
saddle; two full neighbours merge into one pond that fills above the saddle; water spilling into an outlet leaves
(Barnes, Callaghan & Wickert 2021, Earth Surf. Dynam. 9, 105-121, "Fill-Spill-Merge"). Implementation:

1. **Watersheds by flooding**: a priority flood seeded with every local minimum (and, with open boundaries, the
   outlets: cells beside the outside) labels each cell with the depression it drains to. Where two labels touch,
   the higher of the two cells' elevations is a saddle candidate; each pair of labels keeps its lowest.
2. **Depression hierarchy**: the saddles in rising order merge labels (Kruskal, union-find). Two depressions meeting
   at a saddle become the children of a new depression; one meeting the outlets drains out there.
3. **Capacities**: one sweep over the cells in rising order, interleaved with the saddles, sums the area and area x
   elevation of every depression below each saddle, so its volume at its outlet is `s * area - sum(area * z)`.
4. **Water**, in the order the depressions were merged: a depression's water beyond its capacity pours into its
   sibling (entering at the leaf on the sibling's side of the saddle and spilling onward inside it as needed); what
   neither holds pools in the parent above the saddle; what reaches an outlet leaves.
5. **Levels**: each depression with a pool gets the level where its volume curve meets its water.

Cells are open ground, porous (a smaller storage area) or walls (buildings: not part of the graph). Connectivity is
4 (the neighbours the dynamic solver exchanges water with, so both models agree) or 8 (what the hydrological
peers use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

_JIT = {"cache": True}
_OCEAN = 1


# -------------------------------------------------------------------------------------------------- priority queue


@njit(inline="always", **_JIT)
def _less(ka, sa, kb, sb):  # pragma: no cover
    return ka < kb or (ka == kb and sa < sb)


@njit(**_JIT)
def _push(hk, hs, hv, size, key, seq, val):  # pragma: no cover
    """Push onto the binary min-heap (key, then insertion order); returns the new size."""
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if _less(key, seq, hk[p], hs[p]):
            hk[i] = hk[p]
            hs[i] = hs[p]
            hv[i] = hv[p]
            i = p
        else:
            break
    hk[i] = key
    hs[i] = seq
    hv[i] = val
    return size + 1


@njit(**_JIT)
def _pop(hk, hs, hv, size):  # pragma: no cover
    """Pop the smallest; returns (value, key, new size)."""
    val = hv[0]
    key = hk[0]
    size -= 1
    lk = hk[size]
    ls = hs[size]
    lv = hv[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _less(hk[c + 1], hs[c + 1], hk[c], hs[c]):
            c += 1
        if _less(hk[c], hs[c], lk, ls):
            hk[i] = hk[c]
            hs[i] = hs[c]
            hv[i] = hv[c]
            i = c
        else:
            break
    hk[i] = lk
    hs[i] = ls
    hv[i] = lv
    return val, key, size


@njit(inline="always", **_JIT)
def _offsets(nx, connectivity):  # pragma: no cover
    if connectivity == 8:
        return np.array([-nx - 1, -nx, -nx + 1, -1, 1, nx - 1, nx, nx + 1]), np.array([-1, 0, 1, -1, 1, -1, 0, 1])
    return np.array([-nx, -1, 1, nx]), np.array([0, -1, 1, 0])


# ------------------------------------------------------------------------------------------------- Priority-Flood


@njit(**_JIT)
def _priority_flood(z, active, seed, nx, connectivity):  # pragma: no cover
    """Barnes et al. 2014 algorithm 2 on flat arrays; returns the filled surface (NaN where not active)."""
    n = z.size
    off, doff = _offsets(nx, connectivity)
    filled = np.full(n, np.nan)
    closed = np.zeros(n, np.bool_)
    hk = np.empty(n)
    hs = np.empty(n, np.int64)
    hv = np.empty(n, np.int64)
    size = 0
    seq = 0
    pit = np.empty(n, np.int64)
    ph = 0
    pt = 0
    for c in range(n):
        if seed[c]:
            closed[c] = True
            filled[c] = z[c]
            size = _push(hk, hs, hv, size, z[c], seq, c)
            seq += 1
    while size > 0 or pt > ph:
        if pt > ph:
            c = pit[ph]
            ph += 1
        else:
            c, _, size = _pop(hk, hs, hv, size)
        col = c % nx
        for k in range(off.size):
            dc = doff[k]
            if (dc < 0 and col == 0) or (dc > 0 and col == nx - 1):
                continue
            m = c + off[k]
            if m < 0 or m >= n or closed[m] or not active[m]:
                continue
            closed[m] = True
            if z[m] <= filled[c]:
                filled[m] = filled[c]
                pit[pt] = m
                pt += 1
            else:
                filled[m] = z[m]
                size = _push(hk, hs, hv, size, z[m], seq, m)
                seq += 1
    return filled


def _outlets(active: np.ndarray, connectivity: int) -> np.ndarray:
    """Cells of `active` on the raster's edge or next to a cell that is not (the outside)."""
    pad = np.pad(active, 1, constant_values=False)
    out = np.zeros_like(active)
    ny, nx = active.shape
    shifts = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        shifts += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    for dj, di in shifts:
        out |= ~pad[1 + dj: 1 + dj + ny, 1 + di: 1 + di + nx]
    return out & active


def fill_depressions(z: np.ndarray, *, connectivity: int = 4, walls: np.ndarray | None = None) -> np.ndarray:
    """Raise every depression to its spill level (Priority-Flood); water leaves at the edge and beside nodata.

    Args:
        z: (ny, nx) elevation, NaN for nodata.
        connectivity: 4 or 8 neighbours.
        walls: (ny, nx) bool, impassable cells (buildings); neither filled nor outlets.

    Returns:
        (ny, nx) float64 filled surface, NaN where `z` is NaN or a wall.
    """
    z = np.asarray(z, np.float64)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    valid = np.isfinite(z)
    active = valid if walls is None else valid & ~walls
    outside = ~valid
    seed = _outlets(~outside, connectivity) & active
    filled = _priority_flood(np.where(valid, z, 0.0).ravel(), active.ravel(), seed.ravel(), z.shape[1],
                             connectivity)
    return filled.reshape(z.shape)


# --------------------------------------------------------------------------------------------- watershed labels


@njit(**_JIT)
def _label(z, active, ocean, nx, connectivity):  # pragma: no cover
    """Priority flood from every local minimum and the outlets; returns (labels, pair keys, pair saddles, count).

    Label 1 is the outside (outlets), 0 a cell not in the graph; minima get 2, 3, ... as they are reached.
    """
    n = z.size
    off, doff = _offsets(nx, connectivity)
    label = np.zeros(n, np.int64)
    done = np.zeros(n, np.bool_)
    cap = 2 * n + 1
    hk = np.empty(cap)
    hs = np.empty(cap, np.int64)
    hv = np.empty(cap, np.int64)
    size = 0
    seq = 0
    for c in range(n):
        if not active[c]:
            continue
        if ocean[c]:
            label[c] = _OCEAN
            size = _push(hk, hs, hv, size, z[c], seq, c)
            seq += 1
            continue
        col = c % nx
        lowest = True
        for k in range(off.size):
            dc = doff[k]
            if (dc < 0 and col == 0) or (dc > 0 and col == nx - 1):
                continue
            m = c + off[k]
            if 0 <= m < n and active[m] and z[m] < z[c]:
                lowest = False
                break
        if lowest:
            size = _push(hk, hs, hv, size, z[c], seq, c)
            seq += 1
    # every contact between two labels, reduced to the lowest per pair at the end (arrays, not a typed dict: the
    # dict costs seconds of compilation and is slower)
    pk = np.empty(max(16, n // 8), np.int64)
    pv = np.empty(max(16, n // 8))
    npairs = 0
    nlab = 2
    while size > 0:
        c, _, size = _pop(hk, hs, hv, size)
        if done[c]:
            continue
        done[c] = True
        if label[c] == 0:
            label[c] = nlab
            nlab += 1
        lc = label[c]
        col = c % nx
        for k in range(off.size):
            dc = doff[k]
            if (dc < 0 and col == 0) or (dc > 0 and col == nx - 1):
                continue
            m = c + off[k]
            if m < 0 or m >= n or not active[m]:
                continue
            lm = label[m]
            if lm == 0:
                label[m] = lc
                size = _push(hk, hs, hv, size, z[m], seq, m)
                seq += 1
            elif lm != lc:
                a = min(lc, lm)
                b = max(lc, lm)
                if npairs == pk.size:
                    pk2 = np.empty(2 * pk.size, np.int64)
                    pv2 = np.empty(2 * pk.size)
                    pk2[:npairs] = pk[:npairs]
                    pv2[:npairs] = pv[:npairs]
                    pk, pv = pk2, pv2
                pk[npairs] = a * 2147483648 + b
                pv[npairs] = max(z[c], z[m])
                npairs += 1
    order = np.argsort(pk[:npairs], kind="mergesort")
    keys = np.empty(npairs, np.int64)
    vals = np.empty(npairs)
    nk = 0
    for j in range(npairs):
        k = pk[order[j]]
        v = pv[order[j]]
        if nk > 0 and keys[nk - 1] == k:
            if v < vals[nk - 1]:
                vals[nk - 1] = v
        else:
            keys[nk] = k
            vals[nk] = v
            nk += 1
    return label, keys[:nk], vals[:nk], nlab


# ------------------------------------------------------------------------------------------ hierarchy and water


@njit(inline="always", **_JIT)
def _find(uf, a):  # pragma: no cover
    r = a
    while uf[r] != r:
        r = uf[r]
    while uf[a] != r:
        nxt = uf[a]
        uf[a] = r
        a = nxt
    return r


@njit(**_JIT)
def _deposit(own, total, parent, node, t):  # pragma: no cover
    own[node] += t
    a = node
    while a >= 0:
        total[a] += t
        a = parent[a]


@njit(**_JIT)
def _room(node, own, total, cap, child1, child2):  # pragma: no cover
    """Room left in the node's own range (leaf: up to its outlet; internal: between the saddle and its outlet)."""
    if child1[node] < 0:
        return cap[node] - own[node]
    return cap[node] - cap[child1[node]] - cap[child2[node]] - own[node]


@njit(**_JIT)
def _pour(leaf, x, own, total, cap, parent, child1, child2, entry, stack, eps):  # pragma: no cover
    """Add `x` of water at a leaf of a settled tree, spilling onward inside it; returns what its root cannot hold.

    Rooms and amounts up to `eps` (rounding of the volumes summed so far) count as none: a crumb stays where it is.
    """
    stack[0, 0] = leaf
    stack[0, 1] = x
    sp = 1
    left = 0.0
    first = True
    while sp > 0:
        sp -= 1
        node = np.int64(stack[sp, 0])
        x = stack[sp, 1]
        main = first
        first = False
        while x > 0:
            room = _room(node, own, total, cap, child1, child2)
            if room > eps:
                t = min(x, room)
                _deposit(own, total, parent, node, t)
                x -= t
            if x <= eps:
                if x > 0:
                    _deposit(own, total, parent, node, x)
                break
            p = parent[node]
            if p < 0:  # the root is full: the rest leaves the tree
                if main:
                    left += x
                else:  # a sibling pour never exceeds the sibling's room; keep rounding crumbs there
                    _deposit(own, total, parent, node, x)
                break
            sib = child1[p] if child2[p] == node else child2[p]
            sroom = cap[sib] - total[sib]
            if sroom > eps:
                t = min(x, sroom)
                stack[sp, 0] = entry[sib]
                stack[sp, 1] = t
                sp += 1
                x -= t
            node = p
    return left


@njit(**_JIT)
def _hierarchy(z, area, label, nlab, water, ekeys, evals, order_cells, eps):  # pragma: no cover
    """Kruskal over the saddles with the capacity sweep and the water settling; see the module docstring.

    Returns per node (leaves are labels 2..nlab-1, then merged nodes): parent, children, capacity, own water,
    base area and base area x z (at the saddle that created it), its owned cells' pointer, and the outflow.
    """
    maxn = 2 * nlab + 2
    parent = np.full(maxn, -1, np.int64)
    child1 = np.full(maxn, -1, np.int64)
    child2 = np.full(maxn, -1, np.int64)
    entry = np.zeros(maxn, np.int64)
    cap = np.full(maxn, np.inf)
    own = np.zeros(maxn)
    total = np.zeros(maxn)
    na = np.zeros(maxn)
    nz = np.zeros(maxn)
    base_a = np.zeros(maxn)
    base_z = np.zeros(maxn)
    uf = np.arange(maxn)
    node_of = np.arange(maxn)  # union-find root -> hierarchy node currently representing it
    owner = np.full(order_cells.size, -1, np.int64)
    for i in range(order_cells.size):
        c = order_cells[i]
        lab = label[c]
        if lab >= 2:
            own[lab] += water[c]
            total[lab] += water[c]
    outflow = 0.0
    for c in range(label.size):
        if label[c] == _OCEAN:
            outflow += water[c]
    nxt = nlab
    p = 0
    stack = np.zeros((maxn + 1, 2))
    order = np.argsort(evals, kind="mergesort")
    for e in range(order.size):
        key = ekeys[order[e]]
        s = evals[order[e]]
        la = key // 2147483648
        lb = key - la * 2147483648
        # sweep: every cell strictly below the saddle joins the depression its label now belongs to
        while p < order_cells.size and z[order_cells[p]] < s:
            c = order_cells[p]
            if label[c] >= 2:
                root = _find(uf, label[c])
                if root != _OCEAN:
                    r = node_of[root]
                    na[r] += area[c]
                    nz[r] += area[c] * z[c]
                    owner[p] = r
            p += 1
        ra = _find(uf, la)
        rb = _find(uf, lb)
        if ra == rb:
            continue
        if ra == _OCEAN or rb == _OCEAN:
            # a depression reaching the outlets' side: its excess runs down into the depression there (which
            # drains to an outlet itself) and what that cannot hold leaves the grid
            x = node_of[rb] if ra == _OCEAN else node_of[ra]
            other = la if ra == _OCEAN else lb
            cap[x] = s * na[x] - nz[x]
            ex = total[x] - cap[x]
            if ex > eps:
                own[x] -= ex
                total[x] -= ex
                if other != _OCEAN:
                    ex = _pour(other, ex, own, total, cap, parent, child1, child2, entry, stack, eps)
                outflow += ex
            uf[rb if ra == _OCEAN else ra] = _OCEAN
            continue
        a = node_of[ra]
        b = node_of[rb]
        cap[a] = s * na[a] - nz[a]
        cap[b] = s * na[b] - nz[b]
        entry[a] = la
        entry[b] = lb
        ex_a = total[a] - cap[a]
        ex_b = total[b] - cap[b]
        if ex_a > eps and ex_b < -eps:
            m = min(ex_a, -ex_b)
            own[a] -= m
            total[a] -= m
            ex_a -= m - _pour(lb, m, own, total, cap, parent, child1, child2, entry, stack, eps)
        elif ex_b > eps and ex_a < -eps:
            m = min(ex_b, -ex_a)
            own[b] -= m
            total[b] -= m
            ex_b -= m - _pour(la, m, own, total, cap, parent, child1, child2, entry, stack, eps)
        pnode = nxt
        nxt += 1
        pool = 0.0
        if ex_a > eps:
            own[a] -= ex_a
            total[a] -= ex_a
            pool += ex_a
        if ex_b > eps:
            own[b] -= ex_b
            total[b] -= ex_b
            pool += ex_b
        parent[a] = pnode
        parent[b] = pnode
        child1[pnode] = a
        child2[pnode] = b
        own[pnode] = pool
        total[pnode] = total[a] + total[b] + pool
        na[pnode] = na[a] + na[b]
        nz[pnode] = nz[a] + nz[b]
        base_a[pnode] = na[pnode]
        base_z[pnode] = nz[pnode]
        uf[rb] = ra
        node_of[ra] = pnode
    # the rest of the cells belong to depressions that never reach an outlet (closed basins keep everything)
    while p < order_cells.size:
        c = order_cells[p]
        if label[c] >= 2:
            root = _find(uf, label[c])
            if root != _OCEAN:
                owner[p] = node_of[root]
        p += 1
    return parent[:nxt], child1[:nxt], child2[:nxt], cap[:nxt], own[:nxt], base_a[:nxt], base_z[:nxt], owner, \
        outflow


@njit(**_JIT)
def _levels(z, area, order_cells, owner, own, cap, child1, child2, base_a, base_z, nnodes, eps):  # pragma: no cover
    """Water level of every node with its own pool (-inf for the others)."""
    level = np.full(nnodes, -np.inf)
    # owned cells grouped by node, in rising elevation
    count = np.zeros(nnodes + 1, np.int64)
    for p in range(owner.size):
        if owner[p] >= 0:
            count[owner[p] + 1] += 1
    start = np.cumsum(count)
    fill = start[:-1].copy()
    cells = np.empty(start[-1], np.int64)
    for p in range(owner.size):
        o = owner[p]
        if o >= 0:
            cells[fill[o]] = order_cells[p]
            fill[o] += 1
    for node in range(nnodes):
        if own[node] <= eps:
            continue
        target = own[node]
        if child1[node] >= 0:
            target += cap[child1[node]] + cap[child2[node]]
        a = base_a[node]
        az = base_z[node]
        eta = -np.inf
        for k in range(start[node], start[node + 1]):
            c = cells[k]
            if a > 0:
                eta = (target + az) / a
                if eta <= z[c]:
                    break
            a += area[c]
            az += area[c] * z[c]
            eta = (target + az) / a
        level[node] = eta
    return level


@njit(**_JIT)
def _cell_depths(z, label, parent, own, level, nnodes, eps):  # pragma: no cover
    """Depth per cell: the level of the highest pool covering the cell's depression, minus its elevation."""
    eff = np.full(nnodes, -np.inf)
    covered = np.zeros(nnodes, np.bool_)
    for node in range(nnodes - 1, 1, -1):  # parents are created after their children
        p = parent[node]
        if p >= 0 and (own[p] > eps or covered[p]):
            covered[node] = True
            eff[node] = eff[p]
        elif own[node] > eps:
            eff[node] = level[node]
    depth = np.zeros(z.size)
    for c in range(z.size):
        lab = label[c]
        if lab >= 2:
            d = eff[lab] - z[c]
            if d > 0:
                depth[c] = d
    return depth


@dataclass
class StaticResult:
    """Water settled by fill-spill-merge.

    Attributes:
        depth: (ny, nx) float64 ponding depth (m), 0 on dry cells, walls and nodata.
        level: (ny, nx) float64 water surface (m), NaN where dry.
        water_in: volume placed on the grid (m³).
        stored: volume held in depressions (m³).
        outflow: volume that reached an outlet (m³).
        depressions: number of leaf depressions (local minima regions).
    """

    depth: np.ndarray
    level: np.ndarray
    water_in: float
    stored: float
    outflow: float
    depressions: int


def fill_spill_merge(z: np.ndarray, water: np.ndarray | float, *, cell_area: float, porosity: np.ndarray | None = None,
                     walls: np.ndarray | None = None, open_boundary: bool = True,
                     connectivity: int = 4) -> StaticResult:
    """Settle water on the terrain (see the module docstring).

    Args:
        z: (ny, nx) elevation, NaN for nodata (outside the domain).
        water: water volume per cell (m³), scalar or (ny, nx), where it lands (roof water already moved to the
            ground cell it reaches); on walls and nodata it is ignored.
        cell_area: area of one cell (m²).
        porosity: (ny, nx) storage fraction of each cell (default 1).
        walls: (ny, nx) bool, impassable cells.
        open_boundary: water reaching a cell beside the outside leaves (True) or the domain is closed (False).
        connectivity: 4 or 8.

    Returns:
        a `StaticResult`.
    """
    z = np.asarray(z, np.float64)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    valid = np.isfinite(z)
    active = valid if walls is None else valid & ~walls
    phi = np.ones(z.shape) if porosity is None else np.clip(np.asarray(porosity, np.float64), 0.0, 1.0)
    active &= phi > 0
    area = np.where(active, phi * cell_area, 0.0)
    w = np.where(active, np.broadcast_to(np.asarray(water, np.float64), z.shape), 0.0)
    ocean = _outlets(valid, connectivity) & active if open_boundary else np.zeros_like(active)
    # volumes are computed from elevations above the lowest cell: smaller numbers, smaller rounding
    base = float(np.nanmin(np.where(active, z, np.nan))) if active.any() else 0.0
    zf = np.where(valid, z - base, 0.0).ravel()
    label, keys, vals, nlab = _label(zf, active.ravel(), ocean.ravel(), z.shape[1], connectivity)
    order_cells = np.argsort(zf, kind="stable")
    order_cells = order_cells[active.ravel()[order_cells]]
    # volumes are sums of many cells: differences below this are rounding, not water
    eps = 1e-13 * (float(w.sum()) + float((zf * area.ravel()).sum())) + 1e-15
    parent, child1, child2, cap, own, base_a, base_z, owner, outflow = _hierarchy(
        zf, area.ravel(), label, nlab, w.ravel(), keys, vals, order_cells, eps)
    nnodes = parent.size
    level = _levels(zf, area.ravel(), order_cells, owner, own, cap, child1, child2, base_a, base_z, nnodes, eps)
    depth = _cell_depths(zf, label, parent, own, level, nnodes, eps).reshape(z.shape)
    depth[~active] = 0.0
    stored = float((depth * area).sum())
    return StaticResult(depth, np.where(depth > 0, z + depth, np.nan), float(w.sum()), stored, float(outflow),
                        int(nlab - 2))
