"""Chinese text normalisation (spec §7.2 step 1): numbers, symbols and punctuation → readable text.

``normalize_zh`` returns text made only of Chinese characters, the six punctuation symbols
``! ? … , . -``, and Latin words (ASCII letters, inner apostrophes, single spaces between Latin
words) that the caller hands to the English frontend. In order:

1. traditional → simplified (OpenCC ``t2s``), full-width ASCII → half-width, accents stripped
   from Latin letters, ``嗯→恩``, ``呣→母``, ``〇→零``;
2. numbers: dates (``2024-03-15``, ``2024年`` digit by digit), times (``8:05``), mobile and
   land-line phone numbers (digit by digit, 1 read 幺), percentages, temperatures, a few metric
   units, currencies, fractions, ranges (``3~5``), arithmetic signs, negative numbers, decimals,
   integers (``2`` before a measure word reads 两);
3. punctuation mapped to ``! ? … , . -`` (see ``_PUNCT_MAP``), runs of one mark collapsed;
4. decoration (``text.chars.is_decoration``: unmapped punctuation such as quotes, brackets,
   ``* # _ @ •``, zero-width characters, ``| ` ^ < >``) and whitespace between Chinese characters
   dropped; every other character without a reading (emoji, other scripts, symbols such as
   ``★ © ♥``) raises ``TextFrontendError`` naming it.
"""

from __future__ import annotations

import functools
import re

from text.chars import fold_latin, is_decoration, to_half_width
from text.errors import TextFrontendError, describe_chars
from text.zh_numbers import decimal_to_chinese, digits_to_chinese, int_to_chinese

ZH_PUNCTUATION = "!?…,.-"

_PUNCT_MAP = {
    "，": ",", ",": ",", "、": ",", "；": ",", ";": ",", "：": ",", ":": ",", "·": ",", "/": ",",
    "。": ".", ".": ".", "\n": ".", "！": "!", "!": "!", "？": "?", "?": "?",
    "…": "…", "⋯": "…", "~": "…", "～": "…",
    "-": "-", "—": "-", "–": "-", "―": "-", "─": "-", "－": "-",
}
_SYMBOL_WORDS = {
    "&": "和", "+": "加", "=": "等于", "×": "乘", "÷": "除以", "%": "百分之", "℃": "摄氏度", "°": "度",
}

_MEASURE_WORDS = "个只本件位次天周斤条张把台辆块元岁层分种双名句道份"
_UNITS = {
    "km": "公里", "cm": "厘米", "mm": "毫米", "kg": "千克", "mg": "毫克", "ml": "毫升",
    "m²": "平方米", "㎡": "平方米", "m2": "平方米", "m": "米", "g": "克",
}
_CURRENCY = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑"}

_NUM = r"\d+(?:\.\d+)?"


def _num(text: str) -> str:
    return decimal_to_chinese(text) if "." in text else int_to_chinese(text)


def _signed(sign: str, text: str) -> str:
    return ("负" if sign else "") + _num(text)


def _date(m: re.Match) -> str:
    year, month, day, suffix = m.group(1), m.group(2), m.group(3), m.group(4) or "日"
    return f"{digits_to_chinese(year)}年{int_to_chinese(str(int(month)))}月{int_to_chinese(str(int(day)))}{suffix}"


def _time(m: re.Match) -> str:
    hour, minute, second = m.group(1), m.group(2), m.group(3)
    out = int_to_chinese(hour) + "点"
    if minute != "00" or second:
        out += ("零" if minute[0] == "0" and minute != "00" else "") + int_to_chinese(minute.lstrip("0") or "0")
        out += "分"
    if second:
        out += int_to_chinese(second.lstrip("0") or "0") + "秒"
    return out


def _phone(m: re.Match) -> str:
    return digits_to_chinese(re.sub(r"\D", "", m.group(0)), one="幺")


def _temperature(m: re.Match) -> str:
    return ("零下" if m.group(1) else "") + _num(m.group(2)) + "摄氏度"


def _unit(m: re.Match) -> str:
    return _signed(m.group(1), m.group(2)) + _UNITS[m.group(3)]


def _currency(m: re.Match) -> str:
    amount = m.group(3).rstrip("0").rstrip(".") if "." in m.group(3) else m.group(3)  # 3.50 → 3.5
    return _signed(m.group(2), amount) + _CURRENCY[m.group(1)]


def _integer(m: re.Match) -> str:
    digits = m.group(0)
    following = m.string[m.end():m.end() + 1]
    preceding = m.string[m.start() - 1:m.start()]
    if digits == "2" and following and following in _MEASURE_WORDS and preceding != "第":
        return "两"
    return int_to_chinese(digits)


# (pattern, replacement) applied in order; earlier rules consume the digits they read.
_NUMBER_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),                                   # 1,000 → 1000
    (re.compile(r"(?<!\d)(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})([日号])?(?!\d)"), _date),
    (re.compile(r"(?<!\d)(\d{4})\s*[-~～—到至]\s*(\d{4})(?=年)"),                    # 2023-2024年
     lambda m: digits_to_chinese(m.group(1)) + "到" + digits_to_chinese(m.group(2))),
    (re.compile(r"(?<!\d)(\d{3,4})(?=年)"), lambda m: digits_to_chinese(m.group(1))),  # 2024年
    (re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])"), _time),
    (re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)"), _phone),    # mobile
    (re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)"), _phone),                            # land line
    (re.compile(r"(?<!\d)\d{12,}(?!\d)"), lambda m: digits_to_chinese(m.group(0))),    # ids, codes
    (re.compile(rf"(-?)({_NUM})\s*(?:%|％)"),
     lambda m: ("负" if m.group(1) else "") + "百分之" + _num(m.group(2))),
    (re.compile(rf"(-?)({_NUM})\s*(?:°C|℃)"), _temperature),
    (re.compile(rf"(-?)({_NUM})\s*(km|cm|mm|kg|mg|ml|m²|㎡|m2|m|g)(?![A-Za-z])"), _unit),
    (re.compile(rf"([¥$€£])\s*(-?)({_NUM})"), _currency),
    (re.compile(rf"({_NUM})\s*°"), lambda m: _num(m.group(1)) + "度"),
    (re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])"),
     lambda m: int_to_chinese(m.group(2)) + "分之" + int_to_chinese(m.group(1))),
    (re.compile(rf"({_NUM})\s*(?:~|～|-|—)\s*({_NUM})"),
     lambda m: _num(m.group(1)) + "到" + _num(m.group(2))),
    (re.compile(r"(?<=\d)\s*([+×÷=])\s*(?=-?\d)"), lambda m: _SYMBOL_WORDS[m.group(1)]),
    (re.compile(rf"(?<![\dA-Za-z])-({_NUM})"), lambda m: "负" + _num(m.group(1))),
    (re.compile(r"\d+\.\d+"), lambda m: decimal_to_chinese(m.group(0))),
    (re.compile(r"\d+"), _integer),
]


def verbalize_numbers(text: str) -> str:
    """Replace every number (and the signs/units read with it) by its Chinese reading."""
    for pattern, repl in _NUMBER_RULES:
        text = pattern.sub(repl, text)
    return text


@functools.lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC  # opencc-python-reimplemented

    return OpenCC("t2s")


def is_chinese_char(ch: str) -> bool:
    """CJK unified ideographs (basic block, extensions A–F) and compatibility ideographs."""
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2EBEF
    )


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _map_symbols(text: str) -> str:
    """Punctuation → the six symbols, decoration dropped, unknown characters rejected."""
    out: list[str] = []
    unknown: list[str] = []
    for i, ch in enumerate(text):
        if is_chinese_char(ch) or _is_latin(ch):
            out.append(ch)
        elif ch in ("'", "’") and 0 < i < len(text) - 1 and _is_latin(text[i - 1]) and _is_latin(text[i + 1]):
            out.append("'")  # apostrophe inside a Latin word: it's, Tom's
        elif ch in _PUNCT_MAP:
            out.append(_PUNCT_MAP[ch])
        elif ch in _SYMBOL_WORDS:
            out.append(_SYMBOL_WORDS[ch])
        elif ch.isspace() or is_decoration(ch):
            out.append(" ")
        else:
            unknown.append(ch)
    if unknown:
        raise TextFrontendError(f"no Chinese reading for {describe_chars(unknown)} in {text!r}")
    return "".join(out)


def _tidy_spaces_and_punctuation(text: str) -> str:
    text = re.sub(r"\.{3,}", "…", text)
    text = re.sub(r"([!?…,.\-])\1+", r"\1", text)             # "!!!" → "!", "——" → "-"
    text = re.sub(r" +", " ", text)
    text = re.sub(r"(?<![A-Za-z']) | (?![A-Za-z'])", "", text)  # keep spaces only between Latin words
    return text.strip()


def normalize_zh(text: str) -> str:
    """Normalise Chinese (possibly mixed with English) text; see the module docstring."""
    text = _t2s().convert(text)
    text = to_half_width(text, keep="，！？；：～（）").replace("\r\n", "\n").replace("\r", "\n")
    text = fold_latin(text).replace("嗯", "恩").replace("呣", "母").replace("〇", "零")
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    text = verbalize_numbers(text)
    text = _map_symbols(text)
    return _tidy_spaces_and_punctuation(text)
