"""Golden sets of the text frontend: hand-checked readings of Chinese and English sentences.

``tests/data/golden_zh.tsv`` and ``tests/data/golden_en.tsv`` hold one sentence a line with its
expected reading and, where GPT-SoVITS v1 reads it differently, v1's reading and the reason for the
difference (see the header of each file). One test per file reports every mismatch at once.
"""

from collections import Counter
from pathlib import Path

import pytest

from text.cleaner import clean_text
from text.pinyin_map import pinyin_to_phones
from text.symbols import PUNCTUATION, phones_to_ids

DATA = Path(__file__).resolve().parent / "data"
ZH_CATEGORIES = {"num", "date", "money", "poly", "sandhi", "redup", "neutral", "erhua", "classical", "trad",
                 "mixed", "punct", "long"}


def load(name: str) -> list[list[str]]:
    rows = []
    for number, line in enumerate((DATA / name).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        assert len(fields) == 5, f"{name}:{number}: expected 5 tab-separated fields, got {len(fields)}"
        rows.append(fields + [f"{name}:{number}"])
    return rows


def expected_phones(reading: str) -> list[str]:
    """``"ni3 hao3 , HH AH0"`` → phones: pinyin syllables become two phones, ARPAbet and marks stay."""
    phones: list[str] = []
    for token in reading.split():
        if token in PUNCTUATION or not token[0].islower():
            phones.append(token)
        else:
            phones += pinyin_to_phones(token)
    return phones


def check(rows: list[list[str]], lang: str) -> list[str]:
    failures = []
    for _category, text, expected, _v1, _reason, where in rows:
        result = clean_text(text, lang)
        want = expected_phones(expected)
        if result.phones != want:
            failures.append(f"{where} {text!r}\n  want {' '.join(want)}\n  got  {' '.join(result.phones)}")
        phones_to_ids(result.phones)
        for part in result.parts:
            if part.lang == "zh":  # BERT features need one phone count per character
                assert len(part.norm_text) == len(part.word2ph), (where, part)
    return failures


@pytest.mark.parametrize("name, lang", [("golden_zh.tsv", "zh"), ("golden_en.tsv", "en")])
def test_golden_set(name, lang):
    failures = check(load(name), lang)
    assert not failures, f"{len(failures)} sentences read wrong:\n" + "\n".join(failures)


@pytest.mark.parametrize("name, minimum", [("golden_zh.tsv", 300), ("golden_en.tsv", 80)])
def test_golden_set_is_complete_and_marks_v1_differences(name, minimum):
    rows = load(name)
    assert len(rows) >= minimum
    assert len({row[1] for row in rows}) == len(rows), "duplicate sentences"
    for _category, _text, expected, v1, reason, where in rows:
        assert expected.strip(), where
        if v1:  # a reading that differs from GPT-SoVITS v1 says why
            assert v1 != expected and reason, where
        else:
            assert not reason, f"{where}: a reason without a v1 reading"
    if name == "golden_zh.tsv":
        counts = Counter(row[0] for row in rows)
        assert set(counts) == ZH_CATEGORIES
        assert min(counts.values()) >= 10, counts
