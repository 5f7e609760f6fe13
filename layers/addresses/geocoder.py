"""The geocoder: address text -> the standard address, its building and point, a score and the reason; and back.

    >>> gc = Geocoder.from_store(store)                         # doctest: +SKIP
    >>> m = gc.geocode("大同胜利街三十四号2单元501")              # doctest: +SKIP
    >>> m.reason, m.address, m.building_code, m.unit, m.room     # doctest: +SKIP
    ('normalised', '山西省大同市平城区东街街道胜利大街34号', '14021300100100034', '2', '501')

How a text is matched (in memory, no network, no model):

1. **parse** it (`AddressParser`: gazetteer names, the index's roads and estates, numerals, aliases);
2. **place**: the road (or estate) is looked up exactly, then among the names of the same type group with the same
   stem (路/街/大街/道/大道 are one group: 胜利街 finds 胜利大街), after dropping unknown leading text, then by edit
   distance over the names of the index (rapidfuzz), keeping only roads on which the door number exists;
3. **door**: the door number (and 楼栋, when several buildings share it) picks the standard address; an estate and
   its building number pick it in the 小区 form;
4. **check**: a province, city or district written in the text that contradicts the address rejects the match.

Reasons: `exact` (the text is a standard address, written out as the index writes it), `normalised` (found after
normalisation: omitted levels, aliases, numerals, full-width forms, punctuation, building/unit/room suffixes),
`fuzzy` (the road or estate name was misspelt), `partial` (only the road or estate was found: street-level,
with the point of its first address; no building), `none`. A match (exact/normalised/fuzzy) names one building;
ambiguity (two roads equally close, several buildings behind one door and none named) gives `partial`.

Reverse geocoding uses a k-d tree on a local metric plane for candidates and ranks them by the geodesic distance
on the GRS80 ellipsoid (pyproj.Geod), so the answer is the true nearest address.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from layers.addresses.errors import AddressInputError
from layers.addresses.gazetteer import Gazetteer
from layers.addresses.model import LAYER, AddressTable, load_addresses
from layers.addresses.parser import ROAD_ALIASES, AddressParser, ParsedAddress, road_stem
from layers.addresses.text import normalise

REASONS = ("exact", "normalised", "fuzzy", "partial", "none")
MATCHED = frozenset({"exact", "normalised", "fuzzy"})
MAX_TEXT = 500  # characters read of one address (registries have nothing longer; longer text is not an address)
_ESTATE_SUFFIXES = ("小区", "社区", "花园", "家园", "公寓")
ProgressFn = Callable[[str, int, int], None]


@dataclass(slots=True)
class GeocodeResult:
    """One geocoded text.

    Attributes:
        text: the input text.
        reason: exact, normalised, fuzzy, partial or none.
        score: 0..1 (1 for exact; a match scores >= 0.6; partial <= 0.5).
        code, address, building_code, lon, lat: the standard address (partial: the road's or estate's first one,
            without building_code); None when nothing was found.
        components: the parsed components (unit, floor and room come only from here).
        note: why the score is what it is (aliases, fuzzy names, conflicts, what was missing).
        candidates: other standard-address codes that fit as well (ambiguity), at most 5.
    """

    text: str
    reason: str = "none"
    score: float = 0.0
    code: str | None = None
    address: str | None = None
    building_code: str | None = None
    lon: float | None = None
    lat: float | None = None
    community: str | None = None
    town: str | None = None
    components: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    candidates: list[str] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.reason in MATCHED

    @property
    def unit(self) -> str | None:
        return self.components.get("unit")

    @property
    def floor(self) -> str | None:
        return self.components.get("floor")

    @property
    def room(self) -> str | None:
        return self.components.get("room")

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "matched": self.matched, "reason": self.reason, "score": round(self.score, 3),
                "code": self.code, "address": self.address, "building_code": self.building_code,
                "lon": self.lon, "lat": self.lat, "community": self.community, "town": self.town,
                "components": {k: v for k, v in self.components.items() if v is not None}, "note": self.note,
                "candidates": list(self.candidates)}


@dataclass(slots=True)
class ReverseResult:
    """The standard address nearest to a point."""

    lon: float
    lat: float
    code: str | None = None
    address: str | None = None
    building_code: str | None = None
    distance_m: float | None = None
    community: str | None = None
    town: str | None = None
    point: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"lon": self.lon, "lat": self.lat, "code": self.code, "address": self.address,
                "building_code": self.building_code,
                "distance_m": None if self.distance_m is None else round(self.distance_m, 2),
                "community": self.community, "town": self.town,
                "point": list(self.point) if self.point else None}


class Geocoder:
    """An in-memory index of standard addresses.

    Cheap to query from many threads (read-only after construction). Build it with `Geocoder.from_store(store)`
    or `Geocoder(addresses, gazetteer)`.

    Args:
        addresses: the standard addresses.
        gazetteer: the divisions (default: GB/T 2260 only).
        fuzzy_cutoff: the lowest similarity (0..1, normalised Levenshtein) of a misspelt road or estate name.
    """

    def __init__(self, addresses: AddressTable, gazetteer: Gazetteer | None = None, *, fuzzy_cutoff: float = 0.5
                 ) -> None:
        self.addresses = addresses
        self.gazetteer = gazetteer or Gazetteer.builtin()
        self.fuzzy_cutoff = fuzzy_cutoff
        t = addresses.table
        self._code = t.column("code").to_pylist()
        self._address = t.column("address").to_pylist()
        self._bcode = t.column("building_code").to_pylist()
        self._community = t.column("community").to_pylist()
        self._town = t.column("town").to_pylist()
        self._lon = t.column("lon").to_numpy()
        self._lat = t.column("lat").to_numpy()
        road = [normalise(r) if r else None for r in t.column("road").to_pylist()]
        number = t.column("number").to_pylist()
        building = t.column("building").to_pylist()
        estate = [normalise(e) if e else None for e in t.column("estate").to_pylist()]
        ebuilding = t.column("estate_building").to_pylist()
        dcode = t.column("district_code").to_pylist()
        self._dcode = dcode
        self._province = t.column("province").to_pylist()
        self._city = t.column("city").to_pylist()
        self._district = t.column("district").to_pylist()
        self._by_code = {c: i for i, c in enumerate(self._code)}
        # roads and estates: names -> rows; doors: (road, number) -> rows; (estate, building) -> rows
        self._road_rows: dict[str, list[int]] = {}
        self._doors: dict[tuple[str, str], list[int]] = {}
        self._estate_rows: dict[str, list[int]] = {}
        self._estate_doors: dict[tuple[str, str], list[int]] = {}
        self._exact: dict[str, int] = {}
        for i in range(len(self._code)):
            r, e = road[i], estate[i]
            if r:
                self._road_rows.setdefault(r, []).append(i)
                if number[i]:
                    self._doors.setdefault((r, number[i]), []).append(i)
            if e:
                self._estate_rows.setdefault(e, []).append(i)
                self._estate_doors.setdefault((e, ebuilding[i] or ""), []).append(i)
            if self._address[i]:
                self._exact.setdefault(self._address[i], i)
        self._building = building
        self._stems: dict[tuple[str, str], list[str]] = {}
        for r in self._road_rows:
            stem, kind = road_stem(r)
            self._stems.setdefault((stem, "alias" if kind in ROAD_ALIASES else kind), []).append(r)
        self._estate_alias: dict[str, list[str]] = {}
        for e in self._estate_rows:
            for suffix in _ESTATE_SUFFIXES:
                if e.endswith(suffix) and len(e) - len(suffix) >= 2:
                    self._estate_alias.setdefault(e[: -len(suffix)], []).append(e)
        self._road_names = list(self._road_rows)
        self._estate_names = list(self._estate_rows)
        self.parser = AddressParser(self.gazetteer, self._road_names, self._estate_names)
        # name resolution is cached per geocoder: a registry names the same few thousand roads again and again
        self._roads = functools.lru_cache(maxsize=65536)(self._roads_uncached)
        self._estates = functools.lru_cache(maxsize=65536)(self._estates_uncached)
        self._lock = threading.Lock()
        self._tree: Any = None
        self._search: Any = None

    @classmethod
    def from_store(cls, store: Any, layer: str = LAYER, *, version: int | None = None, **kw: Any) -> Geocoder:
        """The geocoder of a store's standard-address layer, with the store's divisions as gazetteer.

        Raises:
            AddressesNotFoundError: the store has no such layer visible at its clearance.
        """
        return cls(load_addresses(store, layer, version), Gazetteer.from_store(store), **kw)

    def __len__(self) -> int:
        return len(self._code)

    # ------------------------------------------------------------------ forward
    def geocode(self, text: str) -> GeocodeResult:
        """The best standard address for one text (never raises for any string; see the module doc).

        Raises:
            AddressInputError: `text` is not a string.
        """
        if not isinstance(text, str):
            raise AddressInputError(f"an address must be text, not {type(text).__name__}")
        return self._geocode(text[:MAX_TEXT])

    def geocode_many(self, texts: Iterable[str | None], *, progress: ProgressFn | None = None,
                     total: int | None = None) -> list[GeocodeResult]:
        """`geocode` for many texts (repeated texts are parsed once); None or non-text gives reason `none`."""
        out: list[GeocodeResult] = []
        seen: dict[str, GeocodeResult] = {}
        total = total if total is not None else (len(texts) if isinstance(texts, Sequence) else 0)
        for i, text in enumerate(texts):
            if progress is not None and i % 2000 == 0:
                progress("geocode", i, total)
            if not isinstance(text, str) or not text.strip():
                out.append(GeocodeResult(text="" if text is None else str(text), note="empty"))
                continue
            hit = seen.get(text)
            if hit is None:
                hit = seen[text] = self._geocode(text[:MAX_TEXT])
                if len(seen) > 100_000:
                    seen.clear()
            out.append(hit)
        if progress is not None:
            progress("geocode", len(out), total or len(out))
        return out

    def _row_result(self, text: str, i: int, reason: str, score: float, a: ParsedAddress, note: str,
                    candidates: Sequence[int] = (), building: bool = True) -> GeocodeResult:
        return GeocodeResult(
            text=text, reason=reason, score=score, code=self._code[i], address=self._address[i],
            building_code=self._bcode[i] if building else None, lon=float(self._lon[i]), lat=float(self._lat[i]),
            community=self._community[i], town=self._town[i], components=_components(a), note=note.strip("; "),
            candidates=[self._code[c] for c in candidates if c != i][:5])

    def _geocode(self, text: str, a: ParsedAddress | None = None) -> GeocodeResult:
        a = a if a is not None else self.parser.parse(text)
        if not a.text:
            return GeocodeResult(text=text, note="no address text")
        exact = self._exact.get("".join(text.split()))
        if exact is not None:
            return self._row_result(text, exact, "exact", 1.0, a, "")
        notes: list[str] = []
        if a.unknown_admin:
            notes.append(f"unknown divisions {'/'.join(a.unknown_admin)} ignored")
        if a.road:
            roads, sim, how = self._roads(a.road)
            if roads:
                return self._by_road(text, a, roads, sim, how, notes)
        if a.estate:
            estates, sim, how = self._estates(a.estate)
            if estates:
                return self._by_estate(text, a, estates, sim, how, notes)
        what = a.road or a.estate
        return GeocodeResult(text=text, components=_components(a),
                             note=f"no road or estate {what!r} in the index" if what else "no road or estate found")

    # ------------------------------------------------------------------ names
    def _roads_uncached(self, token: str) -> tuple[tuple[str, ...], float, str]:
        """Roads a written road name may mean: (names, similarity, how) with how one of exact/alias/fuzzy."""
        for k in range(len(token) - 1):
            t = token[k:]
            if t in self._road_rows:
                return (t,), 1.0, "exact" if k == 0 else "trimmed"
            stem, kind = road_stem(t)
            if kind:
                hit = self._stems.get((stem, "alias" if kind in ROAD_ALIASES else kind))
                if hit:
                    return tuple(hit), 1.0, "alias"
        if not self._road_names:
            return (), 0.0, ""
        found = process.extract(token, self._road_names, scorer=Levenshtein.normalized_similarity,
                                score_cutoff=self.fuzzy_cutoff, limit=8)
        if not found:
            return (), 0.0, ""
        best = found[0][1]
        # names as close as the best (within 0.05): the door number decides between them
        return tuple(n for n, s, _ in found if s >= best - 0.05), float(best), "fuzzy"

    def _estates_uncached(self, token: str) -> tuple[tuple[str, ...], float, str]:
        if token in self._estate_rows:
            return (token,), 1.0, "exact"
        hit = self._estate_alias.get(token)
        if hit:
            return tuple(hit), 1.0, "alias"
        for suffix in _ESTATE_SUFFIXES:
            if token.endswith(suffix):
                hit = self._estate_alias.get(token[: -len(suffix)])
                if hit:
                    return tuple(hit), 1.0, "alias"
        if not self._estate_names:
            return (), 0.0, ""
        found = process.extract(token, self._estate_names, scorer=Levenshtein.normalized_similarity,
                                score_cutoff=max(self.fuzzy_cutoff, 0.6), limit=8)
        if not found:
            return (), 0.0, ""
        best = found[0][1]
        return tuple(n for n, s, _ in found if s >= best - 0.05), float(best), "fuzzy"

    # ------------------------------------------------------------------ places
    def _conflict(self, a: ParsedAddress, i: int) -> str | None:
        """A written province, city or district that is not the address's."""
        for level, values in (("province", self._province), ("city", self._city), ("district", self._district)):
            written = getattr(a, level)
            if written and values[i] and written != values[i]:
                return f"{level} {written} is not {values[i]}"
        return None

    def _finish(self, text: str, a: ParsedAddress, rows: list[int], sim: float, how: str, notes: list[str],
                what: str) -> GeocodeResult:
        rows = [i for i in rows if self._conflict(a, i) is None] if rows else rows
        if len(rows) > 1:
            rows = self._narrow(a, rows)
        if not rows:
            return GeocodeResult(text=text, components=_components(a),
                                 note="; ".join([*notes, f"{what}: divisions written contradict the address"]))
        if len(rows) > 1:
            notes.append(f"{len(rows)} addresses fit ({what}); name the building")
            return self._partial(text, a, rows, notes)
        reason = "fuzzy" if how == "fuzzy" else "normalised"
        score = 0.95 if reason == "normalised" else 0.6 + 0.35 * sim
        if how == "fuzzy":
            notes.append(f"{what} by similarity {sim:.2f}")
        elif how in ("alias", "trimmed"):
            notes.append(f"{what} by {'alias' if how == 'alias' else 'dropping unknown leading text'}")
        if a.rest:
            notes.append(f"ignored {a.rest!r}")
            score -= 0.02
        return self._row_result(text, rows[0], reason, score, a, "; ".join(notes))

    def _narrow(self, a: ParsedAddress, rows: list[int]) -> list[int]:
        """Rows in the town and community the text names (the same road name and number, or estate, can exist
        in two towns)."""
        for level, values in (("town", self._town), ("community", self._community)):
            written = getattr(a, level)
            if written and len(rows) > 1:
                inside = [i for i in rows if values[i] == written]
                rows = inside or rows
        return rows

    def _partial(self, text: str, a: ParsedAddress, rows: list[int], notes: list[str]) -> GeocodeResult:
        ok = [i for i in rows if self._conflict(a, i) is None]
        if not ok:
            return GeocodeResult(text=text, components=_components(a),
                                 note="; ".join([*notes, "divisions written contradict the address"]))
        return self._row_result(text, ok[0], "partial", 0.4, a, "; ".join(notes), candidates=ok, building=False)

    def _by_road(self, text: str, a: ParsedAddress, roads: tuple[str, ...], sim: float, how: str,
                 notes: list[str]) -> GeocodeResult:
        if not a.number:
            notes.append("no door number")
            return self._partial(text, a, [i for r in roads for i in self._road_rows[r]], notes)
        found = [(r, self._doors[(r, a.number)]) for r in roads if (r, a.number) in self._doors]
        if not found:
            # 34号院 written 34-1, or a door that does not exist: the road is all that is certain
            notes.append(f"no door {a.number} on {'/'.join(roads[:3])}")
            return self._partial(text, a, [i for r in roads for i in self._road_rows[r]], notes)
        if len(found) > 1:
            found = [(r, rows) for r, rows in found if self._pick(rows, a.building) is not None] or found
        if len(found) > 1 and (a.town or a.community):
            # equally close names: the one whose door lies in the town/community the text names
            found = [(r, rows) for r, rows in found if any(
                (not a.community or self._community[i] == a.community) and (not a.town or self._town[i] == a.town)
                for i in rows)] or found
        if len(found) > 1:
            notes.append(f"roads {'/'.join(r for r, _ in found)} are equally close")
            return self._partial(text, a, [rows[0] for _, rows in found], notes)
        road, rows = found[0]
        rows = self._narrow(a, rows)
        picked = self._pick(rows, a.building)
        if picked is None:
            if a.building is not None:
                notes.append(f"no building {a.building} at {road}{a.number}号")
            return self._finish(text, a, rows, sim, how, notes, f"{road}{a.number}号")
        if a.building is not None and self._building[picked] is None:
            notes.append(f"building {a.building} taken as the door's only building")
        return self._finish(text, a, [picked], sim, how, notes, road)

    def _pick(self, rows: list[int], building: str | None) -> int | None:
        """The row of a door that a written building number picks (a door with one building: that one)."""
        if len(rows) == 1:
            b = self._building[rows[0]]
            return rows[0] if building is None or b is None or b == building else None
        if building is None:
            return None
        hits = [i for i in rows if self._building[i] == building]
        return hits[0] if len(hits) == 1 else None

    def _by_estate(self, text: str, a: ParsedAddress, estates: tuple[str, ...], sim: float, how: str,
                   notes: list[str]) -> GeocodeResult:
        if a.building is None:
            rows = [i for e in estates for i in self._estate_rows[e]]
            if len(rows) == 1:
                return self._finish(text, a, rows, sim, how, notes, estates[0])
            notes.append("no building number")
            return self._partial(text, a, rows, notes)
        found = self._narrow(a, [i for e in estates for i in self._estate_doors.get((e, a.building), ())])
        if not found:
            notes.append(f"no building {a.building} in {'/'.join(estates[:3])}")
            return self._partial(text, a, [i for e in estates for i in self._estate_rows[e]], notes)
        return self._finish(text, a, found, sim, how, notes, estates[0])

    # ------------------------------------------------------------------ search box
    def suggest(self, text: str, limit: int = 10) -> list[dict[str, Any]]:
        """Standard addresses for a search box: the geocoder's match first, then addresses sharing the most
        character pairs with the text (typo-tolerant, partial text welcome), ranked by similarity.

        Returns:
            Up to `limit` dicts with code, address, building_code, lon, lat, score.
        """
        if not isinstance(text, str):
            raise AddressInputError(f"a search text must be text, not {type(text).__name__}")
        text = text[:MAX_TEXT]
        q = normalise(text)
        if not q or not len(self):
            return []
        limit = max(1, min(int(limit), 100))
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        a = self.parser.parse(text)
        m = self._geocode(text, a)
        if m.code is not None and m.reason in MATCHED:
            i = self._by_code[m.code]
            seen.add(i)
            out.append(self._suggestion(i, m.score))
        index = self._search_index()
        core = q
        for k in ("province", "city", "district", "town", "community"):
            v = getattr(a, k)
            if v and core.startswith(normalise(v)):
                core = core[len(normalise(v)):]
        for i, s in index.search(core, limit * 3):
            if i not in seen and len(out) < limit:
                seen.add(i)
                out.append(self._suggestion(i, s))
        return out[:limit]

    def _suggestion(self, i: int, score: float) -> dict[str, Any]:
        return {"code": self._code[i], "address": self._address[i], "building_code": self._bcode[i],
                "lon": float(self._lon[i]), "lat": float(self._lat[i]), "score": round(float(score), 3)}

    def _search_index(self) -> _BigramIndex:
        with self._lock:
            if self._search is None:
                t = self.addresses.table
                keys = []
                for road, num, b, e, eb in zip(*(t.column(c).to_pylist() for c in (
                        "road", "number", "building", "estate", "estate_building")), strict=True):
                    k = f"{road or ''}{num + '号' if num else ''}{b + '号楼' if b else ''}"
                    if e:
                        k += f"{e}{eb + '号楼' if eb else ''}"
                    keys.append(normalise(k))
                self._search = _BigramIndex(keys)
            return self._search

    # ------------------------------------------------------------------ reverse
    def reverse(self, lon: float, lat: float) -> ReverseResult:
        """The standard address nearest to a lon/lat point (geodesic metres), with the town and community that
        contain the point (the store's polygons, else the address's own).

        Raises:
            AddressInputError: lon/lat not finite or outside -180..180 / -90..90.
        """
        return self.reverse_many([lon], [lat])[0]

    def reverse_many(self, lon: Sequence[float], lat: Sequence[float], k: int = 16) -> list[ReverseResult]:
        """`reverse` for many points."""
        from pyproj import Geod

        x = np.asarray(lon, np.float64)
        y = np.asarray(lat, np.float64)
        if x.shape != y.shape or not (np.isfinite(x).all() and np.isfinite(y).all()) \
                or (np.abs(x) > 180).any() or (np.abs(y) > 90).any():
            raise AddressInputError("reverse geocoding needs finite lon in -180..180 and lat in -90..90")
        if not len(self):
            return [ReverseResult(float(a), float(b)) for a, b in zip(x, y, strict=True)]
        tree, lat0 = self._kdtree()
        kk = min(k, len(self))
        _, cand = tree.query(_plane(x, y, lat0), k=kk)
        cand = np.asarray(cand).reshape(len(x), kk)
        geod = Geod(ellps="GRS80")
        out = []
        for j in range(len(x)):
            c = cand[j]
            _, _, d = geod.inv(np.full(len(c), x[j]), np.full(len(c), y[j]), self._lon[c], self._lat[c])
            best = int(c[int(np.argmin(d))])
            divs = self.gazetteer.locate(float(x[j]), float(y[j]))
            com = divs.get("community")
            town = divs.get("town")
            out.append(ReverseResult(
                float(x[j]), float(y[j]), self._code[best], self._address[best], self._bcode[best], float(np.min(d)),
                com.name if com else self._community[best], town.name if town else self._town[best],
                (float(self._lon[best]), float(self._lat[best]))))
        return out

    def _kdtree(self) -> tuple[Any, float]:
        with self._lock:
            if self._tree is None:
                from scipy.spatial import cKDTree

                lat0 = float(np.mean(self._lat))
                self._tree = (cKDTree(_plane(self._lon, self._lat, lat0)), lat0)
            return self._tree

    # ------------------------------------------------------------------ rows
    def row(self, code: str) -> dict[str, Any] | None:
        """A standard address by code, as a dict of its fields (lon/lat included)."""
        i = self._by_code.get(code)
        return None if i is None else {k: v[i].as_py() for k, v in zip(
            self.addresses.table.column_names, self.addresses.table.columns, strict=True)}


def _plane(lon: np.ndarray, lat: np.ndarray, lat0: float) -> np.ndarray:
    """Lon/lat on a local equirectangular plane in metres: candidates only; the ranking is geodesic."""
    k = math.cos(math.radians(lat0))
    return np.column_stack([lon * 111_320.0 * k, lat * 110_574.0])


def _components(a: ParsedAddress) -> dict[str, Any]:
    return {k: getattr(a, k) for k in ParsedAddress.COMPONENTS}


class _BigramIndex:
    """Character-pair postings over short address keys, for typo-tolerant search-box suggestions.

    Keys are written as UTF-32 code point rows; every adjacent pair becomes one int64 id; postings are the rows
    sorted by pair id, so a query's candidates are the rows sharing the most pairs with it (np.bincount over the
    postings of its pairs; pairs present in more than 5% of keys are skipped unless nothing else is there), then
    ranked by rapidfuzz similarity.
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        n = len(keys)
        width = max((len(k) for k in keys), default=1)
        cp = np.zeros((n, max(width, 2)), np.int64)
        if n:
            arr = np.array(keys, dtype=f"<U{max(width, 2)}")
            cp = arr.view(np.uint32).reshape(n, -1).astype(np.int64)
        pair = (cp[:, :-1] << 21) | cp[:, 1:]
        valid = (cp[:, :-1] > 0) & (cp[:, 1:] > 0)
        rows = np.broadcast_to(np.arange(n)[:, None], pair.shape)[valid]
        pair = pair[valid]
        order = np.lexsort((rows, pair))
        self.pairs = pair[order]
        self.rows = rows[order].astype(np.int32)
        self.n = n

    def search(self, q: str, k: int) -> list[tuple[int, float]]:
        if len(q) < 1 or not self.n:
            return []
        if len(q) == 1:
            qp = np.array([], np.int64)
        else:
            c = np.frombuffer(q.encode("utf-32-le"), np.uint32).astype(np.int64)
            qp = np.unique((c[:-1] << 21) | c[1:])
        lo = np.searchsorted(self.pairs, qp, "left")
        hi = np.searchsorted(self.pairs, qp, "right")
        sizes = hi - lo
        common = sizes > max(2000, 0.05 * self.n)
        use = ~common if (~common & (sizes > 0)).any() else sizes > 0
        if not use.any():
            return []
        rows = np.concatenate([self.rows[a:b] for a, b in zip(lo[use], hi[use], strict=True)])
        top, counts = np.unique(rows, return_counts=True)
        if len(top) > 256:
            top = top[np.argpartition(-counts, 256)[:256]]
        cands = [self.keys[i] for i in top]
        scores = process.cdist([q], cands, scorer=fuzz.ratio, dtype=np.uint8)[0] / 100.0
        partial = process.cdist([q], cands, scorer=fuzz.partial_ratio, dtype=np.uint8)[0] / 100.0
        s = np.maximum(scores, 0.9 * partial)
        best = np.argsort(-s, kind="stable")[:k]
        return [(int(top[b]), float(s[b])) for b in best]


__all__ = ["MATCHED", "MAX_TEXT", "REASONS", "GeocodeResult", "Geocoder", "ReverseResult"]
