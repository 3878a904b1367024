"""Chinese readings of numbers: integers, decimals, digit strings (spec §7.2 step 1).

    int_to_chinese("10050") == "一万零五十"      digits_to_chinese("2024") == "二零二四"
    decimal_to_chinese("3.14") == "三点一四"     digits_to_chinese("110", one="幺") == "幺幺零"
"""

from __future__ import annotations

from text.errors import TextFrontendError

DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")          # inside a group of four digits
_GROUP_UNITS = ("", "万", "亿", "万亿")       # groups of four digits, from the right
MAX_INTEGER_DIGITS = len(_GROUP_UNITS) * 4   # longer digit strings are read digit by digit


def digits_to_chinese(digits: str, one: str = "一") -> str:
    """Read a digit string digit by digit; ``one="幺"`` for phone numbers."""
    _check_digits(digits)
    return "".join(one if d == "1" else DIGITS[int(d)] for d in digits)


def _check_digits(digits: str) -> None:
    if not digits or not digits.isascii() or not digits.isdigit():
        raise TextFrontendError(f"expected ASCII digits, got {digits!r}")


def _group_to_chinese(group: int) -> str:
    """0 < group < 10000 → reading with 千百十 and inner 零 (e.g. 1005 → 一千零五)."""
    out = []
    pending_zero = False
    for power in (3, 2, 1, 0):
        d = group // 10**power % 10
        if d == 0:
            pending_zero = bool(out)
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(("两" if d == 2 and power == 3 else DIGITS[d]) + _SMALL_UNITS[power])
    return "".join(out)


def int_to_chinese(digits: str) -> str:
    """Read an integer given as ASCII digits: ``"0"→零``, ``"15"→十五``, ``"110"→一百一十``,
    ``"100000001"→一亿零一``, 2 before 千/万/亿 as 两 (``"12000"→一万两千``). Leading zeros
    (``"007"``) or more than 16 digits: digit by digit."""
    _check_digits(digits)
    if len(digits) > 1 and digits[0] == "0" or len(digits) > MAX_INTEGER_DIGITS:
        return digits_to_chinese(digits)
    value = int(digits)
    if value == 0:
        return "零"
    groups = []
    while value:
        groups.append(value % 10000)
        value //= 10000
    out = []
    need_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or group < 1000):
            out.append("零")
        out.append(("两" if group == 2 and index else _group_to_chinese(group)) + _GROUP_UNITS[index])
        need_zero = False
    text = "".join(out)
    if text.startswith("一十"):  # 10–19 (also 十万, 十五亿): the leading 一 is not read
        text = text[1:]
    return text


def decimal_to_chinese(number: str) -> str:
    """``"3.14"→三点一四``, ``"0.50"→零点五零``; the integer part is read as a number."""
    integer, _, fraction = number.partition(".")
    head = int_to_chinese(integer or "0")
    if not fraction:
        return head
    return head + "点" + digits_to_chinese(fraction)
