"""Numbers and symbols in Chinese text → the words a newsreader says (spec §7.2 step 1).

``verbalize(text)`` runs on NFKC-normalised text and rewrites, in this order (earlier rules
consume the digits they read):

* thousands separators (``1,400,000`` is one number); circled numbers (``①`` → ``一,``);
* dates (``2024-03-15``, ``2024/3/5``), years (``2024年`` digit by digit), year ranges;
* times ``H:MM[:SS]`` (``08:05`` → 八点零五分, no spoken leading zero; ``2:00`` → 两点) and time
  ranges; ``N:M`` that is not a time (one-digit minutes, minutes over 59, or after 比分/比例/以...)
  reads 比;
* digit strings read digit by digit with 1 → 幺: phone numbers, hyphen- or space-joined digit
  groups (``400-820-8820``: the hyphen is a pause ``,``), numbers with a leading zero, numbers of
  12+ digits, letters + 3 or more digits (``G1234``, ``CA1831``), room numbers (``302房间``), and
  numbers after a word that names a code (电话, 拨打, 邮编, 验证码, 学号, 卡号 ...);
* arithmetic (``5-3=2`` → 五减三等于二, ``3×4``, ``10÷2``, ``±5``, ``x<y``);
* percent, per mille, temperatures, units (``km/h`` → 公里每小时), currency symbols read as the
  unit after the amount (``¥50`` → 五十元, ``$100`` → 一百美元);
* ranges ``N~M``, ``N-M``, ``N—M`` between two quantities → 到; a minus sign only before a
  number that does not follow a digit or letter;
* decimals, integers (2 before a measure word or 点 reads 两).

Greek letters and math symbols without digits around them are read by ``SYMBOL_WORDS``.
"""

from __future__ import annotations

import re
import unicodedata

from text.zh_numbers import decimal_to_chinese, digits_to_chinese, int_to_chinese

SYMBOL_WORDS = {
    "&": "和", "+": "加", "=": "等于", "×": "乘", "÷": "除以", "%": "百分之", "‰": "千分之",
    "℃": "摄氏度", "℉": "华氏度", "°": "度", "±": "正负", "≈": "约等于", "≠": "不等于", "≤": "小于等于",
    "≥": "大于等于", "∞": "无穷大", "√": "根号", "∑": "求和", "∠": "角", "△": "三角形", "⊥": "垂直于",
    "∥": "平行于", "∵": "因为", "∴": "所以", "∈": "属于",
    "α": "阿尔法", "β": "贝塔", "γ": "伽马", "δ": "德尔塔", "Δ": "德尔塔", "ε": "艾普西隆", "θ": "西塔",
    "λ": "兰姆达", "μ": "缪", "π": "派", "ρ": "柔", "σ": "西格马", "Σ": "西格马", "τ": "陶", "φ": "斐",
    "ω": "欧米伽", "Ω": "欧米伽",
}

MEASURE_WORDS = "个只本件位次天周斤条张把台辆块元岁层分种双名句道份棵头匹间所座支杯碗瓶年点万千亿"
_UNITS = {
    "km/h": "公里每小时", "m/s": "米每秒", "km": "公里", "cm": "厘米", "mm": "毫米", "kg": "千克", "mg": "毫克",
    "ml": "毫升", "mL": "毫升", "km2": "平方公里", "cm2": "平方厘米", "m2": "平方米", "cm3": "立方厘米",
    "m3": "立方米", "m": "米", "g": "克", "°C": "摄氏度", "°F": "华氏度",
}
_CURRENCY = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑", "₩": "韩元", "₽": "卢布"}
_CODE_WORDS = re.compile(
    r"(?:电话|手机|号码|热线|拨打|拨|分机|邮编|验证码|密码|学号|工号|卡号|账号|编号|尾号|代码|房号|车次|航班"
    r"|车牌|微信|身份证|单号|序列号|型号|QQ)[号码是为:\s]*$"
)
_SCORE_WORDS = re.compile(r"(?:比分|比例|配比|比|以|战胜|击败|打败|赢了|输了)[^,，。.!?！？]{0,4}$")
_NUM = r"\d+(?:\.\d+)?"


def _num(text: str) -> str:
    return decimal_to_chinese(text) if "." in text else int_to_chinese(text)


def code(digits: str) -> str:
    """A digit string read digit by digit, 1 as 幺 (phone numbers, codes)."""
    return digits_to_chinese(digits, one="幺")


def _clock(hour: str, minute: str, second: str | None) -> str:
    h = int(hour)
    out = ("两" if h == 2 else int_to_chinese(str(h))) + "点"
    if minute != "00" or second:
        out += ("零" if minute[0] == "0" and minute != "00" else "") + int_to_chinese(str(int(minute))) + "分"
    if second:
        out += int_to_chinese(str(int(second))) + "秒"
    return out


def _is_time(m: re.Match, hour: str, minute: str) -> bool:
    before = m.string[max(0, m.start() - 8):m.start()]
    return len(minute) == 2 and int(hour) <= 24 and int(minute) <= 59 and not _SCORE_WORDS.search(before)


def _colon(m: re.Match) -> str:
    hour, minute, second = m.group(1), m.group(2), m.group(3)
    if second is None and not _is_time(m, hour, minute):
        return _num(hour) + "比" + _num(minute)
    return _clock(hour, minute, second)


def _date(m: re.Match) -> str:
    year, month, day, suffix = m.group(1), m.group(2), m.group(3), m.group(4) or "日"
    return f"{digits_to_chinese(year)}年{int_to_chinese(str(int(month)))}月{int_to_chinese(str(int(day)))}{suffix}"


def _digit_groups(m: re.Match) -> str:
    return ",".join(code(g) for g in re.split(r"[- ]", m.group(0)))


def _hyphen_pair(m: re.Match) -> str:
    a, b = m.group(1), m.group(2)
    if a.startswith("0") or b.startswith("0") or len(a) + len(b) >= 7:
        return code(a) + "," + code(b)
    return m.group(0)  # a range, read later


def _context_digits(m: re.Match) -> str:
    digits = m.group(0)
    before = m.string[max(0, m.start() - 8):m.start()]
    after = m.string[m.end():m.end() + 2]
    if (
        len(digits) >= 12 or (len(digits) > 1 and digits.startswith("0")) or _CODE_WORDS.search(before)
        or (len(digits) >= 3 and (after[:1] == "室" or after.startswith("房")))
    ):
        return code(digits)
    return digits


def _currency(m: re.Match) -> str:
    amount = m.group(3)
    if "." in amount:
        amount = amount.rstrip("0").rstrip(".")  # 3.50 → 3.5
    return ("负" if m.group(2) else "") + _num(amount) + _CURRENCY[m.group(1)]


def _integer(m: re.Match) -> str:
    digits = m.group(0)
    following = m.string[m.end():m.end() + 1]
    preceding = m.string[m.start() - 1:m.start()]
    if digits == "2" and following and following in MEASURE_WORDS and preceding != "第":
        return "两"
    return int_to_chinese(digits)


_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_POWER_WORDS = {"2": "平方", "3": "立方"}


def _power(m: re.Match) -> str:
    base, exponent = m.group(1), m.group(2).translate(_SUPERSCRIPTS)
    if re.fullmatch(r"(?:k|c|m|d)?m", base):  # m², km³: units, read by the unit table
        return base + exponent
    if base.isdigit() or exponent not in _POWER_WORDS:
        return f"{base}的{exponent}次方"
    return f"{base}的{_POWER_WORDS[exponent]}"


def _vulgar_fraction(m: re.Match) -> str:
    whole, fraction = m.group(1), unicodedata.normalize("NFKC", m.group(2))
    numerator, _, denominator = fraction.partition("\u2044")
    reading = int_to_chinese(denominator) + "分之" + int_to_chinese(numerator)
    return (int_to_chinese(whole) + "又" if whole else "") + reading


def before_nfkc(text: str) -> str:
    """Characters that NFKC would turn into plain digits or letters, read first: circled numbers
    (``①准备`` → ``一,准备``), Roman numerals (``第Ⅲ章`` → ``第三章``), superscript powers
    (``10⁸`` → 十的八次方, ``x²`` → x的平方; ``m²`` stays a unit), vulgar fractions (``3½`` →
    三又二分之一)."""
    text = re.sub(r"[\u2460-\u2473]", lambda m: int_to_chinese(str(ord(m.group(0)) - 0x245F)) + ",", text)
    text = re.sub(r"[\u2160-\u216b\u2170-\u217b]",
                  lambda m: int_to_chinese(str(int(unicodedata.numeric(m.group(0))))), text)
    text = re.sub(r"(\d+|[A-Za-z]+)([⁰¹²³⁴⁵⁶⁷⁸⁹]+)", _power, text)
    return re.sub(r"(\d*)([\u00bc-\u00be\u2150-\u215e])", _vulgar_fraction, text)


# (pattern, replacement) applied in order.
_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"(?:^|(?<=[\s,.!?;:]))[(]?(\d{1,2})[)](?=\s*\D)"),                        # 1) 准备
     lambda m: int_to_chinese(m.group(1)) + ","),
    (re.compile(r"(?<=[A-Za-z0-9])@(?=[A-Za-z0-9])"), " at "),                                 # e-mail
    (re.compile(r"(?<=[A-Za-z0-9])\.(?=[A-Za-z]{2,})"), "点"),                                   # qq.com
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),
    (re.compile(r"(?<!\d)(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})([日号])?(?!\d)"), _date),
    (re.compile(r"(?<!\d)(\d{4})\s*[-~～—–到至]\s*(\d{4})(?=年)"),
     lambda m: digits_to_chinese(m.group(1)) + "到" + digits_to_chinese(m.group(2))),
    (re.compile(r"(?<!\d)(\d{3,4})(?=年)"), lambda m: digits_to_chinese(m.group(1))),
    (re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})\s*[-~～—–至到]\s*(\d{1,2}):(\d{2})(?![\d:])"),
     lambda m: _clock(m.group(1), m.group(2), None) + "到" + _clock(m.group(3), m.group(4), None)),
    (re.compile(r"(?<![\d:])(\d{1,3}):(\d{1,3})(?::(\d{2}))?(?![\d:])"), _colon),
    (re.compile(r"(?<![\d.])(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?![\d.])"),
     lambda m: code(re.sub(r"\D", "", m.group(0)))),                                        # mobile
    (re.compile(r"(?<![\d.-])\d+(?:-\d+){2,}(?![\d.-])"), _digit_groups),                  # 400-820-8820
    (re.compile(r"(?<![\d.-])(\d+)-(\d+)(?![\d.-])(?!\s*=)"), _hyphen_pair),               # 010-12345678
    (re.compile(r"(?<![\d ])\d{4}(?: \d{4}){2,}(?![\d ])"), _digit_groups),                # card numbers
    (re.compile(r"(?<=[A-Z])\d{3,}"), lambda m: code(m.group(0))),                           # G1234, CA1831
    (re.compile(r"(?<![\d.])\d{3,}(?![\d.])|(?<![\d.])0\d+(?![\d.])"), _context_digits),
    (re.compile(rf"(?<=\d)\s*-\s*(?={_NUM}\s*=)"), "减"),
    (re.compile(r"(?<=[\dA-Za-z])\s*<\s*(?=[\dA-Za-z])"), "小于"),
    (re.compile(r"(?<=[\dA-Za-z])\s*>\s*(?=[\dA-Za-z])"), "大于"),
    (re.compile(rf"(?<=\d)((?:%|‰|°C|°F|°|km/h|m/s|km|kg|cm|mm|ml|m|g|元|岁|个|天|年|月|日|号|点|分|秒)?)\s*"
                rf"[~～—–-]\s*(?={_NUM})"), lambda m: m.group(1) + "到"),
    (re.compile(rf"(-?)({_NUM})\s*%"), lambda m: ("负" if m.group(1) else "") + "百分之" + _num(m.group(2))),
    (re.compile(rf"(-?)({_NUM})\s*‰"), lambda m: ("负" if m.group(1) else "") + "千分之" + _num(m.group(2))),
    (re.compile(rf"(-?)({_NUM})\s*°([CF])"),
     lambda m: ("零下" if m.group(1) else "") + _num(m.group(2)) + _UNITS["°" + m.group(3)]),
    (re.compile(rf"(-?)({_NUM})\s*(km/h|m/s|km2|cm2|cm3|km|cm|mm|kg|mg|ml|mL|m2|m3|m|g)(?![A-Za-z])"),
     lambda m: ("负" if m.group(1) else "") + _num(m.group(2)) + _UNITS[m.group(3)]),
    (re.compile(r"(?<=次方)\s*(km/h|m/s|km|kg|m|g)(?![A-Za-z])"), lambda m: _UNITS[m.group(1)]),  # 10⁸m/s
    (re.compile(rf"([¥$€£₩₽])\s*(-?)({_NUM})"), _currency),
    (re.compile(r"(\d+)(?:\.0+|(\.\d*[1-9])0+)(?=\s*元)"), lambda m: m.group(1) + (m.group(2) or "")),  # 8.50元
    (re.compile(rf"({_NUM})\s*°"), lambda m: _num(m.group(1)) + "度"),
    (re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])"),
     lambda m: int_to_chinese(m.group(2)) + "分之" + int_to_chinese(m.group(1))),
    (re.compile(r"(?<=\d)\s*([+×÷=])\s*(?=[-±]?\d)"), lambda m: SYMBOL_WORDS[m.group(1)]),
    (re.compile(rf"±\s*(?={_NUM})"), "正负"),
    (re.compile(rf"(?<![\dA-Za-z])-({_NUM})"), lambda m: "负" + _num(m.group(1))),
    (re.compile(r"\d+\.\d+"), lambda m: decimal_to_chinese(m.group(0))),
    (re.compile(r"\d+"), _integer),
]


def verbalize(text: str) -> str:
    """Replace every number (and the signs, units and symbols read with it) by its Chinese reading."""
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text
