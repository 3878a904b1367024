"""The v1 symbol table and the pinyin → phone map."""

import pytest

from text.errors import TextFrontendError
from text.pinyin_map import pinyin_to_phones, split_syllable
from text.symbols import PUNCTUATION, SYMBOL_TO_ID, SYMBOLS, SYMBOLS_MD5, phones_to_ids


def test_table_size_and_md5():
    assert len(SYMBOLS) == 322
    assert len(set(SYMBOLS)) == 322
    assert SYMBOLS_MD5 == "850a1ef86113451edbb5547c4fb8b46d"


@pytest.mark.parametrize(
    "symbol, index",
    [("!", 0), (",", 1), ("-", 2), (".", 3), ("?", 4), ("AA", 5), ("B", 24), ("EE", 33), ("ER", 37),
     ("SP", 77), ("SP2", 78), ("SP3", 79), ("UNK", 86), ("_", 95), ("a", 96), ("a1", 97), ("i01", 161),
     ("ir1", 211), ("v", 295), ("vn5", 315), ("zh", 320), ("…", 321)],
)
def test_known_indices(symbol, index):
    assert SYMBOLS[index] == symbol
    assert SYMBOL_TO_ID[symbol] == index


def test_punctuation_in_table():
    assert set(PUNCTUATION) == {"!", "?", "…", ",", ".", "-"}
    assert all(p in SYMBOL_TO_ID for p in PUNCTUATION)


def test_phones_to_ids_round_trip():
    phones = ["n", "i2", "h", "ao3", ",", "HH", "AH0", "L", "OW1", "."]
    ids = phones_to_ids(phones)
    assert [SYMBOLS[i] for i in ids] == phones


def test_phones_to_ids_names_unknown_phone():
    with pytest.raises(TextFrontendError, match="'xx9'"):
        phones_to_ids(["n", "i2", "xx9"])


@pytest.mark.parametrize(
    "syllable, phones",
    [
        ("a1", "AA a1"), ("ai4", "AA ai4"), ("ang2", "AA ang2"), ("e4", "EE e4"), ("er2", "EE er2"),
        ("o1", "OO o1"), ("ou1", "OO ou1"),
        ("zi4", "z i04"), ("ci2", "c i02"), ("si4", "s i04"),
        ("zhi1", "zh ir1"), ("chi1", "ch ir1"), ("shi2", "sh ir2"), ("ri4", "r ir4"),
        ("yi1", "y i1"), ("yin1", "y in1"), ("ying2", "y ing2"), ("ya1", "y a1"), ("yao4", "y ao4"),
        ("ye3", "y E3"), ("yan1", "y En1"), ("you3", "y ou3"), ("yong3", "y ong3"),
        ("yu3", "y v3"), ("yue4", "y ve4"), ("yuan2", "y van2"), ("yun2", "y vn2"),
        ("wu3", "w u3"), ("wo3", "w o3"), ("wei4", "w ei4"), ("wen4", "w en4"), ("wang2", "w ang2"),
        ("ju4", "j v4"), ("qu4", "q v4"), ("xue2", "x ve2"), ("juan3", "j van3"), ("xun4", "x vn4"),
        ("lv4", "l v4"), ("nv3", "n v3"), ("lve4", "l ve4"), ("nve4", "n ve4"),
        ("gui4", "g ui4"), ("liu2", "l iu2"), ("dun4", "d un4"), ("xian1", "x ian1"),
        ("bo1", "b o1"), ("duo1", "d uo1"), ("zhuang4", "zh uang4"), ("jiong3", "j iong3"),
        ("ma5", "m a5"),
    ],
)
def test_pinyin_to_phones(syllable, phones):
    assert " ".join(pinyin_to_phones(syllable)) == phones


def test_every_pypinyin_syllable_maps_into_the_table():
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.pinyin_dict import pinyin_dict

    syllables = {to_tone3(p, neutral_tone_with_five=True) for v in pinyin_dict.values() for p in v.split(",")}
    assert len({s[:-1] for s in syllables}) > 400
    for syllable in syllables:
        initial, final = pinyin_to_phones(syllable)
        assert initial in SYMBOL_TO_ID and final in SYMBOL_TO_ID, syllable


@pytest.mark.parametrize("bad", ["xyz1", "bvv2", "a", "zhi7"])
def test_bad_pinyin_raises(bad):
    with pytest.raises(TextFrontendError):
        pinyin_to_phones(bad)


def test_split_syllable_zero_initial():
    assert split_syllable("ang") == ("AA", "ang")
