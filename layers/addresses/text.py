"""Text normalisation for Chinese addresses: full-width forms, traditional characters, punctuation, Chinese numerals.

    >>> normalise("山西省 大同市（平城区）胜利大街三十四號")
    '山西省大同市平城区胜利大街34号'
    >>> chinese_to_int("三十四"), chinese_to_int("二〇一"), int_to_chinese(34)
    (34, 201, '三十四')

Numerals are converted only where an address counts: before 号/#/栋/幢/座/楼/单元/门/层/室/户 or a dash, and
two or more at the end of the text (a room: 五零二), so names such as 二府巷, 九龙壁街 or 春晖苑二 keep theirs.
"""

from __future__ import annotations

import re
import unicodedata

# characters registries write in traditional form, and one-character variants of address words
_CHARS = str.maketrans({
    "號": "号", "區": "区", "縣": "县", "樓": "楼", "單": "单", "門": "门", "層": "层", "東": "东", "這": "这",
    "園": "园", "廣": "广", "場": "场", "莊": "庄", "灣": "湾", "橋": "桥", "鎮": "镇", "鄉": "乡", "與": "与",
    "棟": "栋", "國": "国", "華": "华", "興": "兴", "雲": "云", "陽": "阳", "勝": "胜", "誼": "谊", "龍": "龙",
    "壩": "坝", "衛": "卫", "條": "条", "館": "馆", "廟": "庙", "關": "关", "書": "书", "陳": "陈",
    "—": "-", "–": "-", "－": "-", "~": "-", "～": "-", "_": "-", "之": "之", "〇": "〇",
})
# punctuation and spaces dropped (after NFKC, so full-width forms are already ASCII); `-` and `#` carry meaning
_DROP = re.compile(r"[\s,.;:!?'\"`()\[\]{}<>/\\|，。；：！？、“”‘’（）【】《》「」『』·・…*&^%$@+=]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")

_DIGITS = {"零": 0, "〇": 0, "○": 0, "Ｏ": 0, "一": 1, "壹": 1, "幺": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3,
           "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9}
_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_NUMERAL = "".join(_DIGITS) + "".join(_UNITS)
# a Chinese numeral followed by a counting word (or the end): converted to Arabic digits
_COUNTED = re.compile(rf"([{_NUMERAL}]+)(?=号|#|栋|幢|座|号楼|楼|单元|门|层|室|户|-)|([{_NUMERAL}]{{2,}})$")
# 34之1 -> 34-1
_ZHI = re.compile(r"(\d)之(\d)")


def chinese_to_int(text: str) -> int:
    """The value of a Chinese numeral: positional (三十四, 一百零二, 十二) or read digit by digit (二〇一, 五零二).

    Raises:
        ValueError: `text` holds a character that is not a Chinese numeral.
    """
    if not text or any(c not in _DIGITS and c not in _UNITS for c in text):
        raise ValueError(f"{text!r} is not a Chinese numeral")
    if not any(c in _UNITS for c in text):
        return int("".join(str(_DIGITS[c]) for c in text))
    total, digit = 0, None
    for c in text:
        if c in _DIGITS:
            digit = _DIGITS[c]
        else:
            total += (1 if digit is None else digit) * _UNITS[c]
            digit = None
    return total + (digit or 0)


def int_to_chinese(value: int) -> str:
    """The Chinese numeral of 0 <= value < 10000 as addresses are written (34 -> 三十四, 102 -> 一百零二, 10 -> 十)."""
    if not 0 <= value < 10000:
        raise ValueError(f"{value} is outside 0..9999")
    if value == 0:
        return "零"
    names = "零一二三四五六七八九"
    out, zero = [], False
    for unit, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = value // unit % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(("" if (unit == 10 and d == 1 and not out) else names[d]) + name)
    return "".join(out)


def _numeral(m: re.Match[str]) -> str:
    text = m.group(1) or m.group(2)
    try:
        return str(chinese_to_int(text))
    except ValueError:
        return text


def strip_controls(text: str) -> str:
    """`text` without control and zero-width characters."""
    return _CONTROL.sub("", text)


def normalise(text: str) -> str:
    """The comparable form of an address: NFKC (full-width -> ASCII), traditional address characters simplified,
    control characters, spaces and punctuation dropped (keeping `-` and `#`), upper-case Latin letters, and
    counted Chinese numerals (before a counting word) as Arabic digits (三十四号 -> 34号, 二单元 -> 2单元, 34之1 -> 34-1)."""
    s = unicodedata.normalize("NFKC", strip_controls(text)).translate(_CHARS)
    s = _DROP.sub("", s).upper()
    s = _COUNTED.sub(_numeral, s)
    if "之" in s:
        s = _ZHI.sub(r"\1-\2", s)
    return s


__all__ = ["chinese_to_int", "int_to_chinese", "normalise", "strip_controls"]
