"""Constants, manifest metadata and small helpers shared by every part of the sample-city generator."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from shapely import STRtree

from cim.sources.crs import transformer

CRS = "EPSG:4547"


CENTER_LONLAT = (113.30, 40.09)


MANIFEST = "sample.json"


OBLIQUE_DIR = "oblique"  # the synthetic oblique production inside a city folder (when written)


GENERATOR = "cim.sample"


DEFAULT_BUILDINGS = 2500


DEFAULT_SEED = 7


ADMIN_CODE = "140213"  # 平城区


ADDRESS_PREFIX = "山西省大同市平城区"


ROOF_TYPES = ("flat", "gabled", "hipped", "pyramidal", "shed")


USES = ("住宅", "商业", "办公", "教育", "医疗", "工业", "文物")


VECTOR_LAYERS = ("buildings", "roads", "river", "river_centerline", "wall", "streets", "communities", "population",
                 "shelters", "hazards", "sensors", "height_zones", "trees")


MAX_DEM_PX = 4000


MAX_ORTHO_PX = 8000


Progress = Callable[[str, float], None]


FootprintFormat = Literal["gpkg", "parquet"]


_GRID = 200.0  # spacing of the road grid (m)


_BASE_SIDE = 2000.0  # side of the smallest city (m)


_NICE_RES = (0.5, 1.0, 2.0, 2.5, 4.0, 5.0, 8.0, 10.0, 20.0, 25.0, 40.0, 50.0)  # all divide _GRID


_SUN_AZIMUTH, _SUN_ELEVATION = 135.0, 55.0


# zones of blocks (index = zone id) and their lot sizes (m along x, y); old-town rows set their own depth
ZONES = ("courtyard", "temple", "oldshop", "slab", "tower", "village", "commercial", "office", "school", "hospital",
         "industrial", "park")


_Z = {name: i for i, name in enumerate(ZONES)}


_LOT = {"slab": (64.0, 31.0), "tower": (42.0, 42.0), "village": (12.0, 13.0), "commercial": (64.0, 56.0),
        "office": (56.0, 56.0), "school": (90.0, 70.0), "hospital": (80.0, 60.0), "industrial": (84.0, 64.0)}


_RECT, _L, _U, _RING, _TWO_Y, _TWO_X = range(6)  # footprint shapes


_FLAT, _GABLED, _HIPPED, _PYRAMIDAL, _SHED = range(5)  # roof types (index into ROOF_TYPES)


# manifest metadata per file: title_zh, title_en, theme (CIM catalogue), department, security
_META: dict[str, tuple[str, str, str, str, str]] = {
    "dem": ("数字高程模型", "Digital elevation model", "时空基础/数字高程模型", "市自然资源和规划局", "internal"),
    "dsm": ("数字表面模型", "Digital surface model", "时空基础/数字表面模型", "市自然资源和规划局", "internal"),
    "ortho": ("数字正射影像", "Orthophoto", "时空基础/遥感影像", "市自然资源和规划局", "internal"),
    "buildings": ("房屋建筑", "Buildings", "时空基础/三维模型/建筑", "市住房和城乡建设局", "internal"),
    "roads": ("道路中心线", "Road centre lines", "时空基础/电子地图/道路", "市交通运输局", "public"),
    "river": ("河流水面", "River surface", "时空基础/电子地图/水系", "市水务局", "public"),
    "river_centerline": ("河流中心线", "River centre line", "时空基础/电子地图/水系", "市水务局", "public"),
    "wall": ("古城墙", "City wall", "规划管控/历史文化保护", "市文物局", "public"),
    "streets": ("街道", "Sub-district (street) boundaries", "时空基础/行政区划", "市民政局", "public"),
    "communities": ("社区", "Community boundaries", "时空基础/行政区划", "市民政局", "public"),
    "population": ("社区人口", "Population by community", "公共专题/人口", "市统计局", "internal"),
    "shelters": ("应急避难场所", "Emergency shelters", "公共专题/应急避难", "市应急管理局", "public"),
    "hazards": ("危险源", "Hazard sources", "公共专题/危险源", "市应急管理局", "confidential"),
    "sensors": ("水位监测站", "Water-level sensors", "物联感知/水位监测", "市水务局", "internal"),
    "height_zones": ("控高分区", "Planning height-control zones", "规划管控/控高分区", "市自然资源和规划局",
                     "internal"),
    "trees": ("树木", "Trees", "资源调查/园林绿化", "市园林局", "public"),
    "oblique": ("倾斜摄影模型", "Oblique photography (synthetic ContextCapture production)", "时空基础/三维模型/倾斜摄影",
                "市自然资源和规划局", "internal"),
}


@functools.lru_cache(maxsize=1)
def _names() -> dict[str, list[Any]]:
    text = resources.files("cim").joinpath("data/sample_names.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _pool(pool: Sequence[str], n: int, suffix: str = "") -> list[str]:
    """`n` distinct names from a pool: the pool, then the pool with ordinals (二, 三, ...), then numbers."""
    ordinals = _names()["ordinals"]
    out = []
    for i in range(n):
        base, rnd = pool[i % len(pool)], i // len(pool)
        tag = ordinals[rnd] if rnd < len(ordinals) else str(rnd + 1)
        out.append(f"{base}{tag}{suffix}")
    return out


def _center() -> tuple[float, float]:
    """City centre in EPSG:4547, rounded to 100 m."""
    x, y = transformer("EPSG:4490", CRS).transform(*CENTER_LONLAT)
    return round(x, -2), round(y, -2)


def _rng(seed: int, stage: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage])


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _nearest(lines: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the nearest line of each point (a bounded search first: every lot is near a road)."""
    tree = STRtree(lines)
    idx = np.full(len(points), -1, np.int64)
    found = tree.query_nearest(points, max_distance=_GRID, all_matches=False)
    idx[found[0]] = found[1]
    rest = np.flatnonzero(idx < 0)
    if len(rest):
        idx[rest] = tree.query_nearest(points[rest], all_matches=False)[1]
    return idx


def _nice(res: float) -> float:
    return next((r for r in _NICE_RES if r >= res - 1e-9), _NICE_RES[-1])


def _iter_chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)
