"""The geometry of lines and polygons in a vector tile, with numpy: rings back to back (`Rings`), moved to tile
units, rounded, without repeated points or collapsed rings, polygon rings in the MVT 2.1 winding, as the protobuf
command and parameter integers of each feature (`tile_geometries`); GEOS checks only polygons that are not one
convex ring. Used by `tiles.mvt` for line and polygon layers."""

from __future__ import annotations

from typing import NamedTuple

import morecantile
import numpy as np
import shapely

from tiles import pbf

_LINESTRING, _POLYGON = 2, 3  # MVT GeomType


class Rings(NamedTuple):
    """Lines or polygon rings of many features, back to back (the layout of `shapely.to_ragged_array`).

    Attributes:
        coords: (p, 2) float64 coordinates; polygon rings closed (last point = first).
        offsets: (r + 1,) int64 first coordinate of each ring or line.
        feature: (r,) int64 feature of each ring or line, non-decreasing.
        exterior: (r,) bool the first ring of each polygon (for lines: every part).
    """

    coords: np.ndarray
    offsets: np.ndarray
    feature: np.ndarray
    exterior: np.ndarray

    @classmethod
    def of(cls, geoms: np.ndarray) -> Rings:
        """The rings of non-empty Polygons/MultiPolygons, or the parts of LineStrings/MultiLineStrings."""
        if not len(geoms):
            return cls(np.zeros((0, 2)), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                       np.zeros(0, dtype=bool))
        gtype, coords, offsets = shapely.to_ragged_array(geoms, include_z=False)
        levels = [np.asarray(o, dtype=np.int64) for o in offsets]
        exterior = np.ones(len(levels[0]) - 1, dtype=bool)
        if gtype in (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON):
            exterior[:] = False
            exterior[levels[1][:-1][np.diff(levels[1]) > 0]] = True
        feature_rings = np.arange(len(levels[0]))
        for level in levels[1:]:
            feature_rings = feature_rings[level]
        if len(levels) == 1:
            feature_rings = np.arange(len(geoms) + 1)
        feature = np.repeat(np.arange(len(geoms)), np.diff(feature_rings))
        return cls(np.asarray(coords, dtype=np.float64), levels[0], feature, exterior)

    def take(self, features: np.ndarray) -> Rings:
        """The rings of some features (renumbered 0..k-1 in the given order)."""
        features = np.asarray(features, dtype=np.int64)
        lo, hi = np.searchsorted(self.feature, features), np.searchsorted(self.feature, features + 1)
        count = hi - lo
        rings = pbf.ranges(lo, count)
        sizes = np.diff(self.offsets)[rings]
        points = pbf.ranges(self.offsets[rings], sizes)
        return Rings(self.coords[points], np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                     np.repeat(np.arange(len(features)), count), self.exterior[rings])


def _family_parts(geoms: np.ndarray, kind: int) -> np.ndarray:
    """Geometries reduced to their polygonal (kind 3) or lineal (kind 2) parts, as multi-geometries where mixed
    (clipping and repairs can return collections with points or lines); empty where nothing is left."""
    single, multi = (3, 6) if kind == _POLYGON else (1, 5)
    types = shapely.get_type_id(geoms)
    bad = np.flatnonzero((types != single) & (types != multi) & ~shapely.is_empty(geoms))
    if not len(bad):
        return geoms
    out = geoms.copy()
    parts, index = shapely.get_parts(geoms[bad], return_index=True)
    while True:  # collections inside collections
        t = shapely.get_type_id(parts)
        nested = t >= 4
        if not nested.any():
            break
        sub, sub_index = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], sub])
        index = np.concatenate([index[~nested], index[nested][sub_index]])
    keep = (shapely.get_type_id(parts) == single) & ~shapely.is_empty(parts)
    build = shapely.multipolygons if kind == _POLYGON else shapely.multilinestrings
    fixed = np.full(len(bad), shapely.from_wkt("MULTIPOLYGON EMPTY" if kind == _POLYGON else "MULTILINESTRING EMPTY"),
                    dtype=object)
    if keep.any():
        fixed[np.unique(index[keep])] = build(parts[keep], indices=index[keep])
    out[bad] = fixed
    return out


class _Clean(NamedTuple):
    """Rings in tile units after rounding: points without the closing repeat, every ring kept."""

    points: np.ndarray  # (p, 2) int64
    counts: np.ndarray  # (r,) int64 points of each ring
    feature: np.ndarray  # (r,) int64 non-decreasing


def _clean(rings: Rings, kind: int, origin: tuple[float, float], scale: tuple[float, float]
           ) -> tuple[_Clean, np.ndarray]:
    """Move rings to tile units ((x - origin) * scale per axis: a negative y scale for y down), round, drop repeated
    points and collapsed rings, orient polygon rings.

    Returns:
        (the rings left, (r,) bool whether each ring left is a convex ring alone in its feature: such a polygon is
        valid without asking GEOS).
    """
    c = rings.coords
    xy = np.empty(c.shape, dtype=np.int64)
    xy[:, 0] = np.floor((c[:, 0] - origin[0]) * scale[0] + 0.5)
    xy[:, 1] = np.floor((c[:, 1] - origin[1]) * scale[1] + 0.5)
    sizes = np.diff(rings.offsets)
    part = np.repeat(np.arange(len(sizes)), sizes)
    keep = np.ones(len(xy), dtype=bool)
    if kind == _POLYGON:
        keep[rings.offsets[1:][sizes > 0] - 1] = False  # the closing point: ClosePath draws it
    keep[1:] &= ~((xy[1:] == xy[:-1]).all(axis=1) & (part[1:] == part[:-1]))
    if kind == _POLYGON:  # the last point left equal to the first (a repeat just before the closing point)
        idx = np.flatnonzero(keep)
        last = idx[np.flatnonzero(np.diff(part[idx], append=-1) != 0)]
        first = rings.offsets[:-1][part[last]]
        keep[last[(xy[last] == xy[first]).all(axis=1) & (last != first)]] = False
    counts = np.bincount(part[keep], minlength=len(sizes))
    pts, ppart = xy[keep], part[keep]
    ring_of_point = np.repeat(np.arange(len(sizes)), counts)
    if kind == _LINESTRING:
        good = counts >= 2
        convex = np.zeros(len(sizes), dtype=bool)
    else:
        start = np.cumsum(counts) - counts
        nxt = np.arange(len(pts)) + 1
        wrap = nxt == np.repeat(start + counts, counts)
        nxt[wrap] = np.repeat(start, counts)[wrap]
        cross = pts[:, 0] * pts[nxt, 1] - pts[nxt, 0] * pts[:, 1]
        area2 = np.bincount(ring_of_point, weights=cross, minlength=len(sizes))
        ext = rings.exterior
        polygon = np.cumsum(ext) - 1
        alive_polygon = np.zeros(int(ext.sum()), dtype=bool)
        alive_polygon[polygon[ext]] = (area2[ext] != 0) & (counts[ext] >= 3)
        good = (counts >= 3) & (area2 != 0) & alive_polygon[polygon]
        # exterior rings positive by the surveyor's formula in tile coordinates (y down), interior rings negative
        flip = np.repeat(np.where(ext, area2 < 0, area2 > 0), counts)
        if flip.any():
            within = np.arange(len(pts)) - np.repeat(start, counts)
            src = np.where(flip, np.repeat(start + counts - 1, counts) - within, np.arange(len(pts)))
            pts = pts[src]
        # a lone convex ring: every turn to the same side, no reversal, one full turn
        prv = np.arange(len(pts)) - 1
        first_pt = np.arange(len(pts)) == np.repeat(start, counts)
        prv[first_pt] = np.repeat(start + counts - 1, counts)[first_pt]
        nxt_pts = pts[nxt] - pts
        prv_pts = pts - pts[prv]
        turn = prv_pts[:, 0] * nxt_pts[:, 1] - prv_pts[:, 1] * nxt_pts[:, 0]
        dot = (prv_pts * nxt_pts).sum(axis=1)
        left_turns = np.bincount(ring_of_point, weights=(turn < 0) | ((turn == 0) & (dot < 0)),
                                 minlength=len(sizes)) == 0
        angle = np.bincount(ring_of_point, weights=np.arctan2(turn, dot), minlength=len(sizes))
        lone = np.bincount(rings.feature, minlength=int(rings.feature[-1]) + 1 if len(sizes) else 0)[rings.feature] == 1
        convex = lone & left_turns & (np.abs(angle - 2 * np.pi) < 1e-6)
    keep_pts = good[ppart]
    return _Clean(pts[keep_pts], counts[good], rings.feature[good]), convex[good]


def tile_geometries(rings: Rings, kind: int, bounds: morecantile.commons.BoundingBox,
                    extent: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines or polygons (already clipped to the buffered tile and simplified, Web Mercator) as MVT geometry
    command streams.

    Coordinates go to tile units (y down) and are rounded, repeated points are dropped, lines left with fewer than
    2 distinct points and polygon rings with no area are dropped (an exterior ring with its holes); exterior rings
    get a positive surveyor's-formula area in tile coordinates and interior rings a negative one (MVT 2.1, 4.3.4.4).
    Polygons that rounding made invalid (checked by GEOS unless they are a lone convex ring) are repaired: GEOS
    make_valid, then snap-rounded to the unit grid.

    Args:
        rings: the rings of n features of one family (kind 2: lines, 3: polygons).
        kind: MVT GeomType, 2 (LINESTRING) or 3 (POLYGON).
        bounds: the tile's Web Mercator bounds.
        extent: tile extent in units.

    Returns:
        (kept (m,) int64 features left (their positions in `rings`), data uint8 the varint-encoded command streams
        back to back in that order, lengths (m,) int64 bytes of each feature's stream).
    """
    scale = extent / (bounds.right - bounds.left)
    clean, convex = _clean(rings, kind, (bounds.left, bounds.top), (scale, -scale))
    if kind == _POLYGON and len(clean.counts):
        doubt = np.zeros(int(rings.feature[-1]) + 1, dtype=bool)
        doubt[clean.feature[~convex]] = True
        ring_doubt = doubt[clean.feature]
        if ring_doubt.any():
            suspects = np.flatnonzero(doubt)
            geoms = _polygons(_Clean(clean.points[np.repeat(ring_doubt, clean.counts)], clean.counts[ring_doubt],
                                     clean.feature[ring_doubt]), suspects)
            bad = ~shapely.is_valid(geoms)
            if bad.any():
                fixed = _family_parts(shapely.set_precision(_family_parts(shapely.make_valid(geoms[bad]), kind), 1.0),
                                      kind)
                fixed_ids = suspects[bad]
                live = ~shapely.is_empty(fixed)
                repaired, _ = _clean(Rings.of(fixed[live]), kind, (0.0, 0.0), (1.0, 1.0))
                drop = np.zeros(len(doubt), dtype=bool)
                drop[fixed_ids] = True
                ring_keep = ~drop[clean.feature]
                ids = fixed_ids[live]
                clean = _Clean(np.concatenate([clean.points[np.repeat(ring_keep, clean.counts)], repaired.points]),
                               np.concatenate([clean.counts[ring_keep], repaired.counts]),
                               np.concatenate([clean.feature[ring_keep], ids[repaired.feature]]))
                order = np.argsort(clean.feature, kind="stable")
                if np.any(np.diff(clean.feature) < 0):
                    start = np.cumsum(clean.counts) - clean.counts
                    clean = _Clean(clean.points[pbf.ranges(start[order], clean.counts[order])], clean.counts[order],
                                   clean.feature[order])
    return _commands(clean, closed=kind == _POLYGON)


def _polygons(clean: _Clean, features: np.ndarray) -> np.ndarray:
    """(k,) object MultiPolygons of cleaned rings (one per entry of `features`, the ids in `clean.feature`), in tile
    units, for a validity check (rings re-closed; a positive ring starts a new polygon)."""
    start = np.cumsum(clean.counts) - clean.counts
    closed = pbf.ranges(start, clean.counts + 1)
    within = closed - np.repeat(start, clean.counts + 1)
    closed = np.where(within == np.repeat(clean.counts, clean.counts + 1), np.repeat(start, clean.counts + 1), closed)
    coords = clean.points[closed].astype(np.float64)
    ring_offsets = np.concatenate([[0], np.cumsum(clean.counts + 1)])
    # exterior rings were oriented positive, holes negative
    c = clean.points
    nxt = np.arange(len(c)) + 1
    wrap = nxt == np.repeat(start + clean.counts, clean.counts)
    nxt[wrap] = np.repeat(start, clean.counts)[wrap]
    ring_of_point = np.repeat(np.arange(len(clean.counts)), clean.counts)
    area2 = np.bincount(ring_of_point, weights=c[:, 0] * c[nxt, 1] - c[nxt, 0] * c[:, 1], minlength=len(start))
    exterior = np.flatnonzero(area2 > 0)
    part_offsets = np.concatenate([exterior, [len(start)]])
    local = np.searchsorted(features, clean.feature[exterior])
    geom_offsets = np.searchsorted(local, np.arange(len(features) + 1))
    return shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, coords,
                                     (ring_offsets, part_offsets, geom_offsets))


def _commands(clean: _Clean, closed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode cleaned rings (closed: polygon rings, MoveTo + LineTo + ClosePath) or line parts (MoveTo + LineTo).

    Returns:
        (features (m,) int64 ids having at least one ring, data uint8 their varint words back to back, lengths (m,)
        int64 bytes per feature).
    """
    pts, counts, feature = clean
    if not len(counts):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    pfeature = np.repeat(feature, counts)
    prev = np.zeros_like(pts)
    prev[1:] = pts[:-1]
    feature_start = np.ones(len(pts), dtype=bool)
    feature_start[1:] = pfeature[1:] != pfeature[:-1]
    prev[feature_start] = 0  # the cursor starts at (0, 0) in every feature and carries over between its parts
    delta = pbf.zigzag(pts - prev)
    words_per = 2 * counts + (3 if closed else 2)
    word_start = np.cumsum(words_per) - words_per
    words = np.empty(int(words_per.sum()), dtype=np.uint64)
    words[word_start] = 9  # MoveTo, count 1
    words[word_start + 3] = (2 | ((counts - 1) << 3)).astype(np.uint64)  # LineTo, count k - 1
    if closed:
        words[word_start + words_per - 1] = 15  # ClosePath, count 1
    j = np.arange(len(pts)) - np.repeat(np.cumsum(counts) - counts, counts)
    at = np.repeat(word_start, counts) + 1 + 2 * j + (j >= 1)
    words[at], words[at + 1] = delta[:, 0], delta[:, 1]
    data, word_lengths = pbf.assemble([pbf.varints(words)])
    ids, first = np.unique(feature, return_index=True)
    bytes_per_ring = np.add.reduceat(word_lengths, word_start)
    lengths = np.add.reduceat(bytes_per_ring, first)
    return ids, data, lengths.astype(np.int64)


__all__ = ["Rings", "tile_geometries"]
