"""Japanese frontend: v1 phone set, English words inside Japanese, and (with pyopenjtalk
installed, ``pip install pyopenjtalk-plus``) hand-checked readings of real sentences."""

import sys
import types

import pytest

from text.cleaner import clean_text
from text.symbols import JA_SYMBOLS, PUNCTUATION

ARPABET_LIKE = str.isupper


@pytest.fixture
def fake_openjtalk(monkeypatch):
    readings = {"私は": "w a t a sh i w a", "が好き": "g a s U k i", "クァルテット": "kw a r u t e cl t o",
                "テュ": "ty u", "グァ": "gw a", "行きました": "i k i m A sh I t a pau"}
    monkeypatch.setitem(sys.modules, "pyopenjtalk", types.SimpleNamespace(g2p=lambda text: readings[text]))


def test_english_words_inside_japanese_are_english_parts(fake_openjtalk):
    result = clean_text("私はPythonが好き。", "ja")
    assert " ".join(result.phones) == "w a t a sh i w a P AY1 TH AA0 N g a s U k i ."
    assert [(p.lang, p.norm_text) for p in result.parts] == [("ja", "私は"), ("en", "Python"), ("ja", "が好き.")]
    assert result.lang == "ja" and len(result.phones) == sum(result.word2ph)


def test_every_phone_is_in_the_v1_japanese_set(fake_openjtalk):
    for text in ("クァルテット", "テュ", "グァ", "行きました"):
        phones = clean_text(text, "ja").phones
        assert all(p in JA_SYMBOLS or p in PUNCTUATION for p in phones), (text, phones)
    assert clean_text("クァルテット", "ja").phones[:3] == ["k", "w", "a"]  # kw is not in the v1 table


GOLDEN_JA = [
    ("こんにちは", "k o N n i ch i w a"),
    ("ありがとうございます。", "a r i g a t o o g o z a i m a s U ."),
    ("今日は良い天気ですね。", "ky o o w a y o i t e N k i d e s U n e ."),
    ("ちょっと待って！", "ch o cl t o m a cl t e !"),
    ("東京タワーに行きました", "t o o ky o o t a w a a n i i k i m a sh I t a"),
    ("写真を撮ります", "sh a sh i N o t o r i m a s U"),
    ("コーヒーを飲みたい？", "k o o h i i o n o m i t a i ?"),
    ("私はPythonが好きです。", "w a t a sh i w a P AY1 TH AA0 N g a s U k i d e s U ."),
]


@pytest.mark.parametrize("text, expected", GOLDEN_JA, ids=[g[0] for g in GOLDEN_JA])
def test_golden_with_openjtalk(text, expected):
    pytest.importorskip("pyopenjtalk", reason="the Japanese extra (pyopenjtalk-plus) is not installed")
    result = clean_text(text, "ja")
    assert " ".join(result.phones) == expected
    assert all(p in JA_SYMBOLS or p in PUNCTUATION or ARPABET_LIKE(p) for p in result.phones)
