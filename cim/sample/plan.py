"""The street plan and lots: road grid, old town, river, blocks and their zones (grows with the number of
buildings), blocks cut into lots clear of roads, river and wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely import STRtree

from cim.sample.common import _BASE_SIDE, _GRID, _LOT, _Z, ZONES, _center, _names, _pool, _rng


@dataclass
class _Roads:
    """Road centre lines (axis-aligned segments). Arrays (n,): x0, y0, x1, y1, width float64; cls, name object."""

    x0: list[float] = field(default_factory=list)
    y0: list[float] = field(default_factory=list)
    x1: list[float] = field(default_factory=list)
    y1: list[float] = field(default_factory=list)
    width: list[float] = field(default_factory=list)
    cls: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)

    def add(self, x0: float, y0: float, x1: float, y1: float, width: float, cls: str, name: str) -> None:
        for lst, v in zip((self.x0, self.y0, self.x1, self.y1, self.width, self.cls, self.name),
                          (x0, y0, x1, y1, width, cls, name)):
            lst.append(v)

    def lines(self) -> np.ndarray:
        coords = np.stack([np.column_stack([self.x0, self.y0]), np.column_stack([self.x1, self.y1])], axis=1)
        return shapely.linestrings(coords)

    def surfaces(self) -> np.ndarray:
        return shapely.buffer(self.lines(), np.asarray(self.width) / 2, cap_style="flat")


@dataclass
class _Plan:
    """The layout of a city of side `side` m with its lower-left corner at (x0, y0) in EPSG:4547."""

    side: float
    x0: float
    y0: float
    cx: float  # old-town centre (crossing of its main streets)
    cy: float
    rx: float  # mean x of the river
    river_phase: float
    roads: _Roads
    walls: list[Any]
    blocks: dict[str, np.ndarray]  # bx0, by0, bx1, by1, lw, lh, zone, group
    groups: dict[str, np.ndarray]  # gx0, gy0, gx1, gy1, zone, key (keep priority)
    parks: list[tuple[Any, str]]
    comm_x: np.ndarray
    comm_y: np.ndarray

    river_amp = 40.0
    river_wave = 1100.0
    river_half = 30.0
    bank = 10.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    def river_x(self, y: np.ndarray) -> np.ndarray:
        """x of the river centre line at northing `y` (any shape, float64)."""
        return self.rx + self.river_amp * np.sin(2 * np.pi * (np.asarray(y) - self.y0) / self.river_wave
                                                 + self.river_phase)

    def river_line(self) -> Any:
        y = np.linspace(self.y0 + self.side, self.y0, int(self.side / 10) + 1)  # flows south
        return shapely.linestrings(np.column_stack([self.river_x(y), y]))

    def river_polygon(self) -> Any:
        return shapely.buffer(self.river_line(), self.river_half, cap_style="flat")


def _plan(side: float, seed: int) -> _Plan:
    """Lay out the city: road grid, walled old town, river, blocks with zones, communities."""
    rng = _rng(seed, 1)
    names = _names()
    ex, ey = _center()
    x0, y0 = ex - side / 2, ey - side / 2
    m = int(round(side / _GRID))
    lines = np.array([_GRID / 2 + _GRID * k for k in range(m)])  # local positions of grid lines
    cxl = _GRID / 2 + _GRID * math.floor((side / 2 - 300 - _GRID / 2) / _GRID)
    cyl = _GRID / 2 + _GRID * math.floor((side / 2 - _GRID / 2) / _GRID)
    cx, cy = x0 + cxl, y0 + cyl
    rx = cx + 700.0
    sq = (cx - 400, cy - 400, cx + 400, cy + 400)  # old-town square (ring-road centre lines)
    xs, ys = x0 + lines, y0 + lines

    def is_main(p: float, c: float) -> bool:
        return abs((p - c) % 400) < 1e-6

    def hw(p: float, c: float) -> float:
        return 18.0 if is_main(p, c) else 10.0

    roads = _Roads()
    pool = names["roads"]
    ns_names = _pool(pool, len(xs))
    ew_names = _pool(pool[len(pool) // 2:] + pool[: len(pool) // 2], len(ys))
    for axis, positions, c, other_c, nm in (("x", xs, cx, cy, ns_names), ("y", ys, cy, cx, ew_names)):
        for p, base in zip(positions, nm):
            main = is_main(p, c)
            width, cls = (36.0, "主干路") if main else (20.0, "次干路")
            name = base + (("大道" if main else "路") if axis == "x" else ("大街" if main else "街"))
            lo, hi = other_c - 400, other_c + 400
            start, end = (y0, y0 + side) if axis == "x" else (x0, x0 + side)
            inside = c - 400 - 1e-6 < p < c + 400 + 1e-6
            ring = abs(abs(p - c) - 400) < 1e-6
            if not inside:
                spans = [(start, end, name)]
            elif ring:
                side_name = {("x", -1): "西环城路", ("x", 1): "东环城路", ("y", -1): "南环城路",
                             ("y", 1): "北环城路"}[(axis, int(np.sign(p - c)))]
                spans = [(start, lo, name), (lo, hi, side_name), (hi, end, name)]
            else:
                spans = [(start, lo, name), (hi, end, name)]
            for a, b, nme in spans:
                if b - a > 1:
                    seg = (p, a, p, b) if axis == "x" else (a, p, b, p)
                    roads.add(*seg, width, cls, nme)
    # old town: main cross streets through the gates, two minor streets each way, lanes in between
    roads.add(cx, cy, cx, cy + 400, 24.0, "主干路", "大北街")
    roads.add(cx, cy - 400, cx, cy, 24.0, "主干路", "大南街")
    roads.add(cx - 400, cy, cx, cy, 24.0, "主干路", "大西街")
    roads.add(cx, cy, cx + 400, cy, 24.0, "主干路", "大东街")
    wall_out, wall_in = 376.0, 362.0
    old_names = names["oldtown_streets"]
    for k, d in enumerate((-200.0, 200.0)):
        roads.add(cx + d, cy - wall_in, cx + d, cy + wall_in, 14.0, "支路", old_names[k])
        roads.add(cx - wall_in, cy + d, cx + wall_in, cy + d, 14.0, "支路", old_names[k + 2])
    ring = shapely.difference(shapely.box(cx - wall_out, cy - wall_out, cx + wall_out, cy + wall_out),
                              shapely.box(cx - wall_in, cy - wall_in, cx + wall_in, cy + wall_in))
    gates = shapely.union(shapely.box(cx - 14, cy - 500, cx + 14, cy + 500),
                          shapely.box(cx - 500, cy - 14, cx + 500, cy + 14))
    walls = sorted(shapely.get_parts(shapely.difference(ring, gates)),
                   key=lambda g: (-round(g.centroid.y), round(g.centroid.x)))

    block_rows: list[tuple[float, float, float, float, float, float, int, int]] = []
    group_rows: list[tuple[float, float, float, float, int]] = []
    # old-town sections between streets and wall; rows of courtyard lots between east-west lanes
    edges = [(-wall_in, -207.0), (-193.0, -12.0), (12.0, 193.0), (207.0, wall_in)]
    lane_names = _pool(names["lanes"], 64, "巷")
    strips: list[tuple[float, float, float, float, int]] = []
    for sy0, sy1 in edges:
        for sx0, sx1 in edges:
            g = len(group_rows)
            group_rows.append((cx + sx0, cy + sy0, cx + sx1, cy + sy1, _Z["courtyard"]))
            n_strips = max(1, int(round((sy1 - sy0) / 46)))
            pitch = (sy1 - sy0) / n_strips
            for k in range(n_strips):
                a = cy + sy0 + k * pitch + (3.0 if k else 0.0)
                b = cy + sy0 + (k + 1) * pitch - (3.0 if k < n_strips - 1 else 0.0)
                strips.append((cx + sx0 + 2, a + 2 * (k == 0), cx + sx1 - 2, b - 2 * (k == n_strips - 1), g))
                if k:
                    lane_y = cy + sy0 + k * pitch
                    roads.add(cx + sx0, lane_y, cx + sx1, lane_y, 6.0, "街巷",
                              lane_names[len([c for c in roads.cls if c == "街巷"]) % len(lane_names)])
    temple_strips = set(rng.choice(len(strips), size=2, replace=False).tolist())
    for k, (a0, b0, a1, b1, g) in enumerate(strips):
        if k in temple_strips:
            block_rows.append((a0, b0, a1, b1, 40.0, (b1 - b0) * 0.999, _Z["temple"], g))
        else:
            mid = (b0 + b1) / 2
            for r0, r1 in ((b0, mid), (mid, b1)):
                block_rows.append((a0, r0, a1, r1, 16.0, (r1 - r0) * 0.999, _Z["courtyard"], g))
    # new district: cells between grid lines
    bx = [x0] + list(xs) + [x0 + side]
    by = [y0] + list(ys) + [y0 + side]
    cells = []
    for j in range(len(by) - 1):
        for i in range(len(bx) - 1):
            a0 = bx[i] + (hw(bx[i], cx) + 6 if i > 0 else 4)
            a1 = bx[i + 1] - (hw(bx[i + 1], cx) + 6 if i + 1 < len(bx) - 1 else 4)
            b0 = by[j] + (hw(by[j], cy) + 6 if j > 0 else 4)
            b1 = by[j + 1] - (hw(by[j + 1], cy) + 6 if j + 1 < len(by) - 1 else 4)
            mx, my = (bx[i] + bx[i + 1]) / 2, (by[j] + by[j + 1]) / 2
            if sq[0] < mx < sq[2] and sq[1] < my < sq[3]:
                continue
            cells.append((a0, b0, a1, b1, bx[i] < rx < bx[i + 1]))
    cells_a = np.array([c[:4] for c in cells])
    river_col = np.array([c[4] for c in cells])
    centre = np.array([cx + 450, cy])
    ccx, ccy = (cells_a[:, 0] + cells_a[:, 2]) / 2, (cells_a[:, 1] + cells_a[:, 3]) / 2
    dist = np.hypot(ccx - centre[0], ccy - centre[1]) / (side / 2) + rng.random(len(cells)) * 0.15
    zone = np.full(len(cells), -1)
    zone[river_col] = _Z["park"]
    free = np.flatnonzero(~river_col)
    n = len(free)
    full = (cells_a[:, 2] - cells_a[:, 0] > 150) & (cells_a[:, 3] - cells_a[:, 1] > 150)
    far = [i for i in free[np.argsort(-dist[free], kind="stable")] if full[i]]
    zone[far[: int(round(0.08 * n))]] = _Z["industrial"]
    near = [i for i in free[np.argsort(dist[free], kind="stable")] if zone[i] < 0]
    k_com, k_off = max(1, round(0.09 * n)), max(1, round(0.05 * n))
    zone[near[:k_com]] = _Z["commercial"]
    zone[near[k_com:k_com + k_off]] = _Z["office"]
    rest = rng.permutation([i for i in free if zone[i] < 0])
    quotas = [("park", max(1, round(0.06 * n))), ("school", max(1, round(0.06 * n))),
              ("hospital", max(1, round(0.025 * n))), ("village", round(0.10 * n))]
    pos = 0
    for zname, q in quotas:
        zone[rest[pos:pos + q]] = _Z[zname]
        pos += q
    left = rest[pos:]
    zone[left] = np.where(rng.random(len(left)) < 0.55, _Z["slab"], _Z["tower"])
    park_pool = _pool(names["parks"], int((zone == _Z["park"]).sum()) + 1, "公园")
    parks: list[tuple[Any, str]] = []
    for i, (a0, b0, a1, b1, _) in enumerate(cells):
        g = len(group_rows)
        group_rows.append((a0, b0, a1, b1, int(zone[i])))
        zn = ZONES[zone[i]]
        if zn == "park":
            parks.append((shapely.box(a0, b0, a1, b1), "御河滨河公园" if river_col[i] else park_pool[len(parks)]))
        elif a1 > a0 and b1 > b0:
            lw, lh = _LOT[zn]
            block_rows.append((a0, b0, a1, b1, lw, lh, int(zone[i]), g))
    blocks_a = np.array(block_rows, dtype=np.float64)
    blocks = {k: blocks_a[:, i] for i, k in enumerate(("bx0", "by0", "bx1", "by1", "lw", "lh"))}
    blocks["zone"] = blocks_a[:, 6].astype(np.int64)
    blocks["group"] = blocks_a[:, 7].astype(np.int64)
    groups_a = np.array(group_rows, dtype=np.float64)
    groups = {k: groups_a[:, i] for i, k in enumerate(("gx0", "gy0", "gx1", "gy1"))}
    groups["zone"] = groups_a[:, 4].astype(np.int64)
    gd = np.hypot((groups["gx0"] + groups["gx1"]) / 2 - centre[0], (groups["gy0"] + groups["gy1"]) / 2 - centre[1])
    special = np.isin(groups["zone"], [_Z[z] for z in ("school", "hospital", "industrial", "commercial", "office")])
    groups["key"] = gd + rng.random(len(gd)) * 250.0 - 1e5 * special  # keep one of each kind first

    def boundaries(positions: np.ndarray, c: float, lo: float) -> np.ndarray:
        chosen = [lo]
        for p in positions:
            if is_main(p, c) and p - chosen[-1] >= 400 and lo + side - p >= 400:
                chosen.append(p)
        return np.array(chosen + [lo + side])

    return _Plan(side=side, x0=x0, y0=y0, cx=cx, cy=cy, rx=rx, river_phase=float(rng.uniform(0, 2 * np.pi)),
                 roads=roads, walls=list(walls), blocks=blocks, groups=groups, parks=parks,
                 comm_x=boundaries(xs, cx, x0), comm_y=boundaries(ys, cy, y0))


def _lots(plan: _Plan) -> dict[str, np.ndarray]:
    """Cut blocks into lots and keep those clear of roads, river (with its banks) and the wall."""
    b = plan.blocks
    nx = np.floor((b["bx1"] - b["bx0"]) / b["lw"]).clip(0).astype(np.int64)
    ny = np.floor((b["by1"] - b["by0"]) / b["lh"]).clip(0).astype(np.int64)
    cnt = nx * ny
    blk = np.repeat(np.arange(len(cnt)), cnt)
    j = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ix, iy = j % nx[blk], j // nx[blk]
    dx = (b["bx1"] - b["bx0"])[blk] / nx[blk]
    dy = (b["by1"] - b["by0"])[blk] / ny[blk]
    lx0 = b["bx0"][blk] + ix * dx
    ly0 = b["by0"][blk] + iy * dy
    lots = {"x0": lx0, "y0": ly0, "x1": lx0 + dx, "y1": ly0 + dy, "zone": b["zone"][blk].copy(),
            "group": b["group"][blk], "block": blk}
    river = shapely.buffer(plan.river_polygon(), plan.bank)
    forbidden = np.concatenate([plan.roads.surfaces(), [river], shapely.buffer(np.array(plan.walls), 1.0)])
    # lots may touch a road's edge (their buildings are inset), not overlap it
    inner = shapely.box(lots["x0"] + 0.3, lots["y0"] + 0.3, lots["x1"] - 0.3, lots["y1"] - 0.3)
    hit = STRtree(forbidden).query(inner, predicate="intersects")[0]
    keep = np.ones(len(inner), bool)
    keep[hit] = False
    lots = {k: v[keep] for k, v in lots.items()}
    # courtyard lots on the old town's main cross streets are shops
    near_main = np.minimum(np.minimum(np.abs(lots["x0"] - plan.cx), np.abs(lots["x1"] - plan.cx)),
                           np.minimum(np.abs(lots["y0"] - plan.cy), np.abs(lots["y1"] - plan.cy))) < 36
    lots["zone"][(lots["zone"] == _Z["courtyard"]) & near_main] = _Z["oldshop"]
    return lots


def _layout(n: int, seed: int) -> tuple[_Plan, dict[str, np.ndarray]]:
    """The smallest grid-aligned city (at least 2 x 2 km) with room for `n` buildings, and the `n` lots used."""
    side = _BASE_SIDE
    while True:
        plan = _plan(side, seed)
        lots = _lots(plan)
        cap = len(lots["x0"])
        if cap >= n:
            break
        side += _GRID * max(1, math.ceil(side * (math.sqrt(n / cap * 1.02) - 1) / _GRID))
    rng = _rng(seed, 2)
    order = np.lexsort((rng.random(cap), plan.groups["key"][lots["group"]]))[:n]
    order.sort()
    return plan, {k: v[order] for k, v in lots.items()}
