"""The address parser and text normalisation: one case per variation registries write."""

from __future__ import annotations

import pytest

from layers.addresses import AddressParser, Gazetteer, chinese_to_int, int_to_chinese, normalise

ROADS = ("胜利大街", "友谊街", "平城大道", "九龙壁巷", "九龙壁街", "大西街", "区府路")
ESTATES = ("馨悦园", "幸福家园", "小站村")


@pytest.fixture(scope="module")
def parser(gazetteer: Gazetteer) -> AddressParser:
    return AddressParser(gazetteer, ROADS, ESTATES)


@pytest.mark.parametrize(("text", "value"), [
    ("三十四", 34), ("十", 10), ("十二", 12), ("一百零二", 102), ("二〇一", 201), ("五零二", 502), ("两千", 2000),
    ("壹佰贰拾", 120), ("九", 9)])
def test_chinese_numerals(text: str, value: int) -> None:
    assert chinese_to_int(text) == value


def test_int_to_chinese_round_trips() -> None:
    for v in [1, 9, 10, 11, 20, 34, 100, 101, 110, 999, 1001, 2020, 9999]:
        assert chinese_to_int(int_to_chinese(v)) == v
    assert int_to_chinese(34) == "三十四" and int_to_chinese(10) == "十" and int_to_chinese(102) == "一百零二"
    with pytest.raises(ValueError):
        chinese_to_int("三A")


@pytest.mark.parametrize(("text", "expected"), [
    ("胜利大街三十四號", "胜利大街34号"),                  # Chinese numerals, traditional 號
    ("胜利大街３４＃", "胜利大街34#"),                      # full-width digits and #
    (" 平城区，胜利大街（34号） ", "平城区胜利大街34号"),      # spaces and punctuation
    ("二府巷九号", "二府巷9号"),                           # a numeral inside a road name stays
    ("九龙壁街十二号", "九龙壁街12号"),
    ("2单元五楼", "2单元5楼"),
    ("34之1号", "34-1号"),
    ("平城区\x00胜利\u200b大街\t34号", "平城区胜利大街34号"),  # control and zero-width characters
    ("胜利大街34号—2", "胜利大街34号-2"),
])
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


CASES = [
    # (text, expected components)
    ("山西省大同市平城区东街街道胜利大街34号",
     {"province": "山西省", "city": "大同市", "district": "平城区", "town": "东街街道", "road": "胜利大街", "number": "34"}),
    ("平城区胜利大街34号院2号楼3单元",                     # omissions; 号院; building and unit
     {"district": "平城区", "road": "胜利大街", "number": "34", "building": "2", "unit": "3"}),
    ("胜利大街三十四号", {"road": "胜利大街", "number": "34"}),           # no divisions at all, Chinese numerals
    ("大同胜利街34#", {"city": "大同市", "road": "胜利街", "number": "34"}),  # short city, 街 for 大街, #
    ("山西大同平城大道6號", {"province": "山西省", "city": "大同市", "road": "平城大道", "number": "6"}),
    ("平城大道119-3号", {"road": "平城大道", "number": "119-3"}),          # sub-numbers
    ("平城大道119之3号", {"road": "平城大道", "number": "119-3"}),
    ("大同市 平城区 友谊街 108号 2号楼", {"road": "友谊街", "number": "108", "building": "2"}),
    ("胜利大街34号2栋3单元5层502室", {"number": "34", "building": "2", "unit": "3", "floor": "5", "room": "502"}),
    ("胜利大街34号2幢3单元502", {"building": "2", "unit": "3", "floor": "5", "room": "502"}),
    ("胜利大街34号2#楼3单元502", {"building": "2", "unit": "3", "room": "502"}),
    ("胜利大街34号A座1201室", {"building": "A", "floor": "12", "room": "1201"}),
    ("胜利大街34-2-3-502", {"number": "34", "building": "2", "unit": "3", "room": "502"}),   # dash form
    ("胜利大街34号2号楼3-502", {"building": "2", "unit": "3", "room": "502"}),
    ("胜利大街34号二单元五零二", {"unit": "2", "room": "502", "floor": "5"}),
    ("幸福家园3号楼2单元501", {"estate": "幸福家园", "building": "3", "unit": "2", "room": "501"}),  # 小区 form
    ("小站村50号", {"estate": "小站村", "building": "50"}),
    ("大同市平城区西街街道法华社区胜利大街34号",            # community, from the store's divisions
     {"town": "西街街道", "community": "法华社区", "road": "胜利大街", "number": "34"}),
    ("新荣区某某街道胜利大街34号", {"district": "新荣区", "road": "胜利大街", "number": "34"}),
    ("区府路3号", {"road": "区府路", "number": "3"}),           # a road that starts like a division
    ("圣利大街34号", {"road": "圣利大街", "number": "34"}),       # a misspelt road stays as written
    ("ＳＨＡＮＸＩ胜利大街３４号", {"number": "34"}),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse(parser: AddressParser, text: str, expected: dict[str, str]) -> None:
    got = parser.parse(text).to_dict()
    assert {k: got[k] for k in expected} == expected


def test_unknown_divisions_are_set_aside(parser: AddressParser) -> None:
    a = parser.parse("平城区某某街道胜利大街34号")
    assert a.unknown_admin == ["某某街道"] and a.road == "胜利大街"


def test_nine_digit_and_gb2260_codes(parser: AddressParser) -> None:
    a = parser.parse("山西省大同市平城区西街街道法华社区胜利大街34号")
    assert a.codes == {"province": "140000", "city": "140200", "district": "140213", "town": "140213002",
                       "community": "140213002002"}


@pytest.mark.parametrize("text", ["", "   ", "hello world", "！！！", "\x00\x01", "号号号", "1234", "a" * 5000])
def test_parser_never_raises(parser: AddressParser, text: str) -> None:
    a = parser.parse(text)
    assert a.number is None or a.number.replace("-", "").isdigit()


def test_gazetteer_gb2260() -> None:
    gaz = Gazetteer.builtin()
    assert gaz.division("140213").name == "平城区"
    assert gaz.chain("140213") == ["山西省", "大同市", "平城区"]
    assert gaz.match_at("山西大同", 0)[0].code == "140000"
