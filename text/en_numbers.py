"""English number verbaliser (no external dependencies).

    int_to_words(1234) == "one thousand two hundred thirty four"
    ordinal_to_words(21) == "twenty first"     year_to_words(1905) == "nineteen oh five"
    normalize_numbers("$3.50, 50%, 2nd, -4, 1,000") reads every number in words
"""

from __future__ import annotations

import re

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = ("_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_MAX = 10**15


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def int_to_words(n: int) -> str:
    """Cardinal in words (American style, no "and"); numbers of 16+ digits are read digit by digit."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n >= _MAX:
        return digits_to_words(str(n))
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += _below_thousand(n // scale) + [name]
            n %= scale
    if n or not words:
        words += _below_thousand(n)
    return " ".join(words)


def digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def ordinal_to_words(n: int) -> str:
    words = int_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_to_words(n: int) -> str:
    """Years read in pairs: 1990 → nineteen ninety, 1905 → nineteen oh five, 2000 → two thousand,
    2008 → two thousand eight, 2024 → twenty twenty four, 1900 → nineteen hundred."""
    if n % 1000 == 0 or 2000 < n < 2010:
        return int_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return int_to_words(high) + " hundred"
    return int_to_words(high) + " " + ("oh " + _ONES[low] if low < 10 else int_to_words(low))


def decimal_to_words(number: str) -> str:
    integer, _, fraction = number.partition(".")
    return int_to_words(int(integer or "0")) + " point " + digits_to_words(fraction)


_CENTS_PLURAL = {"cent": "cents", "penny": "pence"}


def _money(m: re.Match, unit: str, cents_unit: str) -> str:
    whole, _, cents = m.group(1).partition(".")
    scale = m.group(2) if m.lastindex and m.lastindex >= 2 else None
    if scale:  # $1.5 million → one point five million dollars
        return f"{_number(m.group(1))} {_SCALE_WORDS[scale.lower()]} {unit}s"
    amount = int(whole)
    out = f"{int_to_words(amount)} {unit}{'' if amount == 1 else 's'}"
    if cents and int(cents):
        c = int(cents.ljust(2, "0")[:2])
        out += f", {int_to_words(c)} " + (cents_unit if c == 1 else _CENTS_PLURAL[cents_unit])
    return out


_COUNTED = re.compile(r"\s+[A-Za-z]+s\b")


def _integer(m: re.Match) -> str:
    text = m.group(0)
    n = int(text)
    if len(text) > 1 and text.startswith("0"):
        return digits_to_words(text)
    if 1000 < n < 3000 and len(text) == 4 and not _COUNTED.match(m.string, m.end()):  # a year, not 1250 students
        return year_to_words(n)
    return int_to_words(n)


def _time(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if minute == 0:
        return int_to_words(hour) + " o'clock"
    return int_to_words(hour) + " " + ("oh " + _ONES[minute] if minute < 10 else int_to_words(minute))


_SCALE_WORDS = {"k": "thousand", "thousand": "thousand", "m": "million", "million": "million", "bn": "billion",
                "b": "billion", "billion": "billion", "trillion": "trillion"}
_MONEY = r"\s?(\d+(?:\.\d+)?)(?:\s?(thousand|million|billion|trillion|bn|[kmb])\b)?"
# unit → (singular, plural)
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"), "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"), "kg": ("kilogram", "kilograms"), "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"), "ml": ("milliliter", "milliliters"), "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"), "ft": ("foot", "feet"), "mi": ("mile", "miles"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"), "gb": ("gigabyte", "gigabytes"),
    "tb": ("terabyte", "terabytes"), "°c": ("degree Celsius", "degrees Celsius"),
    "°f": ("degree Fahrenheit", "degrees Fahrenheit"), "°": ("degree", "degrees"),
}
_FRACTIONS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _unit(m: re.Match) -> str:
    number = m.group(1)
    singular, plural = _UNITS[m.group(2).lower()]
    return f"{_number(number)} {singular if number == '1' else plural}"


def _fraction(m: re.Match) -> str:
    num, den = int(m.group(1)), int(m.group(2))
    if den in _FRACTIONS:
        name = _FRACTIONS[den][num != 1]
    else:
        name = ordinal_to_words(den) + ("" if num == 1 else "s")
    return f"{int_to_words(num)} {name}"


def _plural_year(m: re.Match) -> str:
    words = year_to_words(int(m.group(1))).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " ".join(words)


def _clock(m: re.Match) -> str:
    hour, minute, half = m.group(1), m.group(2), m.group(3).upper()
    spoken = int_to_words(int(hour)) if minute in (None, "00") else _time(m)
    return f"{spoken} {half}M"


_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"(?<![\d$£€.,])\d{1,3}(?:,\d{3})+(?![\d,]|\.\d)"),                      # 1,250: a cardinal
     lambda m: int_to_words(int(m.group(0).replace(",", "")))),
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),
    (re.compile(r"\$" + _MONEY, re.IGNORECASE), lambda m: _money(m, "dollar", "cent")),
    (re.compile(r"£" + _MONEY, re.IGNORECASE), lambda m: _money(m, "pound", "penny")),
    (re.compile(r"€" + _MONEY, re.IGNORECASE), lambda m: _money(m, "euro", "cent")),
    (re.compile(r"(?<![\d-])(\d{3})-(\d{3,4})(?:-(\d{4}))?(?![\d-])"),                     # phone numbers
     lambda m: ", ".join(digits_to_words(g) for g in m.groups() if g)),
    (re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?([ap])\.?m\b\.?", re.IGNORECASE), _clock),       # 7:30 pm
    (re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])"), _time),
    (re.compile(r"\b(1[1-9]\d0|20[0-9]0)s\b"), _plural_year),                                  # 1990s
    (re.compile(r"(?<![\d/])(\d{1,2})/([2-9]|10)(?![\d/])"), _fraction),
    (re.compile(r"\#\s?(?=\d)"), "number "),
    (re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December)"
                r"\s+(\d{1,2})(?:st|nd|rd|th)?\b(?!:)"),
     lambda m: f"{m.group(1)} {ordinal_to_words(int(m.group(2)))}"),                          # May 5 → May fifth
    (re.compile(r"(\d+(?:\.\d+)?)\s?%"), lambda m: _number(m.group(1)) + " percent"),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE), lambda m: ordinal_to_words(int(m.group(1)))),
    (re.compile(r"(?<![\w-])-(?=\d)"), "minus "),
    (re.compile(r"(\d+(?:\.\d+)?)\s?(km/h|mph|km|cm|mm|kg|mg|ml|lbs|lb|oz|ft|mi|kb|mb|gb|tb|°c|°f)\b",
                re.IGNORECASE), _unit),
    (re.compile(r"(\d+(?:\.\d+)?)\s?([mg])\b"), _unit),
    (re.compile(r"(\d+(?:\.\d+)?)\s?(°[CF]?)"), _unit),
    (re.compile(r"(?<=\d)\s?[-–]\s?(?=\d)"), " to "),                                         # ranges
    (re.compile(r"\d+\.\d+"), lambda m: decimal_to_words(m.group(0))),
    (re.compile(r"\d+"), _integer),
]


def _number(text: str) -> str:
    return decimal_to_words(text) if "." in text else int_to_words(int(text))


def normalize_numbers(text: str) -> str:
    """Replace every number (money, phone numbers, times, decades, fractions, percentages, ordinals,
    units, ranges, years, decimals) by words. Letters and digits written together are read apart
    (``Q3`` → Q three, ``221B`` → two hundred twenty one B)."""
    text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-RT-Za-rt-z]\b)", " ", text)  # not the s of 1990s
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text
