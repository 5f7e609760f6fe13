"""Buildings on the lots: shapes, heights, floors, roofs and materials, vectorised per zone; the footprint
polygons and the roof model the DSM is drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely

from cim.sample.common import (
    _FLAT,
    _GABLED,
    _HIPPED,
    _L,
    _PYRAMIDAL,
    _RECT,
    _RING,
    _SHED,
    _TWO_X,
    _TWO_Y,
    _U,
    _Z,
    _names,
    _rng,
)


@dataclass
class _Buildings:
    """Building arrays, all (n,) unless said: shape parameters, roof model, attributes (see `_buildings`)."""

    kind: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    w: np.ndarray  # wing width (L, U, ring)
    a: np.ndarray  # first part size (two-part shapes)
    b: np.ndarray  # second part size
    fx: np.ndarray
    fy: np.ndarray
    roof: np.ndarray
    eave: np.ndarray
    ridge: np.ndarray
    height: np.ndarray  # median roof height above ground (LOD1 height)
    floors: np.ndarray
    use: np.ndarray
    year: np.ndarray
    zone: np.ndarray
    group: np.ndarray
    color: np.ndarray  # (n, 3) float32 roof colour
    geom: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    base: np.ndarray = field(default_factory=lambda: np.empty(0))  # terrain height at the bbox centre
    boundary: np.ndarray = field(default_factory=lambda: np.empty(0, object))

    def take(self, idx: np.ndarray) -> _Buildings:
        return _Buildings(**{k: (v[idx] if isinstance(v, np.ndarray) and len(v) else v)
                             for k, v in self.__dict__.items()})


def _median_fraction(k: np.ndarray) -> np.ndarray:
    """Median of a hipped roof profile clip(d / (b/2), 0, 1) over an a x b rectangle, k = b / a in (0, 1]."""
    k = np.clip(k, 1e-6, 1.0)
    return ((1 + k) - np.sqrt((1 + k) ** 2 - 2 * k)) / (2 * k)


def _buildings(lots: dict[str, np.ndarray], seed: int) -> _Buildings:
    """Footprint shapes and attributes for each lot, vectorised per zone."""
    rng = _rng(seed, 3)
    n = len(lots["x0"])
    u = rng.random((12, n))
    zone = lots["zone"]
    lx0, ly0, lx1, ly1 = lots["x0"], lots["y0"], lots["x1"], lots["y1"]
    x0, y0, x1, y1 = lx0 + 1.0, ly0 + 1.0, lx1 - 1.0, ly1 - 1.0
    kind = np.full(n, _RECT)
    roof = np.full(n, _FLAT)
    w, a, b = np.zeros(n), np.zeros(n), np.zeros(n)
    fx, fy = u[4] < 0.5, u[5] < 0.5
    floors = np.ones(n, np.int64)
    eave = np.zeros(n)
    pitch = np.zeros(n)  # ridge - eave
    use = np.zeros(n, np.int64)
    year = np.zeros(n, np.int64)
    color = np.zeros((n, 3))

    def pick(m: np.ndarray, p: np.ndarray, choices: Sequence[int], probs: Sequence[float]) -> np.ndarray:
        edges = np.cumsum(probs)
        return np.asarray(choices)[np.minimum(np.searchsorted(edges, p[m], side="right"), len(choices) - 1)]

    def paint(m: np.ndarray, rgb: Sequence[float], spread: float, p: np.ndarray) -> None:
        color[m] = np.asarray(rgb, float) + spread * (p[m, None] - 0.5) * np.array([1.0, 1.0, 1.0])

    z = _Z
    # courtyard houses (四合院) and old-town shops
    m = zone == z["courtyard"]
    x0[m], y0[m], x1[m], y1[m] = lx0[m] + 0.6, ly0[m] + 0.6, lx1[m] - 0.6, ly1[m] - 0.6
    kind[m] = pick(m, u[0], (_RING, _U, _L, _TWO_Y, _RECT), (0.35, 0.2, 0.2, 0.15, 0.1))
    w[m] = 4.2 + 1.3 * u[1][m]
    a[m], b[m] = 4.5 + 1.0 * u[2][m], 6.0 + 1.5 * u[3][m]
    fy[m & (kind == _U)] = True
    roof[m] = np.where(kind[m] == _RECT, _FLAT, np.where((u[6][m] < 0.8) | (kind[m] == _TWO_Y), _GABLED, _HIPPED))
    floors[m] = np.where(kind[m] == _RECT, 2, 1)
    eave[m] = np.where(kind[m] == _RECT, 6.2, 3.0) + 0.6 * u[7][m]
    pitch[m] = np.where(kind[m] == _RECT, 0.0, 1.8 + 0.8 * u[8][m])
    year[m] = np.where(kind[m] == _RECT, 1990 + 30 * u[9][m], 1880 + 100 * u[9][m])
    paint(m, (90, 93, 98), 16, u[10])
    color[m & (kind == _RECT)] = (150, 146, 140)
    m = zone == z["oldshop"]
    x0[m], y0[m], x1[m], y1[m] = lx0[m] + 0.6, ly0[m] + 0.6, lx1[m] - 0.6, ly1[m] - 0.6
    kind[m] = pick(m, u[0], (_RECT, _TWO_Y, _L), (0.6, 0.2, 0.2))
    w[m], a[m], b[m] = 5.0 + 1.5 * u[1][m], 5.0 + u[2][m], 6.5 + u[3][m]
    roof[m] = _GABLED
    floors[m] = 2
    eave[m] = 6.0 + 0.8 * u[7][m]
    pitch[m] = 2.0 + 0.6 * u[8][m]
    use[m] = 1
    year[m] = 1995 + 25 * u[9][m]
    paint(m, (84, 86, 90), 14, u[10])
    m = zone == z["temple"]
    x0[m], x1[m] = lx0[m] + 5 + 3 * u[1][m], lx1[m] - 5 - 3 * u[1][m]
    y0[m], y1[m] = ly0[m] + 4 + 3 * u[2][m], ly1[m] - 4 - 3 * u[2][m]
    roof[m] = _HIPPED
    eave[m] = 7.0 + 2.0 * u[7][m]
    pitch[m] = 5.0 + 2.0 * u[8][m]
    use[m] = 6
    years = np.asarray(_names()["temple_years"])
    year[m] = years[(u[9][m] * len(years)).astype(int)]
    color[m] = np.where(u[10][m, None] < 0.3, [[150, 128, 72]], [[96, 102, 96]])
    # slab blocks: north-aligned rows, six-storey walk-ups and 11-18 storey slabs
    m = zone == z["slab"]
    mx = 4 + 3 * u[1]
    depth = 11 + 3 * u[2]
    kind[m] = pick(m, u[0], (_RECT, _L, _TWO_X), (0.85, 0.07, 0.08))
    x0[m], x1[m] = lx0[m] + mx[m], lx1[m] - mx[m]
    y1[m] = ly1[m] - (3 + 2 * u[3][m])
    y0[m] = y1[m] - np.where(kind[m] == _L, depth[m] + 8, depth[m])
    w[m] = depth[m]
    fy[m] = True
    span = x1 - x0
    a[m], b[m] = 0.45 * span[m], 0.45 * span[m]
    floors[m] = np.where(u[6][m] < 0.6, 5 + (3 * u[7][m]).astype(int), 11 + (8 * u[7][m]).astype(int))
    eave[m] = floors[m] * 2.9 + 0.6
    gab = m & (floors <= 7) & (u[8] < 0.35)
    roof[gab] = _GABLED
    pitch[gab] = 2.5 + u[9][gab]
    year[m] = np.where(floors[m] <= 7, 1985 + 20 * u[9][m], 2003 + 20 * u[9][m])
    paint(m, (178, 178, 172), 30, u[10])
    color[gab] = np.where(u[11][gab, None] < 0.6, [[150, 78, 60]], [[118, 62, 52]])
    # point towers
    m = zone == z["tower"]
    size = 20 + 6 * u[1]
    jx = (u[2] - 0.5) * ((lx1 - lx0) - size - 10).clip(0)
    jy = (u[3] - 0.5) * ((ly1 - ly0) - size - 10).clip(0)
    mxc, myc = (lx0 + lx1) / 2 + jx, (ly0 + ly1) / 2 + jy
    x0[m], x1[m], y0[m], y1[m] = (mxc - size / 2)[m], (mxc + size / 2)[m], (myc - size / 2)[m], (myc + size / 2)[m]
    kind[m] = pick(m, u[0], (_RECT, _L), (0.75, 0.25))
    w[m] = 0.55 * size[m]
    floors[m] = 18 + (16 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.0 + 1.5
    pyr = m & (kind == _RECT) & (u[7] < 0.2)
    roof[pyr] = _PYRAMIDAL
    pitch[pyr] = 4.0 + 2.0 * u[8][pyr]
    year[m] = 2005 + 18 * u[9][m]
    paint(m, (182, 184, 180), 26, u[10])
    # urban village (城中村): small dense houses
    m = zone == z["village"]
    ins = 0.6 + 0.6 * u[1]
    x0[m], y0[m], x1[m], y1[m] = (lx0 + ins)[m], (ly0 + ins)[m], (lx1 - ins)[m], (ly1 - ins)[m]
    kind[m] = pick(m, u[0], (_RECT, _L), (0.85, 0.15))
    w[m] = 0.55 * np.minimum(x1 - x0, y1 - y0)[m]
    floors[m] = 1 + (u[6][m] > 0.3) + (u[6][m] > 0.75)
    eave[m] = floors[m] * 2.9 + 0.3
    gab = m & (u[7] < 0.3)
    roof[gab] = _GABLED
    pitch[gab] = 1.5 + u[8][gab]
    use[m] = np.where(u[2][m] < 0.1, 1, 0)
    year[m] = 1980 + 35 * u[9][m]
    paint(m, (146, 139, 126), 40, u[10])
    color[gab] = np.where(u[11][gab, None] < 0.5, [[140, 72, 56]], [[82, 112, 150]])
    # shops, offices, schools, hospitals, factories
    m = zone == z["commercial"]
    x0[m], x1[m] = (lx0 + 4 + 5 * u[1])[m], (lx1 - 4 - 5 * u[1])[m]
    y0[m], y1[m] = (ly0 + 4 + 4 * u[2])[m], (ly1 - 4 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_RECT, _RING, _U), (0.55, 0.25, 0.2))
    w[m] = 11 + 4 * u[3][m]
    floors[m] = 2 + (5 * u[6][m]).astype(int)
    eave[m] = floors[m] * 4.2 + 1.0
    use[m] = 1
    year[m] = 1995 + 28 * u[9][m]
    paint(m, (168, 170, 172), 36, u[10])
    m = zone == z["office"]
    sw, sh = 26 + 10 * u[1], 26 + 10 * u[2]
    mxc, myc = (lx0 + lx1) / 2, (ly0 + ly1) / 2
    x0[m], x1[m], y0[m], y1[m] = (mxc - sw / 2)[m], (mxc + sw / 2)[m], (myc - sh / 2)[m], (myc + sh / 2)[m]
    kind[m] = pick(m, u[0], (_RECT, _L), (0.7, 0.3))
    w[m] = 0.5 * np.minimum(sw, sh)[m]
    floors[m] = 12 + (19 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.6 + 2.0
    pyr = m & (kind == _RECT) & (u[7] < 0.25)
    roof[pyr] = _PYRAMIDAL
    pitch[pyr] = 5.0 + 3.0 * u[8][pyr]
    use[m] = 2
    year[m] = 2000 + 23 * u[9][m]
    paint(m, (192, 194, 197), 20, u[10])
    m = zone == z["school"]
    x0[m], x1[m] = (lx0 + 8 + 4 * u[1])[m], (lx1 - 8 - 4 * u[1])[m]
    y1[m] = (ly1 - 10 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_U, _L, _RECT), (0.45, 0.25, 0.3))
    y0[m] = np.where(kind[m] == _RECT, y1[m] - 14 - 2 * u[3][m], (ly0 + 10 + 4 * u[2])[m])
    w[m] = 13 + 3 * u[3][m]
    floors[m] = 3 + (3 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.8 + 0.8
    hip = m & (u[7] < 0.4)
    roof[hip] = _HIPPED
    pitch[hip] = 2.5 + u[8][hip]
    use[m] = 3
    year[m] = 1980 + 40 * u[9][m]
    paint(m, (176, 170, 160), 20, u[10])
    color[hip] = (152, 80, 62)
    m = zone == z["hospital"]
    x0[m], x1[m] = (lx0 + 6 + 4 * u[1])[m], (lx1 - 6 - 4 * u[1])[m]
    y1[m] = (ly1 - 6 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_L, _RING, _RECT), (0.45, 0.2, 0.35))
    y0[m] = np.where(kind[m] == _RECT, y1[m] - 18 - 2 * u[3][m], (ly0 + 6 + 4 * u[2])[m])
    w[m] = 14 + 2 * u[3][m]
    floors[m] = 5 + (10 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.9 + 1.2
    use[m] = 4
    year[m] = 1985 + 35 * u[9][m]
    paint(m, (206, 206, 200), 14, u[10])
    m = zone == z["industrial"]
    x0[m], x1[m] = (lx0 + 6 + 4 * u[1])[m], (lx1 - 6 - 4 * u[1])[m]
    y0[m], y1[m] = (ly0 + 8 + 4 * u[2])[m], (ly1 - 8 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_RECT, _TWO_X), (0.9, 0.1))
    span = x1 - x0
    a[m], b[m] = 0.45 * span[m], 0.45 * span[m]
    floors[m] = np.where(u[6][m] < 0.8, 1, 2)
    eave[m] = np.where(floors[m] == 1, 6 + 4 * u[7][m], 9 + 3 * u[7][m])
    r = pick(m, u[8], (_SHED, _GABLED, _FLAT), (0.35, 0.5, 0.15))
    roof[m] = np.where((r == _SHED) & (kind[m] != _RECT), _GABLED, r)
    pitch[m] = np.where(roof[m] == _SHED, 1.5 + 1.5 * u[9][m], np.where(roof[m] == _GABLED, 2 + 1.5 * u[9][m], 0))
    use[m] = 5
    year[m] = 1960 + 55 * u[9][m]
    palette = np.array([[78, 118, 160], [150, 154, 158], [205, 205, 200], [150, 92, 64]], float)
    color[m] = palette[(u[10][m] * 4).astype(int)]

    # shapes that do not fit their box become rectangles
    W, H = x1 - x0, y1 - y0
    bad = (((kind == _L) & (w > np.minimum(W, H) - 2)) | ((kind == _U) & ((w > (W - 3) / 2) | (w > H - 2)))
           | ((kind == _RING) & ((w > (W - 3) / 2) | (w > (H - 3) / 2)))
           | ((kind == _TWO_Y) & (a + b > H - 2)) | ((kind == _TWO_X) & (a + b > W - 2)))
    kind[bad] = _RECT
    roof[(roof == _SHED) & (kind != _RECT)] = _GABLED
    roof[(roof == _PYRAMIDAL) & (kind != _RECT)] = _HIPPED
    pitch[roof == _FLAT] = 0.0
    eave = np.round(eave, 1)
    ridge = np.round(eave + pitch, 1)
    # median of the roof surface over the footprint (what the DSM shows): the LOD1 height
    frac = np.zeros(n)
    frac[(roof == _GABLED) | (roof == _SHED)] = 0.5
    hipped_rect = ((roof == _HIPPED) | (roof == _PYRAMIDAL)) & (kind == _RECT)
    frac[hipped_rect] = _median_fraction(np.minimum(W, H) / np.maximum(W, H))[hipped_rect]
    for k, length in ((_L, W + H - w), (_U, W + 2 * H - 2 * w), (_RING, 2 * (W + H) - 4 * w)):
        mk = (kind == k) & (roof != _FLAT)
        frac[mk] = _median_fraction(w / length)[mk]
    height = np.round(eave + frac * (ridge - eave), 1)
    return _Buildings(kind=kind, x0=x0, y0=y0, x1=x1, y1=y1, w=w, a=a, b=b, fx=fx, fy=fy, roof=roof, eave=eave,
                      ridge=ridge, height=height, floors=floors, use=use, year=year, zone=zone,
                      group=lots["group"], color=color.clip(0, 255).astype(np.float32))


def _footprints(bl: _Buildings) -> np.ndarray:
    """(n,) shapely geometries: rectangles, L, U, rings with a courtyard hole, two-part MultiPolygons."""
    n = len(bl.kind)
    geom = np.empty(n, dtype=object)
    W, H = bl.x1 - bl.x0, bl.y1 - bl.y0

    m = bl.kind == _RECT
    geom[m] = shapely.box(bl.x0[m], bl.y0[m], bl.x1[m], bl.y1[m])
    for k in (_L, _U):
        m = bl.kind == k
        if not m.any():
            continue
        Wm, Hm, wm = W[m, None], H[m, None], bl.w[m, None]
        zero = np.zeros_like(Wm)
        if k == _L:  # bottom strip + left strip
            xs = np.hstack([zero, Wm, Wm, wm, wm, zero, zero])
            ys = np.hstack([zero, zero, wm, wm, Hm, Hm, zero])
        else:  # U open to the top
            xs = np.hstack([zero, Wm, Wm, Wm - wm, Wm - wm, wm, wm, zero, zero])
            ys = np.hstack([zero, zero, Hm, Hm, wm, wm, Hm, Hm, zero])
        xs = np.where(bl.fx[m, None], Wm - xs, xs) + bl.x0[m, None]
        ys = np.where(bl.fy[m, None], Hm - ys, ys) + bl.y0[m, None]
        geom[m] = shapely.polygons(np.stack([xs, ys], axis=-1))
    m = bl.kind == _RING
    if m.any():
        w = bl.w[m]
        hole = np.stack([shapely.box(bl.x0[m] + w, bl.y0[m] + w, bl.x1[m] - w, bl.y1[m] - w)])
        shells = shapely.get_exterior_ring(shapely.box(bl.x0[m], bl.y0[m], bl.x1[m], bl.y1[m]))
        holes = shapely.get_exterior_ring(hole[0])
        geom[m] = shapely.polygons(shells, holes=holes[:, None])
    m = bl.kind == _TWO_Y
    if m.any():
        p1 = shapely.box(bl.x0[m], bl.y0[m], bl.x1[m], bl.y0[m] + bl.a[m])
        p2 = shapely.box(bl.x0[m], bl.y1[m] - bl.b[m], bl.x1[m], bl.y1[m])
        geom[m] = shapely.multipolygons(np.stack([p1, p2], axis=1))
    m = bl.kind == _TWO_X
    if m.any():
        p1 = shapely.box(bl.x0[m], bl.y0[m], bl.x0[m] + bl.a[m], bl.y1[m])
        p2 = shapely.box(bl.x1[m] - bl.b[m], bl.y0[m], bl.x1[m], bl.y1[m])
        geom[m] = shapely.multipolygons(np.stack([p1, p2], axis=1))
    return geom


def _roof_fraction(bl: _Buildings, ids: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Roof height above the eave as a fraction of (ridge - eave) at points inside buildings.

    Args:
        bl: the buildings (with `boundary`).
        ids: (k,) building index of each point.
        px, py: (k,) float64 point coordinates.

    Returns:
        (k,) float64 in [0, 1]: 0 at the eaves (and on flat roofs), 1 on the ridge.
    """
    r = np.zeros(len(ids))
    kind, roof = bl.kind[ids], bl.roof[ids]
    x0, y0, x1, y1 = bl.x0[ids], bl.y0[ids], bl.x1[ids], bl.y1[ids]
    W, H = x1 - x0, y1 - y0
    m = (roof == _GABLED) & (kind == _RECT)
    across_y = H <= W
    r[m] = np.where(across_y, 1 - np.abs(py - (y0 + y1) / 2) / (H / 2), 1 - np.abs(px - (x0 + x1) / 2) / (W / 2))[m]
    m = roof == _SHED
    r[m] = ((py - y0) / H)[m]
    m = (roof == _GABLED) & (kind == _TWO_Y)
    if m.any():
        a, b, y0m, y1m, pym = bl.a[ids[m]], bl.b[ids[m]], y0[m], y1[m], py[m]
        north = pym > (y0m + y1m) / 2
        c = np.where(north, y1m - b / 2, y0m + a / 2)
        r[m] = 1 - np.abs(pym - c) / (np.where(north, b, a) / 2)
    m = (roof == _GABLED) & (kind == _TWO_X)
    if m.any():
        a, b, x0m, x1m, pxm, Hm = bl.a[ids[m]], bl.b[ids[m]], x0[m], x1[m], px[m], H[m]
        east = pxm > (x0m + x1m) / 2
        pw = np.where(east, b, a)
        c = np.where(east, x1m - b / 2, x0m + a / 2)
        r[m] = np.where(pw <= Hm, 1 - np.abs(pxm - c) / (pw / 2), 1 - np.abs(py[m] - (y0[m] + y1[m]) / 2) / (Hm / 2))
    m = ((roof == _HIPPED) | (roof == _PYRAMIDAL)) & (kind == _RECT)
    d = np.minimum(np.minimum(px - x0, x1 - px), np.minimum(py - y0, y1 - py))
    r[m] = (d / (np.minimum(W, H) / 2))[m]
    m = (roof != _FLAT) & np.isin(kind, (_L, _U, _RING))
    if m.any():
        dist = shapely.distance(shapely.points(px[m], py[m]), bl.boundary[ids[m]])
        r[m] = dist / (bl.w[ids[m]] / 2)
    return np.clip(r, 0.0, 1.0)
