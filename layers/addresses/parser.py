"""Free address text -> the components of GB/T 35639-2017 (省/市/区县/乡镇街道/社区村/街路巷/门牌号/小区/楼栋/单元/楼层/户室).

    >>> p = AddressParser(Gazetteer.builtin(), roads={"胜利大街"})
    >>> a = p.parse("大同胜利街三十四號院2号楼3单元502室")
    >>> a.city, a.road, a.number, a.building, a.unit, a.floor, a.room
    ('大同市', '胜利街', '34', '2', '3', '5', '502')

The parser reads left to right: administrative names (gazetteer, longest first; unknown ones ending in 省/市/区/县/
街道/镇/乡/社区 are set aside), then a road (a known road, else the text up to the door number), the door number
(34, 34-1, 34号院), then building, unit, floor and room in their usual forms (2号楼, 2栋, 2幢, A座, 2#; 3单元;
5层/5楼; 502室/502户/502; and the dash forms 2-3-502 and 3-502). Without a road it looks for an estate (小区) name
and its building. It does not decide which road a misspelt road is: the geocoder does, against its index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from layers.addresses.gazetteer import LEVELS, Gazetteer, _lengths_by_start
from layers.addresses.text import normalise

# road types, longest first; 路/街/大街/道/大道 are one alias group (registries mix them up), 巷 and the others not
ROAD_SUFFIXES = ("大街", "大道", "胡同", "路", "街", "道", "巷", "弄", "里", "线")
ROAD_ALIASES = frozenset({"路", "街", "大街", "道", "大道"})
_UNKNOWN_ADMIN = re.compile(r"(.{1,8}?)(特别行政区|自治区|自治州|街道办事处|街道办|街道|办事处|省|市|区|县|旗|镇|乡|"
                            r"社区居委会|社区|居委会|村委会)")
_NUMBER = re.compile(r"(\d+)(?:-(\d+))?(号院|号|#|院)?")
_BUILDING = re.compile(r"(\d+|[A-Z])(号楼|栋|幢|座|#楼|号|#|楼)")
_UNIT = re.compile(r"(\d+)(单元|门)")
_FLOOR = re.compile(r"(-?\d+)(层|楼)")
_ROOM = re.compile(r"(\d+)(室|户|号)?")
_DASH3 = re.compile(r"(\d+|[A-Z])-(\d+)-(\d+)")
_DASH2 = re.compile(r"(\d+)-(\d+)")
_DIGIT = re.compile(r"\d")


@dataclass(slots=True)
class ParsedAddress:
    """The components found in a text (None: not written). Names as written, normalised (full-width, numerals);
    administrative names as the gazetteer spells them in full.

    Attributes:
        codes: division codes found (level -> code).
        unknown_admin: administrative-looking names the gazetteer does not know (set aside).
        rest: text left over after the last component.
        text: the normalised text that was parsed.
    """

    province: str | None = None
    city: str | None = None
    district: str | None = None
    town: str | None = None
    community: str | None = None
    road: str | None = None
    number: str | None = None
    estate: str | None = None
    building: str | None = None
    unit: str | None = None
    floor: str | None = None
    room: str | None = None
    codes: dict[str, str] = field(default_factory=dict)
    unknown_admin: list[str] = field(default_factory=list)
    rest: str = ""
    text: str = ""

    COMPONENTS = ("province", "city", "district", "town", "community", "road", "number", "estate", "building",
                  "unit", "floor", "room")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: getattr(self, k) for k in self.COMPONENTS}
        out.update(codes=dict(self.codes), unknown_admin=list(self.unknown_admin), rest=self.rest)
        return out


def road_stem(road: str) -> tuple[str, str]:
    """(stem, type) of a road name: 胜利大街 -> (胜利, 大街); a name without a known type -> (name, "")."""
    for suffix in ROAD_SUFFIXES:
        if road.endswith(suffix) and len(road) > len(suffix):
            return road[: -len(suffix)], suffix
    return road, ""


class AddressParser:
    """Parses address text with a gazetteer and, when given, the known road and estate names (normalised).

    Args:
        gazetteer: administrative names.
        roads: road names of the index (help to find where a road starts and ends).
        estates: estate (小区) names of the index.
    """

    def __init__(self, gazetteer: Gazetteer, roads: Iterable[str] = (), estates: Iterable[str] = ()) -> None:
        self.gazetteer = gazetteer
        self.roads = {normalise(r) for r in roads if r}
        self.estates = {normalise(e) for e in estates if e}
        self._road_len = _lengths_by_start(self.roads)
        self._estate_len = _lengths_by_start(self.estates)

    @staticmethod
    def _known(names: set[str], lengths: dict[str, tuple[int, ...]], s: str, i: int) -> str | None:
        """The longest of `names` starting at s[i]."""
        for n in lengths.get(s[i: i + 2], ()):
            if s[i: i + n] in names:
                return s[i: i + n]
        return None

    def parse(self, text: str) -> ParsedAddress:
        """The components of `text` (never raises; what it cannot read ends in `rest`)."""
        s = normalise(text)
        out = ParsedAddress(text=s)
        i = self._admin(s, 0, out)
        i = self._place(s, i, out)
        i = self._tail(s, i, out)
        out.rest = s[i:]
        return out

    # ------------------------------------------------------------------ steps
    def _admin(self, s: str, i: int, out: ParsedAddress) -> int:
        level, context = 0, ""
        while i < len(s):
            road = self._known(self.roads, self._road_len, s, i)
            hit = self.gazetteer.match_at(s, i, min_level=level, context=context)
            if hit is not None and (road is None or hit[1] > len(road)):
                d, n = hit
                setattr(out, d.level, d.name)
                out.codes[d.level] = d.code
                level, context = LEVELS.index(d.level) + 1, d.code
                i += n
                continue
            if road is not None or self._known(self.estates, self._estate_len, s, i):
                break
            m = _UNKNOWN_ADMIN.match(s, i)
            # an unknown name ending like a division, not the start of a road ("区府路") and not a number
            if m and not any(c.isdigit() for c in m.group(1)) and not s.startswith(ROAD_SUFFIXES, m.end()) \
                    and not s.startswith(("号", "#"), m.end()):
                out.unknown_admin.append(m.group(0))
                i = m.end()
                continue
            break
        return i

    def _place(self, s: str, i: int, out: ParsedAddress) -> int:
        road = self._known(self.roads, self._road_len, s, i)
        if road is not None:
            out.road = road
            return self._number(s, i + len(road), out)
        estate = self._known(self.estates, self._estate_len, s, i)
        # a known estate name followed by a road type is the stem of a road (九龙壁 + 大街), not the estate
        if estate is not None and not s.startswith(ROAD_SUFFIXES, i + len(estate)):
            out.estate = estate
            return i + len(estate)
        m = _DIGIT.search(s, i)
        head = s[i: m.start()] if m else s[i:]
        if not head:
            return i
        # the text before the first digit: a road ending in a road type (the rightmost one), else an estate
        end = 0
        for suffix in ROAD_SUFFIXES:
            k = head.rfind(suffix)
            if k >= 1 and k + len(suffix) > end:
                end = k + len(suffix)
        if end:
            out.road = head[:end]
            if end < len(head):  # between the road and the number: an estate, or noise
                out.estate = head[end:]
            return self._number(s, i + len(head), out)
        out.estate = head
        return i + len(head)

    def _number(self, s: str, i: int, out: ParsedAddress) -> int:
        m = _NUMBER.match(s, i)
        if m is None:
            return i
        door, sub, mark = m.group(1), m.group(2), m.group(3)
        # a bare number directly followed by a building word is a building (小区 form), not a door number
        if sub is None and mark is None and s.startswith(("栋", "幢", "座", "号楼", "楼", "单元"), m.end(1)):
            return i
        if sub is not None and mark is None:
            # 34-2-3-502: the door number, then building-unit-room in the dash form
            d3 = _DASH3.match(s, m.end(1) + 1)
            if d3 is not None:
                out.number = door
                out.building, out.unit, out.room = d3.group(1), d3.group(2), d3.group(3)
                return d3.end()
        out.number = door if sub is None else f"{door}-{sub}"
        return m.end()

    def _tail(self, s: str, i: int, out: ParsedAddress) -> int:
        if i < len(s) and s[i] in "-":
            i += 1
        if out.building is None:
            m = _DASH3.match(s, i)
            if m is not None:
                out.building, out.unit, out.room = m.group(1), m.group(2), m.group(3)
                i = m.end()
            else:
                m = _BUILDING.match(s, i)
                # "5楼" straight after a door number is a floor only when a unit came before; here it is a building
                if m is not None:
                    out.building = m.group(1)
                    i = m.end()
        if i < len(s) and s[i] == "-":
            i += 1
        if out.unit is None:
            m = _DASH2.match(s, i)
            if m is not None and out.building is not None:
                out.unit, out.room = m.group(1), m.group(2)
                i = m.end()
            else:
                m = _UNIT.match(s, i)
                if m is not None:
                    out.unit = m.group(1)
                    i = m.end()
        if i < len(s) and s[i] == "-":
            i += 1
        if out.room is None:
            m = _FLOOR.match(s, i)
            if m is not None:
                out.floor = m.group(1)
                i = m.end()
            m = _ROOM.match(s, i)
            if m is not None:
                out.room = m.group(1)
                i = m.end()
        if out.floor is None and out.room is not None and len(out.room) >= 3:
            out.floor = str(int(out.room) // 100)
        return i


__all__ = ["ROAD_ALIASES", "ROAD_SUFFIXES", "AddressParser", "ParsedAddress", "road_stem"]
