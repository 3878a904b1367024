"""Mixed Chinese/English text, the clean_text entry point, Japanese error path, sentence splitting."""

import random
import sys
import types
import unicodedata

import pytest

from text.cleaner import G2PResult, MissingDependencyError, TextFrontendError, clean_text, normalize_lang
from text.split import split_sentences
from text.symbols import phones_to_ids


def test_english_inside_chinese_is_read_not_dropped():
    result = clean_text("我喜欢用Python写代码", "zh")
    assert " ".join(result.phones) == (
        "w o2 x i3 h uan5 y ong4 P AY1 TH AA0 N x ie3 d ai4 m a3"
    )
    assert result.word2ph == [2, 2, 2, 2, 5, 2, 2, 2]
    assert result.norm_text == "我喜欢用Python写代码"
    assert result.lang == "zh"
    phones_to_ids(result.phones)  # every phone is in the table


def test_mixed_acronym_multiword_and_numbers():
    assert " ".join(clean_text("打开GPU", "zh").phones) == "d a3 k ai1 JH IY1 P IY1 Y UW1"
    assert " ".join(clean_text("Hello世界", "zh").phones) == "HH AH0 L OW1 sh ir4 j ie4"
    assert " ".join(clean_text("A股", "zh").phones) == "EY1 g u3"  # a lone letter is read by its name
    result = clean_text("我用Visual Studio写了3个程序", "zh")
    assert "V IH1 ZH AH0 W AH0 L S T UW1 D IY0 OW2" in " ".join(result.phones)
    assert "s an1 g e5" in " ".join(result.phones)
    assert len(result.phones) == sum(result.word2ph)


@pytest.mark.parametrize("alias, code", [("zh", "zh"), ("ZH", "zh"), ("EN", "en"), ("En", "en"),
                                         ("ja", "ja"), ("JA", "ja"), ("jp", "ja"), ("JP", "ja")])
def test_language_aliases(alias, code):
    assert normalize_lang(alias) == code


def test_clean_text_accepts_upper_case_lang():
    assert clean_text("你好", "ZH").phones == clean_text("你好", "zh").phones
    assert isinstance(clean_text("hello there", "EN"), G2PResult)


@pytest.mark.parametrize("lang", ["de", "", "chinese", "auto"])
def test_unknown_language_raises(lang):
    with pytest.raises(TextFrontendError, match="unknown language"):
        clean_text("你好", lang)


def test_error_class_is_value_error():
    assert issubclass(TextFrontendError, ValueError)


def test_japanese_without_pyopenjtalk_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)  # makes `import pyopenjtalk` fail
    with pytest.raises(MissingDependencyError, match="pip install pyopenjtalk-plus"):
        clean_text("こんにちは", "ja")


def test_japanese_maps_openjtalk_phones(monkeypatch):
    readings = {"こんにちは": "k o N n i ch i w a", "です": "d e s U", "行きます": "i k i m A s U pau"}
    fake = types.SimpleNamespace(g2p=lambda text: readings[text])
    monkeypatch.setitem(sys.modules, "pyopenjtalk", fake)
    result = clean_text("「こんにちは」、です。行きます", "JP")
    assert " ".join(result.phones) == "k o N n i ch i w a , d e s U . i k i m a s U ,"
    assert result.word2ph == [9, 1, 4, 1, 8]
    assert result.norm_text == "こんにちは,です.行きます"
    with pytest.raises(TextFrontendError, match="😀"):
        clean_text("です😀", "ja")


# ---------------------------------------------------------------- split_sentences

def _strip(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


def _pronounceable(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def test_split_after_sentence_punctuation():
    assert split_sentences("你好。今天天气很好！我们去公园吧？好的") == [
        "你好。", "今天天气很好！", "我们去公园吧？", "好的"]
    assert split_sentences("他说：“你好。”然后走了。") == ["他说：“你好。”", "然后走了。"]
    assert split_sentences("Hello world. Mr. Smith paid 3.14 dollars... Really? Yes!") == [
        "Hello world.", "Mr. Smith paid 3.14 dollars...", "Really?", "Yes!"]


def test_split_long_pieces_at_commas_then_by_length():
    text = "这是一个非常长的句子，没有句号，但是有很多逗号，所以应该在逗号处分开，然后每一段都不超过二十个字"
    pieces = split_sentences(text, max_chars=20)
    assert all(len(p) <= 20 for p in pieces)
    assert "".join(pieces) == text
    assert all(p.endswith("，") for p in pieces[:-1])
    unpunctuated = "这是一个完全没有标点符号的非常非常长的句子它应该按照长度被切开"
    pieces = split_sentences(unpunctuated, max_chars=15)
    assert [len(p) for p in pieces] == [11, 11, 9]  # 31 characters in three similar pieces
    assert "".join(pieces) == unpunctuated
    english = "This is a very long English sentence without any punctuation at all"
    pieces = split_sentences(english, max_chars=30)
    assert all(len(p) <= 30 for p in pieces)
    assert " ".join(pieces) == english  # cut only at spaces


def test_split_drops_punctuation_only_pieces():
    assert split_sentences("。。。！！！  \n\n 好") == ["好"]
    assert split_sentences("") == []
    assert split_sentences("?!...") == []


def test_split_never_loses_pronounceable_characters():
    rng = random.Random(0)
    alphabet = list("我你他好的是了在人有天气很长") + list("abcXYZ0123") + list("，。！？,.!?…；：“”  \n")
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160)))
        max_chars = rng.randint(3, 40)
        pieces = split_sentences(text, max_chars=max_chars)
        joined = _strip("".join(pieces))
        assert _pronounceable(joined) == _pronounceable(text)
        it = iter(_strip(text))  # the output is the input with only punctuation-only pieces removed
        assert all(ch in it for ch in joined)
        assert all(p == p.strip() and p for p in pieces)
        assert all(not all(unicodedata.category(c).startswith("P") or c.isspace() for c in p) for p in pieces)


def test_split_rejects_bad_max_chars():
    with pytest.raises(ValueError):
        split_sentences("你好", max_chars=0)


def test_split_pieces_are_cleanable():
    text = "今天是2024年3月15日。我用Python写了一个程序，它运行得很好！Is it good? 是的。"
    for piece in split_sentences(text, max_chars=12):
        result = clean_text(piece, "zh")
        assert len(result.phones) == sum(result.word2ph)
