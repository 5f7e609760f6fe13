"""The sample city's standard addresses and its messy 一标三实 registry (residents, organisations, houses).

`add_registry(city)` (what `cim sample` runs after `generate`, like `add_oblique`) and
`write_registry(out, buildings, divisions, seed)` write, beside the sample city's other files (not in the
manifest: they are derived from the buildings and divisions, and the committed copy leaves them out):

- `addresses.gpkg`: the standard address of every building (GB/T 35639 components, code, point, building code),
  built from the footprints' `address` and `name` attributes (`layers.addresses.addresses_from_footprints`);
- `registry_population.csv` (实有人口: residents with synthetic names, ID numbers and phones),
  `registry_organisations.csv` (实有单位) and `registry_houses.csv` (实有房屋): each record's `address` is written
  the ways real registries write them (`messy_address`): levels left out or shortened, 路/街/道 and 号/#/號 mixed up,
  Chinese and full-width numerals, spaces and punctuation, building/unit/floor/room suffixes in several forms,
  the 小区 + 楼栋 form instead of the road and door number, misspelt road names, and about 2% that name no building
  of the city (another city, no address at all);
- `registry_truth.csv`: for every record, the building and standard address it means (empty for the 2%) and the
  kinds of mess applied: the ground truth that tests and benchmarks measure the geocoder against.

Deterministic for a seed (Python's `random.Random`), and fast enough for a million records (`messy_records`).
All personal data here is made up.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layers.addresses.gazetteer import Gazetteer
from layers.addresses.model import AddressTable, addresses_from_footprints
from layers.addresses.parser import ROAD_ALIASES, road_stem
from layers.addresses.text import int_to_chinese

REGISTRY_FILES = {"population": "registry_population.csv", "organisations": "registry_organisations.csv",
                  "houses": "registry_houses.csv"}
TRUTH_FILE = "registry_truth.csv"
ADDRESS_FILE = "addresses.gpkg"
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉梅海燕鹏飞俊峰宇晨欣怡浩然子涵雨轩思远佳琪文博晓东丽华春花德胜"
# characters a hurried clerk puts for another (same sound or shape), for misspelt road names
CONFUSABLE = {"胜": "圣", "利": "立", "友": "有", "谊": "宜", "兴": "星", "云": "运", "平": "坪", "城": "成",
              "恒": "衡", "安": "按", "泰": "太", "和": "合", "祥": "样", "吉": "洁", "向": "象", "阳": "杨",
              "光": "广", "明": "名", "华": "化", "严": "岩", "帅": "师", "府": "付", "清": "青", "远": "园",
              "文": "闻", "魏": "巍", "都": "督", "同": "铜", "御": "玉", "河": "何", "如": "儒", "意": "义",
              "环": "还", "北": "背", "中": "忠", "大": "达", "东": "冬", "西": "希", "南": "楠", "新": "心",
              "井": "景", "仓": "苍", "门": "们", "巷": "向", "坊": "方", "市": "是", "石": "时", "花": "华"}
ORG_KINDS = {"商业": ("超市", "餐馆", "便利店", "药店", "理发店", "五金店"), "办公": ("有限公司", "事务所", "服务中心"),
             "教育": ("学校", "培训中心"), "医疗": ("医院", "诊所"), "工业": ("厂", "有限公司"), "文物": ("文物管理所",)}
_FULLWIDTH = str.maketrans("0123456789#-", "０１２３４５６７８９＃－")
_CN_DIGITS = set("零〇一二两三四五六七八九十百千")
_OTHER_CITIES = ("北京市朝阳区", "太原市小店区", "河北省张家口市桥西区", "呼和浩特市新城区")


@dataclass(frozen=True)
class Record:
    """One registry record's address and its ground truth."""

    text: str
    building_code: str | None
    address_code: str | None
    unit: str | None
    floor: str | None
    room: str | None
    kinds: tuple[str, ...]


class MessyWriter:
    """Writes standard addresses the ways registries do (see the module doc).

    Args:
        addresses: the standard addresses.
        seed: the random seed.
    """

    def __init__(self, addresses: AddressTable, seed: int) -> None:
        self.rng = random.Random(seed)
        t = addresses.table
        self.rows = [dict(zip(t.column_names, r, strict=True)) for r in zip(*(c.to_pylist() for c in t.columns),
                                                                             strict=True)]
        self.roads = {r["road"] for r in self.rows if r["road"]}
        # doors and estate buildings whose name recurs in another town or community: a registry that leaves
        # the town out of such an address names no single building, so the writer keeps it
        self.needs: dict[str, str] = {}
        self.ambiguous: set[str] = set()
        for key_of in (lambda r: (r["road"], r["number"], r["building"]),
                       lambda r: (r["estate"], r["estate_building"])):
            groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for r in self.rows:
                groups.setdefault(key_of(r), []).append(r)
            for rows in groups.values():
                if len(rows) > 1:
                    towns = {r["town"] for r in rows}
                    if len({r["community"] for r in rows}) < len(rows):
                        # the same name twice in one community (the sample's name pools repeat): no form
                        # of the text can tell them apart, so the registry writes the road and number
                        self.ambiguous.update(r["code"] for r in rows)
                    for r in rows:
                        level = "community" if len(towns) < len(rows) else "town"
                        if self.needs.get(r["code"]) != "community":
                            self.needs[r["code"]] = level

    # ------------------------------------------------------------------ pieces
    def _admin(self, r: dict[str, Any], kinds: list[str]) -> str:
        x = self.rng.random()
        province, city, district = r["province"] or "", r["city"] or "", r["district"] or ""
        if x < 0.30:
            head = province + city + district
        elif x < 0.50:
            head, _ = city + district, kinds.append("no-province")
        elif x < 0.58:
            head, _ = province.removesuffix("省") + city.removesuffix("市"), kinds.append("short-names")
        elif x < 0.68:
            head, _ = city.removesuffix("市"), kinds.append("short-names")
        elif x < 0.85:
            head, _ = district, kinds.append("no-city")
        else:
            head, _ = "", kinds.append("no-divisions")
        need = self.needs.get(r["code"])
        if r["town"] and (need or self.rng.random() < 0.3):
            head += r["town"]
            if r["community"] and (need == "community" or self.rng.random() < 0.4):
                head += r["community"]
                kinds.append("community")
        return head

    def _road(self, road: str, kinds: list[str]) -> str:
        x = self.rng.random()
        stem, kind = road_stem(road)
        if x < 0.14 and kind in ROAD_ALIASES:
            other = self.rng.choice([k for k in ("路", "街", "大街", "道", "大道") if k != kind])
            if stem + other not in self.roads:
                kinds.append("alias")
                return stem + other
        elif x < 0.20 and len(stem) >= 2:
            typo = self._typo(stem)
            if typo and typo + kind not in self.roads:
                kinds.append("typo")
                return typo + kind
        return road

    def _typo(self, stem: str) -> str | None:
        spots = [i for i, c in enumerate(stem) if c in CONFUSABLE]
        y = self.rng.random()
        if spots and y < 0.7:
            i = self.rng.choice(spots)
            return stem[:i] + CONFUSABLE[stem[i]] + stem[i + 1:]
        if len(stem) >= 3 and y < 0.85:
            i = self.rng.randrange(len(stem))
            return stem[:i] + stem[i + 1:]
        if len(stem) >= 3:
            i = self.rng.randrange(len(stem) - 1)
            return stem[:i] + stem[i + 1] + stem[i] + stem[i + 2:]
        return None

    def _number(self, number: str, kinds: list[str], courtyard: bool) -> str:
        x = self.rng.random()
        main, _, sub = number.partition("-")
        if x < 0.10 and not sub:
            kinds.append("chinese-numerals")
            return int_to_chinese(int(main)) + "号"
        if x < 0.20:
            kinds.append("hash")
            return number + "#"
        if x < 0.25:
            kinds.append("traditional")
            return number + "號"
        if x < 0.30 and sub:
            kinds.append("zhi")
            return f"{main}之{sub}号"
        if x < 0.36 and courtyard:
            return number + "号院"
        return number + "号"

    def _building(self, b: str, kinds: list[str], after: str = "") -> str:
        x = self.rng.random()
        if after and after[-1] in _CN_DIGITS and x >= 0.85:
            x = 0.0  # 春晖苑二 + 一号楼 would read 春晖苑 + 21号楼: nobody could tell, so it is not written
        if x < 0.5:
            return b + "号楼"
        kinds.append("building-forms")
        if x < 0.65:
            return b + "栋"
        if x < 0.75:
            return b + "幢"
        if x < 0.85:
            return b + "#楼"
        return int_to_chinese(int(b)) + "号楼" if b.isdigit() else b + "座"

    def _room(self, unit: str | None, floor: int | None, room: str | None, kinds: list[str]) -> str:
        if room is None:
            return ""
        x = self.rng.random()
        kinds.append("unit-room")
        if unit is None:
            return room + ("室" if x < 0.6 else "")
        if x < 0.35:
            return f"{unit}单元{room}室"
        if x < 0.55:
            return f"{unit}单元{floor}层{room}"
        if x < 0.70:
            return f"{unit}单元{room}"
        if x < 0.82:
            return f"{int_to_chinese(int(unit))}单元{room}室"
        return f"{unit}-{room}"

    def _noise(self, parts: list[str], kinds: list[str]) -> str:
        x = self.rng.random()
        if x < 0.12:
            kinds.append("spaces")
            return " ".join(p for p in parts if p)
        if x < 0.17:
            kinds.append("punctuation")
            return "，".join(p for p in parts if p)
        return "".join(parts)

    # ------------------------------------------------------------------ one record
    def write(self, r: dict[str, Any], *, unit: str | None = None, floor: int | None = None,
              room: str | None = None) -> Record:
        """A messy text for the standard address `r` (a row dict) and an optional unit/floor/room."""
        kinds: list[str] = []
        head = self._admin(r, kinds)
        courtyard = not r["building"] and not r["estate"]
        use_estate = bool(r["estate"] and r["estate_building"]) and r["code"] not in self.ambiguous \
            and self.rng.random() < 0.35
        if use_estate:
            kinds.append("estate-form")
            place = [r["estate"], self._building(r["estate_building"], kinds, r["estate"])]
        else:
            place = [self._road(r["road"], kinds), self._number(r["number"], kinds, courtyard)]
            if r["building"]:
                place.append(self._building(r["building"], kinds))
        tail = self._room(unit, floor, room, kinds)
        if unit is not None and not use_estate and not r["building"] and room is not None and self.rng.random() < 0.1:
            tail = f"{unit}单元{room}"  # a door with one building: the unit straight after the number
        text = self._noise([head, *place, tail], kinds)
        if self.rng.random() < 0.08:
            kinds.append("full-width")
            text = text.translate(_FULLWIDTH)
        return Record(text, r["building_code"], r["code"], unit, None if floor is None else str(floor), room,
                      tuple(kinds) or ("standard",))

    def unmatchable(self, r: dict[str, Any]) -> Record:
        """A text that names no building of the city: another city, or no address at all."""
        x = self.rng.random()
        if x < 0.6:
            text = self.rng.choice(_OTHER_CITIES) + r["road"] + r["number"] + "号"
            kind = "other-city"
        elif x < 0.8:
            text = self.rng.choice(("无固定住所", "不详", "暂无", "外地"))
            kind = "no-address"
        else:
            text = r["road"]
            kind = "road-only"
        return Record(text, None, None, None, None, None, (kind,))


def _person(rng: random.Random, i: int, district_code: str) -> dict[str, Any]:
    year = rng.randint(1940, 2020)
    born = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"{district_code}{born}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    gender = "男" if int(body[-1]) % 2 else "女"
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    return {"person_id": f"P{i:07d}", "name": name, "gender": gender, "birth_year": year,
            "id_number": body + check, "phone": f"1{rng.choice('3578')}{rng.randint(0, 999_999_999):09d}"}


def messy_records(addresses: AddressTable, uses: dict[str, str], floors: dict[str, int], seed: int,
                  *, n_records: int | None = None) -> Iterator[tuple[str, dict[str, Any], Record]]:
    """(registry, fields, record) for every record of the registry of a city, in a fixed order.

    Residents live in housing (住宅): 1-3 households per single-storey building, 2 per floor and unit in taller
    ones (capped); every household is one house (实有房屋) with 1-4 residents. Other buildings hold 1-3
    organisations. With `n_records`, buildings are visited round-robin until that many records were written
    (for benchmarks).
    """
    w = MessyWriter(addresses, seed)
    rng = random.Random(seed * 7919 + 18)
    pid = oid = hid = 0
    count = 0
    rows = w.rows
    k = 0
    while True:
        for r in rows:
            b = r["building_code"]
            use = uses.get(b, "住宅")
            dcode = r["district_code"] or "140213"
            if use != "住宅":
                for _ in range(rng.randint(1, 3)):
                    oid += 1
                    kind = rng.choice(ORG_KINDS.get(use, ("有限公司",)))
                    rec = w.unmatchable(r) if rng.random() < 0.02 else w.write(r)
                    yield "organisations", {
                        "org_id": f"O{oid:07d}", "name": f"大同市{rng.choice(SURNAMES)}{rng.choice(GIVEN)}{kind}",
                        "kind": kind, "credit_code": f"9114{dcode[2:6]}{rng.randint(0, 10**9):09d}{rng.randint(0, 9)}",
                        "contact": rng.choice(SURNAMES) + rng.choice(GIVEN), "address": rec.text}, rec
                    count += 1
            else:
                nf = max(1, int(floors.get(b) or 1))
                units = 1 if nf <= 3 else min(4, 1 + nf // 6)
                households = rng.randint(1, 3) if nf <= 3 else min(12, 2 * nf * units)
                for h in range(households):
                    if nf <= 3:
                        unit, floor, room = None, None, None
                    else:
                        unit = str(1 + h % units)
                        floor = 1 + (h // units) // 2 % nf
                        room = f"{floor}{(h % 2) + 1:02d}"
                    hid += 1
                    rec = w.unmatchable(r) if rng.random() < 0.02 else w.write(r, unit=unit, floor=floor, room=room)
                    yield "houses", {"house_id": f"H{hid:07d}", "use": "住宅",
                                     "area_m2": round(rng.uniform(35, 140), 1), "rooms": rng.randint(1, 4),
                                     "address": rec.text}, rec
                    count += 1
                    for _ in range(rng.randint(1, 4)):
                        pid += 1
                        prec = w.unmatchable(r) if rng.random() < 0.02 else \
                            w.write(r, unit=unit, floor=floor, room=room)
                        yield "population", {**_person(rng, pid, dcode), "house_id": f"H{hid:07d}",
                                             "address": prec.text}, prec
                        count += 1
            if n_records is not None and count >= n_records:
                return
        k += 1
        if n_records is None:
            return


def write_registry(out: str | Path, buildings: Any, divisions: Sequence[tuple[str, str, Any]], seed: int = 7,
                   *, n_records: int | None = None) -> dict[str, Any]:
    """Write the standard addresses and the messy registry of a city into `out` (see the module doc).

    Args:
        out: the city folder.
        buildings: the footprints (GeoDataFrame with `code`, `address`, `name`, `use`, `floors`).
        divisions: (code, name, lon/lat polygon) of the towns and communities.
        seed: the random seed.
        n_records: stop after this many registry records (default: the whole city once).

    Returns:
        Manifest entries: file name -> {kind, rows, ...}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gaz = Gazetteer.from_divisions(divisions)
    addresses, _ = addresses_from_footprints(buildings, gaz)
    gdf = addresses.to_geodataframe()
    import pyogrio

    pyogrio.write_dataframe(gdf, out / ADDRESS_FILE, layer="addresses", driver="GPKG")
    uses = dict(zip(buildings["code"].astype(str), buildings["use"], strict=True))
    floors = {str(c): (int(f) if f == f and f is not None else 1)
              for c, f in zip(buildings["code"], buildings["floors"], strict=True)}
    files: dict[str, Any] = {}
    writers: dict[str, Any] = {}
    handles = []
    counts = dict.fromkeys(REGISTRY_FILES, 0)
    truth_f = (out / TRUTH_FILE).open("w", newline="", encoding="utf-8")
    handles.append(truth_f)
    truth = csv.writer(truth_f)
    truth.writerow(["registry", "record_id", "building_code", "address_code", "unit", "floor", "room", "kinds"])
    try:
        for registry, fields, rec in messy_records(addresses, uses, floors, seed, n_records=n_records):
            wr = writers.get(registry)
            if wr is None:
                f = (out / REGISTRY_FILES[registry]).open("w", newline="", encoding="utf-8")
                handles.append(f)
                wr = writers[registry] = csv.DictWriter(f, fieldnames=list(fields))
                wr.writeheader()
            wr.writerow(fields)
            counts[registry] += 1
            rid = next(iter(fields.values()))
            truth.writerow([registry, rid, rec.building_code or "", rec.address_code or "", rec.unit or "",
                            rec.floor or "", rec.room or "", ";".join(rec.kinds)])
    finally:
        for f in handles:
            f.close()
    files[ADDRESS_FILE] = {"kind": "vector", "layer": "addresses", "rows": len(addresses)}
    for registry, name in REGISTRY_FILES.items():
        files[name] = {"kind": "table", "registry": registry, "rows": counts[registry]}
    files[TRUTH_FILE] = {"kind": "table", "rows": sum(counts.values())}
    return files


def add_registry(city: Any, *, seed: int | None = None, n_records: int | None = None,
                 out: str | Path | None = None) -> dict[str, Any]:
    """Write the standard addresses and the messy registry of a generated sample city into its folder.

    Args:
        city: a `SampleCity` with its buildings and the `streets` and `communities` layers.
        seed: the random seed (default: the city's).
        n_records: stop after this many registry records (default: the whole city once).
        out: the folder to write into (default: the city's own folder).

    Returns:
        file name -> {kind, rows, ...} of what was written.

    Raises:
        InputError: the city has no streets or communities layer (generated with --footprints-only).
    """
    import geopandas as gpd
    import pyogrio

    from cim.errors import InputError

    missing = [n for n in ("streets", "communities") if n not in city.layers]
    if missing:
        raise InputError(f"sample city {city.root} has no {', '.join(missing)} layer: the registry needs the "
                         f"divisions (generate it without --footprints-only)")
    divisions: list[tuple[str, str, Any]] = []
    for name in ("streets", "communities"):
        d = pyogrio.read_dataframe(city.layers[name]).to_crs(4490)
        divisions += list(zip(d["code"], d["name"], d.geometry.values, strict=True))
    path = Path(city.buildings)
    buildings = gpd.read_parquet(path) if path.suffix == ".parquet" else pyogrio.read_dataframe(path)
    if seed is None:
        import json

        seed = int(json.loads(Path(city.manifest).read_text(encoding="utf-8")).get("seed", 7))
    return write_registry(city.root if out is None else out, buildings, divisions, seed, n_records=n_records)


__all__ = ["ADDRESS_FILE", "add_registry", "REGISTRY_FILES", "TRUTH_FILE", "MessyWriter", "Record", "messy_records",
           "write_registry"]
