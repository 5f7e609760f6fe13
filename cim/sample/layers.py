"""The themed business layers: population, shelters, hazard sources, water-level sensors, height-control
zones, trees (a mixin of the generator).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from shapely import STRtree

from cim.sample.common import _GRID, _RING, _Z, _names, _rng


class _BusinessLayers:
    """The themed business layers of a `_Generator`."""

    def _layers(self, wanted: set[str]) -> None:
        p, bl = self.plan, self.bl
        names = _names()
        t = self.tables
        roads = p.roads
        if "roads" in wanted:
            t["roads"] = (pa.table({"name": pa.array(roads.name, pa.string()),
                                    "class": pa.array(roads.cls, pa.string()),
                                    "width": pa.array(roads.width, pa.float64())}), roads.lines(), "LineString")
        if "river" in wanted:
            clip = shapely.box(*p.bounds)
            t["river"] = (pa.table({"name": ["御河"], "kind": ["河流"], "width": [2 * p.river_half]}),
                          np.array([shapely.intersection(p.river_polygon(), clip)]), "Polygon")
        if "river_centerline" in wanted:
            t["river_centerline"] = (pa.table({"name": ["御河"], "flow": ["北向南"], "width": [2 * p.river_half]}),
                                     np.array([p.river_line()]), "LineString")
        if "wall" in wanted:
            parts = ["西北段", "东北段", "西南段", "东南段"]
            t["wall"] = (pa.table({"name": [f"大同古城墙（{s}）" for s in parts],
                                   "height_m": [14.0] * 4, "built": ["明洪武五年（1372年）"] * 4,
                                   "protection": ["全国重点文物保护单位"] * 4}),
                         np.array(p.walls, dtype=object), "Polygon")
        if "streets" in wanted:
            t["streets"] = (pa.table({"code": [s[1] for s in self.streets], "name": [s[2] for s in self.streets],
                                      "district": ["平城区"] * len(self.streets)}),
                            np.array([s[0] for s in self.streets], dtype=object), "Polygon")
        comm_geom = np.array([c[0] for c in self.communities], dtype=object)
        if "communities" in wanted:
            t["communities"] = (pa.table({"code": [c[1] for c in self.communities],
                                          "name": [c[2] for c in self.communities],
                                          "street": [c[3] for c in self.communities]}), comm_geom, "Polygon")
        if "population" in wanted:
            area = shapely.area(bl.geom)
            res = bl.use == 0
            fa = np.bincount(self.comm_of_building[res], weights=(area * bl.floors)[res],
                             minlength=len(self.communities))
            pop = np.round(fa / 32.0).astype(np.int64)
            km2 = shapely.area(comm_geom) / 1e6
            t["population"] = (pa.table({
                "code": [c[1] for c in self.communities], "name": [c[2] for c in self.communities],
                "street": [c[3] for c in self.communities], "population": pa.array(pop, pa.int64()),
                "households": pa.array(np.round(pop / 2.6).astype(np.int64), pa.int64()),
                "area_km2": pa.array(np.round(km2, 4)), "density": pa.array(np.round(pop / km2, 1)),
                "year": pa.array(np.full(len(pop), 2023, np.int32)),
            }), comm_geom, "Polygon")
        if "shelters" in wanted:
            t["shelters"] = self._shelters()
        if "hazards" in wanted:
            t["hazards"] = self._hazards()
        if "sensors" in wanted:
            t["sensors"] = self._sensors()
        if "height_zones" in wanted:
            t["height_zones"] = self._height_zones()
        if "trees" in wanted or self.rasters:
            self.trees = self._trees(names)
        if "trees" in wanted:
            tr = self.trees
            t["trees"] = (pa.table({"tree_id": tr["id"], "species": tr["species"], "kind": tr["kind"],
                                    "height_m": tr["h"], "crown_m": np.round(2 * tr["r"], 1)}),
                          shapely.points(tr["x"], tr["y"]), "Point")

    def _shelters(self) -> tuple[pa.Table, np.ndarray, str]:
        p = self.plan
        rows = []
        for poly, pname in p.parks:
            if pname == "御河滨河公园":
                continue
            area = shapely.area(poly)
            rows.append((shapely.centroid(poly), f"{pname}应急避难场所", area))
        ys = np.arange(p.y0 + _GRID, p.y0 + p.side, 600.0)
        for k, y in enumerate(ys):
            x = float(p.river_x(y)) + (-1) ** k * (p.river_half + 16)
            rows.append((shapely.Point(x, y), f"御河滨河公园{k + 1}号应急避难场所", 12000.0))
        area = np.array([r[2] for r in rows])
        level = np.where(area >= 20000, "Ⅰ类", np.where(area >= 10000, "Ⅱ类", "Ⅲ类"))
        geom = np.array([r[0] for r in rows], dtype=object)
        comm = self._community_of(shapely.get_x(geom), shapely.get_y(geom))
        table = pa.table({
            "shelter_id": [f"BN{i + 1:03d}" for i in range(len(rows))],
            "name": [r[1] for r in rows], "level": level.tolist(),
            "capacity": pa.array(np.round(area / 2.0).astype(np.int64)),
            "area": pa.array(np.round(area, 1)),
            "community": [self.communities[c][2] for c in comm],
        })
        return table, geom, "Point"

    def _hazards(self) -> tuple[pa.Table, np.ndarray, str]:
        p, bl = self.plan, self.bl
        rng = _rng(self.seed, 6)
        names = _names()
        roads = p.roads
        main = [i for i, c in enumerate(roads.cls) if c == "主干路" and roads.width[i] == 36.0]
        xs = sorted({roads.x0[i] for i in main if roads.x0[i] == roads.x1[i]})
        ys = sorted({roads.y0[i] for i in main if roads.y0[i] == roads.y1[i]})
        sq = (p.cx - 420, p.cy - 420, p.cx + 420, p.cy + 420)
        cand = [(x, y) for y in ys for x in xs
                if not (sq[0] < x < sq[2] and sq[1] < y < sq[3]) and abs(x - p.rx) > 150]
        n_gas = min(len(cand), max(3, round(p.side ** 2 / 700_000)))
        pick = rng.choice(len(cand), size=n_gas, replace=False) if cand else np.array([], int)
        geoms, rows = [], []
        comp = names["hazard_companies"]
        for k, i in enumerate(sorted(pick.tolist())):
            x, y = cand[i]
            geoms.append(shapely.Point(x + 21, y + 21))
            rows.append((f"{comp[k % len(comp)]}平城第{k + 1}加油站", "加油站",
                         "四级" if rng.random() < 0.6 else "三级", None))
        ind = np.flatnonzero(bl.use == 5)
        wh = ind[rng.random(len(ind)) < 0.3] if len(ind) else ind
        codes = self.tables["buildings"][0].column("code").to_pylist()
        bnames = self.tables["buildings"][0].column("name").to_pylist()
        for i in wh.tolist():
            kind = "危化品仓库" if rng.random() < 0.7 else "液化气储配站"
            geoms.append(shapely.Point((bl.x0[i] + bl.x1[i]) / 2, (bl.y0[i] + bl.y1[i]) / 2))
            rows.append((f"{bnames[i]}{kind}", kind, ["一级", "二级", "三级"][int(rng.random() * 3)], codes[i]))
        geom = np.array(geoms, dtype=object)
        comm = self._community_of(shapely.get_x(geom), shapely.get_y(geom)) if len(geom) else np.array([], int)
        table = pa.table({
            "hazard_id": pa.array([f"WX{i + 1:03d}" for i in range(len(rows))], pa.string()),
            "name": pa.array([r[0] for r in rows], pa.string()),
            "kind": pa.array([r[1] for r in rows], pa.string()),
            "level": pa.array([r[2] for r in rows], pa.string()),
            "building_code": pa.array([r[3] for r in rows], pa.string()),
            "community": pa.array([self.communities[c][2] for c in comm], pa.string()),
        })
        return table, geom, "Point"

    def _sensors(self) -> tuple[pa.Table, np.ndarray, str]:
        p = self.plan
        rng = _rng(self.seed, 7)
        ys = np.arange(p.y0 + p.side - 125.0, p.y0, -250.0)
        xs = p.river_x(ys)
        bed = self.terrain(xs, ys)
        bank = np.minimum(self.terrain(xs - p.river_half - 8, ys), self.terrain(xs + p.river_half + 8, ys))
        water = np.round(bed + 1.2 + rng.random(len(ys)), 2)
        warning = np.round(bank - 0.6, 2)
        alarm = int(rng.integers(len(ys)))
        water[alarm] = warning[alarm] + 0.15
        n = len(ys)
        table = pa.table({
            "sensor_id": [f"SW{i + 1:03d}" for i in range(n)],
            "name": [f"御河{i + 1}号水位站" for i in range(n)],
            "river": ["御河"] * n,
            "water_level_m": pa.array(water), "warning_level_m": pa.array(warning),
            "status": ["超警戒" if water[i] >= warning[i] else "正常" for i in range(n)],
            "updated_at": [f"2024-07-20T08:{(5 * i) % 60:02d}:00+08:00" for i in range(n)],
        })
        return table, shapely.points(xs, ys), "Point"

    def _height_zones(self) -> tuple[pa.Table, np.ndarray, str]:
        p = self.plan
        bbox = shapely.box(*p.bounds)
        core = shapely.box(p.cx - 400, p.cy - 400, p.cx + 400, p.cy + 400)
        ring = shapely.difference(shapely.buffer(core, 300, join_style="mitre"), core)
        corridor = shapely.difference(shapely.buffer(p.river_line(), 150, cap_style="flat"),
                                      shapely.union(core, ring))
        cbd = shapely.difference(shapely.box(p.rx + 250, p.cy - 300, p.rx + 850, p.cy + 300),
                                 shapely.union_all([core, ring, corridor]))
        rest = shapely.difference(bbox, shapely.union_all([core, ring, corridor, cbd]))
        zones = [(core, "古城核心保护区", 12.0, "大同历史文化名城保护规划"),
                 (ring, "古城风貌协调区", 24.0, "大同历史文化名城保护规划"),
                 (corridor, "御河生态廊道", 36.0, "御河滨河地区控制性详细规划"),
                 (cbd, "御东商务核心区", 150.0, "御东新区控制性详细规划"),
                 (rest, "一般控制区", 80.0, "平城区控制性详细规划")]
        geom = np.array([shapely.intersection(z[0], bbox) for z in zones], dtype=object)
        table = pa.table({"zone_code": [f"KG{i + 1:02d}" for i in range(len(zones))],
                          "name": [z[1] for z in zones], "max_height_m": [z[2] for z in zones],
                          "basis": [z[3] for z in zones]})
        return table, geom, "Polygon"

    def _trees(self, names: dict[str, Any]) -> dict[str, np.ndarray]:
        """Street trees, park trees, riverside willows and courtyard trees, clear of buildings, roads and water."""
        p, bl = self.plan, self.bl
        rng = _rng(self.seed, 8)
        scale = max(1.0, p.side / 4000)
        xs, ys, kinds = [], [], []
        roads = p.roads
        for i, cls in enumerate(roads.cls):
            if cls not in ("主干路", "次干路"):
                continue
            x0, y0, x1, y1, hw = roads.x0[i], roads.y0[i], roads.x1[i], roads.y1[i], roads.width[i] / 2
            length = abs(x1 - x0) + abs(y1 - y0)
            t = np.arange(4.0, length, 8.0 * scale)
            for off in (-hw - 2.5, hw + 2.5):
                if x0 == x1:
                    xs.append(np.full(len(t), x0 + off))
                    ys.append(min(y0, y1) + t)
                else:
                    xs.append(min(x0, x1) + t)
                    ys.append(np.full(len(t), y0 + off))
                kinds.append(np.full(len(t), 0))
        for poly, _ in p.parks:
            bx0, by0, bx1, by1 = shapely.bounds(poly)
            k = int(shapely.area(poly) / (180.0 * scale * scale))
            xs.append(bx0 + rng.random(k) * (bx1 - bx0))
            ys.append(by0 + rng.random(k) * (by1 - by0))
            kinds.append(np.full(k, 1))
        yy = np.arange(p.y0 + 5, p.y0 + p.side, 10.0 * scale)
        for off in (-p.river_half - 6, p.river_half + 6):
            xs.append(p.river_x(yy) + off)
            ys.append(yy)
            kinds.append(np.full(len(yy), 2))
        ring = np.flatnonzero((bl.kind == _RING) & (bl.zone == _Z["courtyard"]))
        ring = ring[rng.random(len(ring)) < 0.4]
        xs.append((bl.x0[ring] + bl.x1[ring]) / 2)
        ys.append((bl.y0[ring] + bl.y1[ring]) / 2)
        kinds.append(np.full(len(ring), 3))
        x, y, kind = np.concatenate(xs), np.concatenate(ys), np.concatenate(kinds)
        r = np.where(kind == 3, 2.0, 2.2 + 1.6 * rng.random(len(x)))
        h = np.where(kind == 3, 6 + 3 * rng.random(len(x)), 7 + 8 * rng.random(len(x)))
        species_pool = np.asarray(names["tree_species"], dtype=object)
        species = np.where(kind == 2, "垂柳", species_pool[(rng.random(len(x)) * len(species_pool)).astype(int)])
        crowns = shapely.buffer(shapely.points(x, y), r, quad_segs=4)
        bbox = shapely.box(*p.bounds)
        keep = shapely.contains(bbox, crowns)
        keep[STRtree(bl.geom).query(crowns, predicate="intersects")[0]] = False
        blocked = np.concatenate([roads.surfaces(), [p.river_polygon()], np.array(p.walls, dtype=object)])
        keep[STRtree(blocked).query(shapely.points(x, y), predicate="intersects")[0]] = False
        idx = np.flatnonzero(keep)
        if len(idx) > 400_000:
            idx = np.sort(rng.choice(idx, 400_000, replace=False))
        kind_names = np.array(["行道树", "公园绿地", "滨河绿地", "庭院"], dtype=object)
        return {"x": np.round(x[idx], 2), "y": np.round(y[idx], 2), "r": np.round(r[idx], 2),
                "h": np.round(h[idx], 1), "kind": kind_names[kind[idx]], "species": species[idx],
                "id": np.array([f"SM{i + 1:06d}" for i in range(len(idx))], dtype=object)}
