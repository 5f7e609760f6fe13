"""LOD2 roof shapes: closed building solids (floor, walls, roof faces) from a footprint, a roof type and heights.

Roof types: flat, shed, gabled, hipped, pyramidal.
- Rectangles (after dropping collinear vertices; right angles within 3 degrees) get exact analytic roofs in the
  rectangle's frame: gabled and shed along the main (long) axis, hipped with its ridge along the main axis,
  pyramidal with its apex over the centre.
- Any other shape (L-shapes, courtyards with holes, polygons) gets a hipped roof from the polygon's straight
  skeleton (every face rises from one footprint edge at one slope; `py-straight-skeleton`); a gabled, shed or
  pyramidal type on such a shape falls back to that hipped roof, and a shape the skeleton cannot handle falls back
  to a flat roof at the mean of eave and ridge. Every fallback is reported with its reason.

Every roof face is a planar polygon whose vertices are shared exactly with its neighbours and with the walls'
top edges, so floor + walls + roof form a closed, consistently oriented (outward) surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import mapbox_earcut
import numpy as np
import shapely

RoofType = Literal["flat", "shed", "gabled", "hipped", "pyramidal"]
ROOF_TYPES: tuple[str, ...] = ("flat", "shed", "gabled", "hipped", "pyramidal")
_RIGHT_ANGLE_TOL = np.sin(np.radians(3.0))


@dataclass
class BuildingSolid:
    """One building as triangles over shared vertices.

    Attributes:
        positions: (n, 3) float64 x, y in the footprint's CRS and absolute z.
        roof: (r, 3) int64 roof triangles (counter-clockwise seen from above).
        walls: (w, 3) int64 wall triangles (counter-clockwise seen from outside).
        floor: (f, 3) int64 floor triangles (facing down).
        roof_type: the roof built (may differ from the one asked for; see `fallback`).
        fallback: why the asked roof type was not built, or None.
    """

    positions: np.ndarray
    roof: np.ndarray
    walls: np.ndarray
    floor: np.ndarray
    roof_type: str
    fallback: str | None = None

    def triangles(self) -> np.ndarray:
        """(t, 3) all triangles."""
        return np.vstack([self.roof, self.walls, self.floor])


@dataclass
class _Builder:
    """Vertices by exact coordinates (so faces share them) and faces as vertex-index lists."""

    pos: list[tuple[float, float, float]] = field(default_factory=list)
    index: dict[tuple[float, float, float], int] = field(default_factory=dict)
    roof: list[list[int]] = field(default_factory=list)

    def v(self, x: float, y: float, z: float) -> int:
        key = (float(x), float(y), float(z))
        k = self.index.get(key)
        if k is None:
            k = self.index[key] = len(self.pos)
            self.pos.append(key)
        return k


def _ring(coords: np.ndarray, ccw: bool) -> np.ndarray:
    """(k, 2) open ring without repeated or collinear vertices, in the asked orientation."""
    xy = np.asarray(coords, np.float64)[:, :2]
    if len(xy) > 1 and np.allclose(xy[0], xy[-1]):
        xy = xy[:-1]
    keep = np.ones(len(xy), bool)
    d = np.linalg.norm(np.roll(xy, -1, axis=0) - xy, axis=1)
    keep &= d > 1e-7
    xy = xy[keep]
    changed = True
    while changed and len(xy) > 3:
        a, b, c = np.roll(xy, 1, axis=0), xy, np.roll(xy, -1, axis=0)
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - b[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - b[:, 0])
        scale = np.linalg.norm(b - a, axis=1) * np.linalg.norm(c - b, axis=1)
        collinear = np.abs(cross) <= 1e-9 * np.maximum(scale, 1e-12)
        changed = bool(collinear.any())
        if changed:
            xy = xy[~collinear] if (~collinear).sum() >= 3 else xy
            changed = changed and (~collinear).sum() >= 3
    x, y = xy[:, 0], xy[:, 1]
    area2 = float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    if (area2 > 0) != ccw:
        xy = xy[::-1]
    return xy


def _rectangle(ext: np.ndarray) -> np.ndarray | None:
    """The ring reordered so that corner 0 -> 1 is a long side, when it is a rectangle; else None."""
    if len(ext) != 4:
        return None
    e = np.roll(ext, -1, axis=0) - ext
    n = np.linalg.norm(e, axis=1)
    u = e / n[:, None]
    dots = np.abs(np.sum(u * np.roll(u, -1, axis=0), axis=1))
    if dots.max() > _RIGHT_ANGLE_TOL:
        return None
    start = 0 if n[0] >= n[1] else 1
    return np.roll(ext, -start, axis=0)


def _triangulate(poly_xy: np.ndarray, holes: list[np.ndarray] | None = None) -> np.ndarray:
    """(t, 3) earcut triangles over the stacked rings (outer first), counter-clockwise seen from above."""
    rings = [poly_xy] + list(holes or [])
    xy = np.vstack(rings)
    ends = np.cumsum([len(r) for r in rings]).astype(np.uint32)
    tri = mapbox_earcut.triangulate_float64(xy - xy[0], ends).astype(np.int64).reshape(-1, 3)
    a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri = tri[np.abs(area2) > 1e-12]
    flip = area2[np.abs(area2) > 1e-12] < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return tri


def _rect_roof(b: _Builder, r: np.ndarray, roof_type: str, eave: float, ridge: float) -> None:
    p0, p1, p2, p3 = r
    long_len = float(np.linalg.norm(p1 - p0))
    width = float(np.linalg.norm(p2 - p1))
    u = (p1 - p0) / long_len
    v = (p2 - p1) / width
    corner = [b.v(*p, eave) for p in r]
    if roof_type == "gabled":
        r0, r1 = p0 + v * width / 2, p1 + v * width / 2
        k0, k1 = b.v(*r0, ridge), b.v(*r1, ridge)
        b.roof += [[corner[0], corner[1], k1, k0], [corner[2], corner[3], k0, k1]]
    elif roof_type == "shed":
        h2, h3 = b.v(*p2, ridge), b.v(*p3, ridge)
        b.roof += [[corner[0], corner[1], h2, h3]]
    elif roof_type == "pyramidal" or (roof_type == "hipped" and long_len - width < 1e-3):
        c = b.v(*((p0 + p2) / 2), ridge)
        b.roof += [[corner[i], corner[(i + 1) % 4], c] for i in range(4)]
    else:  # hipped
        h0 = b.v(*(p0 + u * width / 2 + v * width / 2), ridge)
        h1 = b.v(*(p1 - u * width / 2 + v * width / 2), ridge)
        b.roof += [[corner[0], corner[1], h1, h0], [corner[1], corner[2], h1], [corner[2], corner[3], h0, h1],
                   [corner[3], corner[0], h0]]


def _skeleton_roof(b: _Builder, ext: np.ndarray, holes: list[np.ndarray], eave: float, ridge: float,
                   area: float) -> None:
    """Hipped roof from the straight skeleton; raises ValueError when the faces do not tile the footprint."""
    from py_straight_skeleton import compute_skeleton

    o = ext[0]
    sk = compute_skeleton(exterior=(ext - o).tolist(), holes=[(h - o).tolist() for h in holes])
    nodes = sk.nodes
    times = np.array([n.time for n in nodes], np.float64)
    tmax = float(times.max())
    if not np.isfinite(tmax) or tmax <= 0:
        raise ValueError("straight skeleton has no interior node")
    slope = (ridge - eave) / tmax
    # boundary nodes must be exactly the footprint's vertices so walls and roof share them
    xy = np.array([[n.position.x + o[0], n.position.y + o[1]] for n in nodes])
    rings = np.vstack([ext] + holes)
    d = np.linalg.norm(xy[:, None, :] - rings[None, :, :], axis=2)
    nearest = d.argmin(axis=1)
    on_ring = times <= 1e-9
    xy[on_ring] = rings[nearest[on_ring]]
    ids = [b.v(x, y, eave + t * slope) for (x, y), t in zip(xy, times)]
    total = 0.0
    faces = []
    for face in sk.get_faces():
        f = list(face)
        if len(f) > 1 and f[0] == f[-1]:
            f = f[:-1]
        if len(f) < 3:
            continue
        fxy = xy[f] - o  # areas from small coordinates: absolute ones lose digits
        x, y = fxy[:, 0], fxy[:, 1]
        a2 = float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
        total += abs(a2) / 2
        faces.append([ids[i] for i in f])
    if abs(total - area) > 1e-5 * max(area, 1.0):
        raise ValueError(f"straight-skeleton faces cover {total:.3f} m², the footprint {area:.3f} m²")
    b.roof += faces


def building_solid(polygon: shapely.Polygon, base: float, eave: float, ridge: float,
                   roof_type: str = "flat") -> BuildingSolid:
    """A closed LOD2 building: floor at `base`, walls up to the roof's edges, roof between `eave` and `ridge`.

    Args:
        polygon: the footprint (one Polygon, holes allowed) in a projected CRS.
        base: absolute height of the floor (the lowest terrain under the footprint).
        eave: absolute height where the roof meets the walls.
        ridge: absolute height of the roof's top (>= eave; equal gives a flat roof).
        roof_type: one of ROOF_TYPES.
    """
    if roof_type not in ROOF_TYPES:
        raise ValueError(f"roof type {roof_type!r} is not one of {ROOF_TYPES}")
    ext = _ring(shapely.get_coordinates(polygon.exterior), ccw=True)
    holes = [_ring(shapely.get_coordinates(h), ccw=False) for h in polygon.interiors]
    holes = [h for h in holes if len(h) >= 3]
    ridge = max(ridge, eave)
    fallback = None
    built = roof_type
    b = _Builder()
    if roof_type == "flat" or ridge - eave < 0.05:
        built = "flat"
    else:
        rect = _rectangle(ext) if not holes else None
        if rect is not None:
            _rect_roof(b, rect, roof_type, eave, ridge)
        else:
            if roof_type != "hipped":
                fallback = f"{roof_type} roof on a non-rectangular footprint: hipped (straight skeleton)"
                built = "hipped"
            try:
                _skeleton_roof(b, ext, holes, eave, ridge, float(polygon.area))
            except Exception as exc:  # noqa: BLE001 - any skeleton failure falls back to a flat roof
                b = _Builder()
                eave = ridge = (eave + ridge) / 2
                built = "flat"
                fallback = f"{roof_type} roof: straight skeleton failed ({exc}); flat roof at mid height"
    if built == "flat":
        flat_ids = [[b.v(x, y, eave) for x, y in r] for r in [ext] + holes]
        tri = _triangulate(ext, holes)
        roof_tris = np.asarray([i for r in flat_ids for i in r], np.int64)[tri]
    else:
        pos = np.asarray(b.pos)
        roof_tris = np.vstack([np.asarray(face, np.int64)[_triangulate(pos[face, :2])] for face in b.roof])
    roof_ids = np.unique(roof_tris)
    roof_pos = np.asarray(b.pos, np.float64)[roof_ids]
    walls: list[list[int]] = []
    for ring in [ext] + holes:
        for k in range(len(ring)):
            a, c = ring[k], ring[(k + 1) % len(ring)]
            walls.extend(_wall(b, roof_ids, roof_pos, a, c, base))
    floor_ids = np.asarray([b.v(x, y, base) for r in [ext] + holes for x, y in r], np.int64)
    floor = floor_ids[_triangulate(ext, holes)][:, [0, 2, 1]]
    return BuildingSolid(positions=np.asarray(b.pos, np.float64), roof=roof_tris,
                         walls=np.asarray(walls, np.int64).reshape(-1, 3), floor=floor, roof_type=built,
                         fallback=fallback)


def _wall(b: _Builder, ids: np.ndarray, pos: np.ndarray, a: np.ndarray, c: np.ndarray,
          base: float) -> list[list[int]]:
    """Triangles of the wall under footprint edge a -> c, up to the roof vertices (`ids`, at `pos`) on that edge."""
    d = c - a
    length2 = float(d @ d)
    rel = pos[:, :2] - a
    t = rel @ d / length2
    off = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0]) / np.sqrt(length2)
    on = np.nonzero((off < 1e-6) & (t > -1e-9) & (t < 1 + 1e-9) & (pos[:, 2] > base + 1e-9))[0]
    top = ids[on[np.argsort(-t[on], kind="stable")]]  # from c back to a
    a0, c0 = b.v(*a, base), b.v(*c, base)
    tris = [[a0, c0, int(top[0])]]
    tris += [[a0, int(p), int(q)] for p, q in zip(top[:-1], top[1:])]
    return tris




# --------------------------------------------------------------------------------------- rectangles, vectorised
# Vertex layout of a rectangle building: 0-3 floor corners, 4-7 eave corners (corner 0 -> 1 a long side),
# 8-9 the extra roof vertices of the type. Faces are the same as `_rect_roof` builds one building at a time.
_FLOOR = [[0, 2, 1], [0, 3, 2]]
_BOX_WALLS = [[i, (i + 1) % 4, 4 + (i + 1) % 4] for i in range(4)] + [[i, 4 + (i + 1) % 4, 4 + i] for i in range(4)]
_TEMPLATES: dict[str, tuple[list[list[int]], list[list[int]]]] = {
    "flat": ([[4, 5, 6], [4, 6, 7]], _BOX_WALLS),
    "shed": ([[4, 5, 6], [4, 6, 7]], _BOX_WALLS),
    "gabled": ([[4, 5, 9], [4, 9, 8], [6, 7, 8], [6, 8, 9]],
               [[0, 1, 5], [0, 5, 4], [2, 3, 7], [2, 7, 6],
                [1, 2, 6], [1, 6, 9], [1, 9, 5], [3, 0, 4], [3, 4, 8], [3, 8, 7]]),
    "hipped": ([[4, 5, 9], [4, 9, 8], [5, 6, 9], [6, 7, 8], [6, 8, 9], [7, 4, 8]], _BOX_WALLS),
    "pyramidal": ([[4, 5, 8], [5, 6, 8], [6, 7, 8], [7, 4, 8]], _BOX_WALLS),
}


def rectangle_solids(corners: np.ndarray, base: np.ndarray, eave: np.ndarray, ridge: np.ndarray,
                     roof_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closed buildings of one roof type on k rectangles at once.

    Args:
        corners: (k, 4, 2) float64 counter-clockwise corners, corner 0 -> 1 along a long side.
        base, eave, ridge: (k,) float64 absolute heights.
        roof_type: one of ROOF_TYPES (hipped on a square is built as pyramidal).

    Returns:
        (positions (k, nv, 3) float64, roof (r, 3), walls (w, 3), floor (2, 3)) with the same triangles for every
        building (indices into its own nv vertices).
    """
    k = len(corners)
    p0, p1, p2, p3 = (corners[:, i] for i in range(4))
    length = np.linalg.norm(p1 - p0, axis=1)[:, None]
    width = np.linalg.norm(p2 - p1, axis=1)[:, None]
    u = (p1 - p0) / length
    v = (p2 - p1) / width
    roof, walls = _TEMPLATES[roof_type]
    nv = 8 if roof_type in ("flat", "shed") else (9 if roof_type == "pyramidal" else 10)
    pos = np.empty((k, nv, 3))
    pos[:, :4, :2] = corners
    pos[:, 4:8, :2] = corners
    pos[:, :4, 2] = base[:, None]
    pos[:, 4:8, 2] = eave[:, None]
    if roof_type == "shed":
        pos[:, 6:8, 2] = ridge[:, None]
    elif roof_type == "gabled":
        pos[:, 8, :2] = p0 + v * width / 2
        pos[:, 9, :2] = p1 + v * width / 2
        pos[:, 8:10, 2] = ridge[:, None]
    elif roof_type == "pyramidal":
        pos[:, 8, :2] = (p0 + p2) / 2
        pos[:, 8, 2] = ridge
    elif roof_type == "hipped":
        half = np.minimum(width / 2, length / 2)
        pos[:, 8, :2] = p0 + u * half + v * width / 2
        pos[:, 9, :2] = p1 - u * half + v * width / 2
        pos[:, 8:10, 2] = ridge[:, None]
    return pos, np.asarray(roof), np.asarray(walls), np.asarray(_FLOOR)


def as_rectangle(polygon: shapely.Polygon) -> np.ndarray | None:
    """(4, 2) counter-clockwise corners (0 -> 1 along a long side) of a rectangular footprint without holes."""
    if len(polygon.interiors):
        return None
    ext = _ring(shapely.get_coordinates(polygon.exterior), ccw=True)
    return _rectangle(ext)




def flat_solids(geoms: np.ndarray, base: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                np.ndarray, np.ndarray]:
    """Closed flat-roofed buildings for k footprints of any shape at once (the LOD1 prism, in bulk).

    Args:
        geoms: (k,) (Multi)Polygons; base, top: (k,) float64 absolute heights of floor and roof.

    Returns:
        (positions (v, 3) float64, roof (r, 3), walls and floor (w, 3), building index (v,) of each vertex).
    """
    from cim.models.lod1 import _rings, _roof_triangles

    r = _rings(geoms)
    v = len(r.xy)
    top_pos = np.column_stack([r.xy, top[r.bld]])
    bottom_pos = np.column_stack([r.xy, base[r.bld]])
    roof = _roof_triangles(r)
    i = np.arange(v)
    j = r.nxt
    keep = np.linalg.norm(r.xy[j] - r.xy[i], axis=1) > 1e-9
    i, j = i[keep], j[keep]
    walls = np.vstack([np.column_stack([i + v, j + v, j]), np.column_stack([i + v, j, i])])
    floor = roof[:, [0, 2, 1]] + v
    return (np.vstack([top_pos, bottom_pos]), roof, np.vstack([walls, floor]), np.concatenate([r.bld, r.bld]))




def orient_rectangles(corners: np.ndarray, roof_type: str, ridge_dir: np.ndarray | None = None,
                      up_dir: np.ndarray | None = None) -> np.ndarray:
    """Corners re-started so that a gabled ridge follows `ridge_dir` and a shed rises towards `up_dir`.

    `rectangle_solids` puts a gabled ridge parallel to edge 0 -> 1 and a shed's high edge on 2 -> 3; the corners of
    `as_rectangle` start on a long side, which is the default orientation.

    Args:
        corners: (k, 4, 2) float64 counter-clockwise corners.
        roof_type: one of ROOF_TYPES (only gabled and shed are turned).
        ridge_dir: (k, 2) float64 ridge directions (gabled), NaN rows keep their corners.
        up_dir: (k, 2) float64 up-slope directions (shed), NaN rows keep their corners.

    Returns:
        (k, 4, 2) float64 corners.
    """
    k = len(corners)
    roll = np.zeros(k, np.int64)
    edges = np.roll(corners, -1, axis=1) - corners  # edge i: corner i -> i + 1
    if roof_type == "gabled" and ridge_dir is not None:
        d = np.abs(np.einsum("kij,kj->ki", edges[:, :2], np.nan_to_num(ridge_dir)))
        d /= np.maximum(np.linalg.norm(edges[:, :2], axis=2), 1e-12)
        roll = np.where(np.isfinite(ridge_dir).all(axis=1) & (d[:, 1] > d[:, 0] + 1e-9), 1, 0)
    elif roof_type == "shed" and up_dir is not None:
        mids = (corners + np.roll(corners, -1, axis=1)) / 2  # midpoint of edge i
        rise = np.roll(mids, -2, axis=1) - mids  # from edge i to the opposite edge i + 2
        score = np.einsum("kij,kj->ki", rise, np.nan_to_num(up_dir))
        roll = np.where(np.isfinite(up_dir).all(axis=1), score.argmax(axis=1), 0)
    if not roll.any():
        return corners
    idx = (np.arange(4)[None, :] + roll[:, None]) % 4
    return np.take_along_axis(corners, idx[:, :, None], axis=1)


# ------------------------------------------------------------------------------------------ roofs from a DSM
# Candidate roof models, each a profile f in [0, 1] over the footprint (0 at the eaves, 1 on the ridge) fitted as
# height = eave + (ridge - eave) * f. Order matters only for exact ties (a square's hipped roof is pyramidal).
ROOF_MODELS: tuple[tuple[str, str], ...] = (
    ("flat", "flat"),
    ("shed", "shed_v+"), ("shed", "shed_v-"), ("shed", "shed_u+"), ("shed", "shed_u-"),
    ("gabled", "gabled_along"), ("gabled", "gabled_across"),
    ("pyramidal", "pyramidal"), ("hipped", "hipped"),
)
MIN_ROOF_SAMPLES = 12
MIN_ROOF_RISE = 0.3
HEIGHT_NOISE_FLOOR = 0.02
OUTLIER_FLOOR = 0.5


@dataclass
class RoofFrames:
    """Per footprint part (Polygon of a (Multi)Polygon): the frame the roof profiles are computed in.

    Attributes:
        parts: (p,) Polygons; owner: (p,) int64 building of each part (parts of a building are consecutive).
        centre: (p, 2) float64 centre of the part's minimum rotated rectangle.
        axis: (p, 2) float64 unit vector along that rectangle's long side (the main axis).
        half_length, half_width: (p,) float64 half sides of that rectangle (half_length >= half_width).
        rect: (p,) bool, the part is a rectangle (no holes, four corners, right angles within 3 degrees).
        reach: (p,) float64 distance from the eaves at which a hipped roof reaches its ridge: half the width for
            rectangles, the collapse distance of the mitred inward offset (the straight skeleton's height) else.
        boundary: (p,) the parts' boundaries (for distances of non-rectangular parts).
        n: number of buildings.
    """

    parts: np.ndarray
    owner: np.ndarray
    centre: np.ndarray
    axis: np.ndarray
    half_length: np.ndarray
    half_width: np.ndarray
    rect: np.ndarray
    reach: np.ndarray
    boundary: np.ndarray
    n: int

    @property
    def building_rect(self) -> np.ndarray:
        """(n,) bool: every part of the building is a rectangle."""
        return np.bincount(self.owner, weights=~self.rect, minlength=self.n) == 0


def roof_frames(geoms: np.ndarray) -> RoofFrames:
    """The roof frames of the parts of k (Multi)Polygons (vectorised; see `RoofFrames`)."""
    geoms = np.asarray(geoms, dtype=object)
    parts, owner = shapely.get_parts(geoms, return_index=True)
    env = shapely.oriented_envelope(parts)
    flat = shapely.get_type_id(env) != 3  # a degenerate part's envelope is a line or a point
    if flat.any():
        env[flat] = shapely.buffer(shapely.envelope(parts[flat]), 1e-3, join_style="mitre")
    ring = shapely.get_coordinates(shapely.get_exterior_ring(env)).reshape(len(parts), -1, 2)[:, :4]
    e0, e1 = ring[:, 1] - ring[:, 0], ring[:, 2] - ring[:, 1]
    l0, l1 = np.linalg.norm(e0, axis=1), np.linalg.norm(e1, axis=1)
    long_e = np.where((l0 >= l1)[:, None], e0, e1)
    axis = long_e / np.maximum(np.linalg.norm(long_e, axis=1), 1e-12)[:, None]
    half_length, half_width = np.maximum(l0, l1) / 2, np.minimum(l0, l1) / 2
    centre = ring.mean(axis=1)
    # rectangles as the builder sees them (`as_rectangle`): four corners, right angles within 3 degrees, no holes
    simple = shapely.get_exterior_ring(shapely.simplify(parts, 1e-6, preserve_topology=False))
    rect = (shapely.get_num_interior_rings(parts) == 0) & (shapely.get_num_coordinates(simple) == 5)
    if rect.any():
        quad = shapely.get_coordinates(simple[rect]).reshape(-1, 5, 2)
        e = np.diff(quad, axis=1)
        e /= np.maximum(np.linalg.norm(e, axis=2, keepdims=True), 1e-12)
        rect[rect] = np.abs(np.einsum("kij,kij->ki", e, np.roll(e, -1, axis=1))).max(axis=1) <= _RIGHT_ANGLE_TOL
    reach = half_width.copy()
    other = np.flatnonzero(~rect)
    if len(other):
        lo, hi = np.zeros(len(other)), half_width[other].copy()
        for _ in range(8):  # bisection to 1/256 of the half width (a ridge error of under 1 % of the rise)
            mid = (lo + hi) / 2
            gone = shapely.is_empty(shapely.buffer(parts[other], -mid, join_style="mitre", mitre_limit=100.0))
            hi, lo = np.where(gone, mid, hi), np.where(gone, lo, mid)
        reach[other] = (lo + hi) / 2
    return RoofFrames(parts=parts, owner=owner.astype(np.int64), centre=centre, axis=axis, half_length=half_length,
                      half_width=half_width, rect=rect, reach=np.maximum(reach, 1e-6),
                      boundary=shapely.boundary(parts), n=len(geoms))


@dataclass
class RoofFit:
    """Roofs detected from surface heights, one row per building.

    Attributes:
        roof_type: (n,) object, one of ROOF_TYPES ("flat" for fallbacks and buildings without samples).
        eave, ridge: (n,) float64 heights above the base (NaN without samples).
        ridge_azimuth: (n,) float64 grid azimuth of the ridge (of a shed: its high edge) in degrees clockwise
            from grid north, in [0, 180); NaN for flat and pyramidal roofs and for hipped roofs on
            non-rectangles (whose ridges follow the straight skeleton).
        aspect: (n,) float64 grid azimuth (degrees, [0, 360)) a shed roof faces (down-slope); NaN otherwise.
        ridge_dir: (n, 2) float64 unit ridge direction (NaN where the azimuth is NaN).
        up_dir: (n, 2) float64 unit up-slope direction of sheds (NaN otherwise).
        model: (n,) object, the winning candidate of ROOF_MODELS ("" without a fit).
        samples: (n,) int64 DSM cells inside the footprint; used: (n,) int64 cells left after outlier trimming.
        rms: (n,) float64 root-mean-square residual of the chosen model (m).
        status: (n,) object: "detected", "few_samples" (flat at the median height) or "no_samples".
    """

    roof_type: np.ndarray
    eave: np.ndarray
    ridge: np.ndarray
    ridge_azimuth: np.ndarray
    aspect: np.ndarray
    ridge_dir: np.ndarray
    up_dir: np.ndarray
    model: np.ndarray
    samples: np.ndarray
    used: np.ndarray
    rms: np.ndarray
    status: np.ndarray

    @classmethod
    def empty(cls, n: int) -> RoofFit:
        """n buildings without samples."""
        nan = np.full(n, np.nan)
        return cls(roof_type=np.full(n, "flat", dtype=object), eave=nan.copy(), ridge=nan.copy(),
                   ridge_azimuth=nan.copy(), aspect=nan.copy(), ridge_dir=np.full((n, 2), np.nan),
                   up_dir=np.full((n, 2), np.nan), model=np.full(n, "", dtype=object),
                   samples=np.zeros(n, np.int64), used=np.zeros(n, np.int64), rms=nan.copy(),
                   status=np.full(n, "no_samples", dtype=object))

    def put(self, idx: np.ndarray, other: RoofFit) -> None:
        """Copy `other`'s rows into rows `idx`."""
        for name in self.__dataclass_fields__:
            getattr(self, name)[idx] = getattr(other, name)

    def counts(self) -> dict[str, Any]:
        """Buildings per detected roof type, fallbacks and buildings without samples."""
        det = self.status == "detected"
        types, counts = np.unique(self.roof_type[det].astype(str), return_counts=True)
        return {"detected": {str(t): int(c) for t, c in zip(types, counts)},
                "fallback_flat": int(np.sum(self.status == "few_samples")),
                "no_samples": int(np.sum(self.status == "no_samples"))}


def _profiles(fr: RoofFrames, part: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(len(ROOF_MODELS), m) float64 profile of every candidate at m points of the given parts (NaN: not allowed)."""
    dx, dy = x - fr.centre[part, 0], y - fr.centre[part, 1]
    ax, ay = fr.axis[part, 0], fr.axis[part, 1]
    a, b = fr.half_length[part], fr.half_width[part]
    u = np.clip((dx * ax + dy * ay) / a, -1, 1)
    v = np.clip((-dx * ay + dy * ax) / b, -1, 1)
    out = np.empty((len(ROOF_MODELS), len(x)))
    out[0] = 0.0
    out[1], out[2], out[3], out[4] = (1 + v) / 2, (1 - v) / 2, (1 + u) / 2, (1 - u) / 2
    out[5], out[6] = 1 - np.abs(v), 1 - np.abs(u)
    out[7] = np.minimum(1 - np.abs(u), 1 - np.abs(v))
    out[8] = np.minimum(1.0, np.minimum(a * (1 - np.abs(u)), b * (1 - np.abs(v))) / b)
    odd = np.flatnonzero(~fr.rect[part])
    if len(odd):
        d = _boundary_distance(fr, part[odd], x[odd], y[odd])
        out[8, odd] = np.minimum(1.0, d / fr.reach[part[odd]])
    # pitched roofs other than hipped are built on rectangles only (cim.models.roofs.building_solid)
    out[1:8, ~fr.building_rect[fr.owner[part]]] = np.nan
    return out


def _boundary_distance(fr: RoofFrames, part: np.ndarray, x: np.ndarray, y: np.ndarray,
                       chunk: int = 4_000_000) -> np.ndarray:
    """(m,) distance from points to the boundary of their part: every point against its part's edges, in bulk."""
    rings = shapely.get_rings(fr.parts[np.unique(part)])
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    _, ring_part = shapely.get_rings(fr.parts[np.unique(part)], return_index=True)
    seg_ok = ring[1:] == ring[:-1]  # consecutive vertices of one ring
    a, b = xy[:-1][seg_ok], xy[1:][seg_ok]
    seg_part = np.unique(part)[ring_part[ring[:-1][seg_ok]]]
    order = np.argsort(seg_part, kind="stable")
    a, b, seg_part = a[order], b[order], seg_part[order]
    first = np.searchsorted(seg_part, part)
    count = np.searchsorted(seg_part, part, side="right") - first
    out = np.empty(len(part))
    start = 0
    while start < len(part):  # bounded memory: at most about `chunk` point-edge pairs at a time
        cum = np.cumsum(count[start:])
        stop = start + max(1, int(np.searchsorted(cum, chunk)))
        c = count[start:stop]
        pt = np.repeat(np.arange(start, stop), c)
        seg = np.repeat(first[start:stop] - np.cumsum(c) + c, c) + np.arange(c.sum())
        ab = b[seg] - a[seg]
        ap = np.column_stack([x[pt], y[pt]]) - a[seg]
        t = np.clip(np.einsum("ij,ij->i", ap, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-18), 0, 1)
        d2 = np.einsum("ij,ij->i", ap - t[:, None] * ab, ap - t[:, None] * ab)
        out[start:stop] = np.sqrt(np.minimum.reduceat(d2, np.cumsum(c) - c))
        start = stop
    return out


def _grouped_median(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """(n,) median of `values` per group (NaN for empty groups)."""
    order = np.lexsort((values, group))
    counts = np.bincount(group, minlength=n)
    start = np.cumsum(counts) - counts
    sv = values[order]
    lo = start + (counts - 1) // 2
    hi = start + counts // 2
    ok = counts > 0
    med = np.full(n, np.nan)
    med[ok] = (sv[lo[ok]] + sv[hi[ok]]) / 2
    return med


def _least_squares(prof: np.ndarray, h: np.ndarray, bld: np.ndarray, w: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate and building: intercept, slope, residual sum of squares, criterion ((K, n) float64 each)."""
    cnt = np.bincount(bld, weights=w, minlength=n)
    safe = np.maximum(cnt, 1)
    mean_h = np.bincount(bld, weights=w * h, minlength=n) / safe
    hc = h - mean_h[bld]
    shh = np.bincount(bld, weights=w * hc * hc, minlength=n)
    k = len(ROOF_MODELS)
    icpt, slope, rss = np.empty((k, n)), np.zeros((k, n)), np.empty((k, n))
    icpt[0], rss[0] = mean_h, shh
    bad = np.zeros((k, n), bool)
    for i in range(1, k):
        f = prof[i]
        allowed = np.bincount(bld, weights=w * np.isnan(f), minlength=n) == 0
        f = np.nan_to_num(f)
        mf = np.bincount(bld, weights=w * f, minlength=n) / safe
        fc = f - mf[bld]
        sff = np.bincount(bld, weights=w * fc * fc, minlength=n)
        shf = np.bincount(bld, weights=w * hc * fc, minlength=n)
        s = np.where(sff > 1e-9, shf / np.maximum(sff, 1e-12), 0.0)
        slope[i], icpt[i], rss[i] = s, mean_h - s * mf, np.maximum(shh - s * shf, 0.0)
        bad[i] = ~allowed | (sff <= 1e-9) | (s < MIN_ROOF_RISE)
    params = np.array([1] + [2] * (k - 1), np.float64)[:, None]
    crit = safe * np.log(np.maximum(rss / safe, HEIGHT_NOISE_FLOOR**2)) + params * np.log(safe)
    crit[bad] = np.inf
    return icpt, slope, rss, crit


def _choose(crit: np.ndarray) -> np.ndarray:
    """(n,) index of the best candidate; exact ties go to the first (fewer parameters, then ROOF_MODELS order)."""
    best = crit.min(axis=0)
    return np.argmax(crit <= best + 1e-9 * np.maximum(np.abs(best), 1.0), axis=0)


def fit_roofs(frames: RoofFrames, part: np.ndarray, x: np.ndarray, y: np.ndarray, h: np.ndarray, *,
              min_samples: int = MIN_ROOF_SAMPLES) -> RoofFit:
    """Detect each building's roof from surface heights sampled inside its footprint.

    Every candidate of ROOF_MODELS is fitted by least squares per building (height = eave + rise * profile, the
    profile computed per footprint part in its main-axis frame). The winner minimises the Bayesian information
    criterion n ln(max(RSS / n, 0.02²)) + p ln n with p = 1 for flat and 2 for pitched roofs (the floor stops
    noise-free fits from all scoring minus infinity); pitched candidates rising less than MIN_ROOF_RISE (0.3 m)
    are ruled out, and so are shed, gabled and pyramidal roofs on buildings that are not rectangles (the builder
    makes any pitched roof on them a hipped straight-skeleton roof). Then cells further than
    max(3 x 1.4826 x MAD, 0.5 m) from the winner are dropped as outliers (chimneys, trees, cells mixing ground at
    the eaves) and all candidates are fitted again. Buildings with fewer than `min_samples` cells get a flat roof
    at their median height.

    Args:
        frames: `roof_frames` of the buildings.
        part: (m,) int64 part (index into frames.parts) of each sample.
        x, y: (m,) float64 sample coordinates (cell centres, in the frames' CRS).
        h: (m,) float64 surface height above the building's base at each sample (finite).
        min_samples: fewest cells for a fit.
    """
    n = frames.n
    res = RoofFit.empty(n)
    bld = frames.owner[part]
    if len(bld) == 0:
        return res
    samples = np.bincount(bld, minlength=n)
    res.samples[:] = samples
    few = (samples > 0) & (samples < min_samples)
    median = _grouped_median(h, bld, n)
    res.eave[few] = res.ridge[few] = median[few]
    res.status[few] = "few_samples"
    ok = samples >= min_samples
    prof = _profiles(frames, part, x, y)
    w = np.ones(len(h))
    icpt, slope, rss, crit = _least_squares(prof, h, bld, w, n)
    pick = _choose(crit)
    resid = h - icpt[pick[bld], bld] - slope[pick[bld], bld] * np.nan_to_num(prof[pick[bld], np.arange(len(h))])
    mad = _grouped_median(np.abs(resid), bld, n)
    limit = np.maximum(3 * 1.4826 * mad, OUTLIER_FLOOR)
    keep = np.abs(resid) <= limit[bld]
    kept = np.bincount(bld, weights=keep, minlength=n)
    trim = (kept >= min_samples) & (kept < samples)
    if trim.any():
        cells = np.flatnonzero(trim[bld])  # refit the buildings with outliers only, on their cells
        icpt2, slope2, rss2, crit2 = _least_squares(prof[:, cells], h[cells], bld[cells],
                                                    keep[cells].astype(np.float64), n)
        pick2 = _choose(crit2)
        pick = np.where(trim, pick2, pick)
        icpt, slope, rss = (np.where(trim, a2, a1) for a1, a2 in ((icpt, icpt2), (slope, slope2), (rss, rss2)))
    cols = np.arange(n)
    used = np.where(trim, kept, samples).astype(np.int64)
    a, s = icpt[pick, cols], slope[pick, cols]
    kinds = np.array([k for k, _ in ROOF_MODELS], dtype=object)[pick]
    names = np.array([m for _, m in ROOF_MODELS], dtype=object)[pick]
    res.roof_type[ok] = kinds[ok]
    res.model[ok] = names[ok]
    res.eave[ok], res.ridge[ok] = a[ok], (a + s)[ok]
    res.used[ok] = used[ok]
    res.rms[ok] = np.sqrt(rss[pick, cols] / np.maximum(used, 1))[ok]
    res.status[ok] = "detected"
    # directions from each building's largest part (by samples)
    part_cells = np.bincount(part, minlength=len(frames.parts))
    order = np.lexsort((-part_cells, frames.owner))
    first = np.ones(len(order), bool)
    first[1:] = frames.owner[order][1:] != frames.owner[order][:-1]
    main = np.zeros(n, np.int64)
    main[frames.owner[order][first]] = order[first]
    eu = frames.axis[main]
    ev = np.column_stack([-eu[:, 1], eu[:, 0]])
    along = np.isin(names, ("gabled_along", "shed_v+", "shed_v-")) | ((names == "hipped") & frames.building_rect)
    across = np.isin(names, ("gabled_across", "shed_u+", "shed_u-"))
    ridge = np.full((n, 2), np.nan)
    ridge[along], ridge[across] = eu[along], ev[across]
    up = np.full((n, 2), np.nan)
    for name, vec, sign in (("shed_v+", ev, 1), ("shed_v-", ev, -1), ("shed_u+", eu, 1), ("shed_u-", eu, -1)):
        m = names == name
        up[m] = sign * vec[m]
    ridge[~ok], up[~ok] = np.nan, np.nan
    res.ridge_dir[:], res.up_dir[:] = ridge, up
    res.ridge_azimuth[:] = np.degrees(np.arctan2(ridge[:, 0], ridge[:, 1])) % 180.0
    res.aspect[:] = np.degrees(np.arctan2(-up[:, 0], -up[:, 1])) % 360.0
    return res


__all__ = [
    "MIN_ROOF_SAMPLES",
    "ROOF_MODELS",
    "ROOF_TYPES",
    "BuildingSolid",
    "RoofFit",
    "RoofFrames",
    "as_rectangle",
    "building_solid",
    "fit_roofs",
    "flat_solids",
    "orient_rectangles",
    "rectangle_solids",
    "roof_frames",
]
