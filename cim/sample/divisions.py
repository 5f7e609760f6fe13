"""Administrative divisions (streets and communities), building codes and addresses, and the buildings'
attribute table (a mixin of the generator).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from cim.sample.buildings import _Buildings
from cim.sample.common import (
    _Z,
    ADDRESS_PREFIX,
    ADMIN_CODE,
    ROOF_TYPES,
    USES,
    _join,
    _names,
    _nearest,
    _pool,
    _rng,
    _str,
)


class _Divisions:
    """Administrative divisions, building codes, addresses and the buildings' attribute table of a `_Generator`."""

    def _admin(self) -> None:
        """Communities on a grid along main roads, streets as 2 x 2 (or larger) groups of them."""
        p = self.plan
        names = _names()
        ncx, ncy = len(p.comm_x) - 1, len(p.comm_y) - 1
        g = 2 if max(ncx, ncy) <= 60 else math.ceil(max(ncx, ncy) / 30)
        nsx, nsy = math.ceil(ncx / g), math.ceil(ncy / g)
        street_names = _pool(names["streets"], nsx * nsy, "街道")
        comm_names = _pool(names["communities"], ncx * ncy, "社区")
        comm_rows: list[tuple[Any, str, str, str, int, int]] = []
        street_rows = []
        comm_index = np.zeros((ncy, ncx), np.int64)
        counter: dict[int, int] = {}
        for sj in range(nsy):  # north to south
            for si in range(nsx):
                sidx = len(street_rows)
                scode = f"{ADMIN_CODE}{sidx + 1:03d}"
                rows = range(ncy - 1 - sj * g, max(-1, ncy - 1 - (sj + 1) * g), -1)
                cols = range(si * g, min(ncx, (si + 1) * g))
                street_rows.append((shapely.box(p.comm_x[cols[0]], p.comm_y[rows[-1]], p.comm_x[cols[-1] + 1],
                                                p.comm_y[rows[0] + 1]), scode, street_names[sidx]))
                for j in rows:
                    for i in cols:
                        k = counter.get(sidx, 0) + 1
                        counter[sidx] = k
                        comm_index[j, i] = len(comm_rows)
                        comm_rows.append((shapely.box(p.comm_x[i], p.comm_y[j], p.comm_x[i + 1], p.comm_y[j + 1]),
                                          f"{scode}{k:03d}", comm_names[len(comm_rows)], street_names[sidx],
                                          sidx, i))
        self.streets = street_rows
        self.communities = comm_rows
        self.comm_index = comm_index

    def _community_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.plan
        i = np.clip(np.searchsorted(p.comm_x, x, side="right") - 1, 0, len(p.comm_x) - 2)
        j = np.clip(np.searchsorted(p.comm_y, y, side="right") - 1, 0, len(p.comm_y) - 2)
        return self.comm_index[j, i]

    def _assign(self, bl: _Buildings) -> np.ndarray:
        """Community per building and a stable order: by community, then north to south, west to east."""
        cxs, cys = (bl.x0 + bl.x1) / 2, (bl.y0 + bl.y1) / 2
        comm = self._community_of(cxs, cys)
        order = np.lexsort((np.round(cxs, 2), -np.round(cys, 2), comm))
        self.comm_of_building = comm[order]
        return order

    def _building_table(self) -> tuple[pa.Table, np.ndarray, str]:
        """Attributes of the buildings (strings assembled with Arrow kernels: fast and compact for millions)."""
        bl, p = self.bl, self.plan
        n = len(bl.kind)
        names = _names()
        comm = self.comm_of_building
        starts = np.r_[0, np.flatnonzero(np.diff(comm)) + 1]
        seq = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        comm_codes = pa.array([c[1] for c in self.communities], pa.string())
        code = _join(comm_codes.take(comm), pc.utf8_lpad(_str(seq + 1), width=5, padding="0"))
        street = pa.array([c[3] for c in self.communities], pa.string()).take(comm)
        # address: nearest road, number from the position along it (odd/even by side), duplicates numbered
        cx, cy = (bl.x0 + bl.x1) / 2, (bl.y0 + bl.y1) / 2
        road = _nearest(p.roads.lines(), shapely.points(cx, cy))
        rx0, ry0 = np.asarray(p.roads.x0)[road], np.asarray(p.roads.y0)[road]
        ns = rx0 == np.asarray(p.roads.x1)[road]
        pos = np.where(ns, np.abs(cy - ry0), np.abs(cx - rx0))
        even = np.where(ns, cx > rx0, cy < ry0)
        num = 2 * (pos // 12).astype(np.int64) + 1 + even
        order = np.lexsort((np.arange(n), num, road))
        key_change = np.r_[True, (np.diff(road[order]) != 0) | (np.diff(num[order]) != 0)]
        gstart = np.maximum.accumulate(np.where(key_change, np.arange(n), 0))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - gstart
        gsize = np.empty(n, np.int64)
        sizes = np.diff(np.r_[np.flatnonzero(key_change), n])
        gsize[order] = np.repeat(sizes, sizes)
        zone = bl.zone
        traditional = np.isin(zone, (_Z["courtyard"], _Z["oldshop"], _Z["temple"], _Z["village"]))
        num_s = pc.if_else(pa.array(traditional & (rank > 0)), _join(_str(num), "-", _str(rank)), _str(num))
        extra = pc.if_else(pa.array(~traditional & (gsize > 1)), _join(_str(rank + 1), "号楼"), "")
        road_names = pa.array(p.roads.name, pa.string()).take(road)
        address = _join(ADDRESS_PREFIX, street, road_names, num_s, "号", extra)
        # names: by zone, from the block (group) label and the building's rank in its group
        grp = bl.group
        gorder = np.lexsort((np.arange(n), grp))
        gchange = np.r_[True, np.diff(grp[gorder]) != 0]
        gs = np.maximum.accumulate(np.where(gchange, np.arange(n), 0))
        grank = np.empty(n, np.int64)
        grank[gorder] = np.arange(n) - gs + 1
        single = pa.array(np.bincount(grp, minlength=len(p.groups["zone"]))[grp] == 1)
        labels = pa.array(self._group_labels(), pa.string()).take(grp)
        k_s = _str(grank)
        temples = np.full(n, None, dtype=object)
        mt = np.flatnonzero(zone == _Z["temple"])
        temples[mt] = _pool(names["temples"], len(mt))
        name = pa.array(temples, pa.string())
        for zname, expr in (
            ("courtyard", lambda: _join(road_names, num_s, "号院")),
            ("oldshop", lambda: _join(road_names, num_s, "号商铺")),
            ("slab", lambda: _join(labels, k_s, "号楼")),
            ("tower", lambda: _join(labels, k_s, "号楼")),
            ("village", lambda: _join(labels, k_s, "号民居")),
            ("commercial", lambda: pc.if_else(single, labels, _join(labels, k_s, "号楼"))),
            ("office", lambda: pc.if_else(single, labels, _join(labels, k_s, "号楼"))),
            ("school", lambda: _join(labels, k_s, "号教学楼")),
            ("hospital", lambda: _join(labels, k_s, "号楼")),
            ("industrial", lambda: _join(labels, k_s, "号厂房")),
        ):
            mz = zone == _Z[zname]
            if mz.any():
                name = pc.if_else(pa.array(mz), expr(), name)
        # fallbacks for the builder: ~3% without height, ~1% without height and floors
        rng = _rng(self.seed, 5)
        perm = rng.permutation(n)
        n3, n1 = int(round(0.03 * n)), int(round(0.01 * n))
        no_h = np.zeros(n, bool)
        no_h[perm[: n3 + n1]] = True
        no_f = np.zeros(n, bool)
        no_f[perm[n3: n3 + n1]] = True
        communities = pa.array([c[2] for c in self.communities], pa.string()).take(comm)
        table = pa.table({
            "code": code,
            "name": name,
            "use": pa.array(USES, pa.string()).take(bl.use),
            "floors": pa.array(bl.floors.astype(np.int32), pa.int32(), mask=no_f),
            "height": pa.array(bl.height, pa.float64(), mask=no_h),
            "roof_type": pa.array(ROOF_TYPES, pa.string()).take(bl.roof),
            "eave_height": pa.array(bl.eave, pa.float64(), mask=no_h),
            "ridge_height": pa.array(bl.ridge, pa.float64(), mask=no_h),
            "year_built": pa.array(bl.year.astype(np.int32), pa.int32()),
            "address": address,
            "street": street,
            "community": communities,
        })
        return table, bl.geom, "Polygon"

    def _group_labels(self) -> np.ndarray:
        """A name per block group (compound, school, factory, ...) from the name pools."""
        names = _names()
        zones = self.plan.groups["zone"]
        labels = np.empty(len(zones), dtype=object)
        labels[:] = ""
        for zname, make in (
            ("slab", lambda k: _pool(names["compounds"], k)),
            ("tower", lambda k: _pool(names["compounds"][::-1], k)),
            ("village", lambda k: _pool(names["villages"], k, "村")),
            ("commercial", lambda k: [f"{c}{names['commercial_kinds'][i % 6]}"
                                      for i, c in enumerate(_pool(names["commercial"], k))]),
            ("office", lambda k: _pool(names["offices"], k, "大厦")),
            ("school", lambda k: [f"大同市第{i + 1}中学" for i in range(k)]),
            ("hospital", lambda k: [f"大同市第{i + 1}人民医院" for i in range(k)]),
            ("industrial", lambda k: [f"大同{c}厂" for c in _pool(names["companies"], k)]),
        ):
            idx = np.flatnonzero(zones == _Z[zname])
            labels[idx] = make(len(idx))
        return labels
