"""English frontend: golden phones (CMUdict readings, written by hand), numbers, OOV rule, errors."""

import pytest

from text.cleaner import TextFrontendError, clean_text
from text.en_numbers import int_to_words, normalize_numbers, ordinal_to_words, year_to_words
from text.english import letter_to_sound, normalize_en, tokens_of, word_to_phones

GOLDEN = [
    ("Hello, world!", "HH AH0 L OW1 , W ER1 L D !"),
    ("The cat is good.", "DH AH0 K AE1 T IH1 Z G UH1 D ."),
    ("Thank you very much!", "TH AE1 NG K Y UW1 V EH1 R IY0 M AH1 CH !"),
    ("Good morning: speech computer.", "G UH1 D M AO1 R N IH0 NG , S P IY1 CH K AH0 M P Y UW1 T ER0 ."),
    # contractions and possessives
    ("I don't know; it's fine.", "AY1 D OW1 N T N OW1 , IH1 T S F AY1 N ."),
    ("We can't, won't.", "W IY1 K AE1 N T , W OW1 N T ."),
    ("I'm sure we'll go?", "AY1 M SH UH1 R W IY1 L G OW1 ?"),
    ("John's dog", "JH AA1 N Z D AO1 G"),
    # numbers
    ("I have 3 cats.", "AY1 HH AE1 V TH R IY1 K AE1 T S ."),
    ("In 1999, I paid $5.",
     "IH0 N N AY1 N T IY1 N N AY1 N T IY0 N AY1 N , AY1 P EY1 D F AY1 V D AA1 L ER0 Z ."),
    ("50% of 2nd place.", "F IH1 F T IY0 P ER0 S EH1 N T AH1 V S EH1 K AH0 N D P L EY1 S ."),
    ("Pi is 3.5 now", "P AY1 IH1 Z TH R IY1 P OY1 N T F AY1 V N AW1"),
    ("-4 degrees", "M AY1 N AH0 S F AO1 R D IH0 G R IY1 Z"),
    # abbreviations, hyphens, accents, shouting
    ("Mr. Smith", "M IH1 S T ER0 S M IH1 TH"),
    ("well-known data", "W EH1 L N OW1 N D EY1 T AH0"),
    ("naïve café", "N AY2 IY1 V K AH0 F EY1"),
    ("HELLO WORLD", "HH AH0 L OW1 W ER1 L D"),
    # out-of-vocabulary words: acronyms spelled, compounds split into known words
    ("The GPU is fast", "DH AH0 JH IY1 P IY1 Y UW1 IH1 Z F AE1 S T"),
    ("The chatbot is new.", "DH AH0 CH AE1 T B AO1 T IH1 Z N UW1 ."),
    ("I use AI daily", "AY1 Y UW1 Z EY1 AY1 D EY1 L IY0"),  # the verb use (homograph rule)
]


@pytest.mark.parametrize("text, expected", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(text, expected):
    result = clean_text(text, "en")
    assert " ".join(result.phones) == expected
    assert len(result.phones) == sum(result.word2ph)
    assert len(result.word2ph) == len(tokens_of(result.norm_text))


def test_golden_count():
    assert len(GOLDEN) >= 15


def test_short_text_padded_to_four_phones():
    result = clean_text("Hi.", "en")
    assert result.phones == [",", "HH", "AY1", "."]
    assert result.word2ph == [1, 2, 1]
    assert result.norm_text == ",Hi."


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (13, "thirteen"), (21, "twenty one"), (100, "one hundred"), (110, "one hundred ten"),
     (1001, "one thousand one"), (12345, "twelve thousand three hundred forty five"),
     (2500000, "two million five hundred thousand")],
)
def test_int_to_words(n, words):
    assert int_to_words(n) == words


def test_ordinals_and_years():
    assert [ordinal_to_words(n) for n in (1, 2, 3, 5, 12, 20, 21)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "twenty first"]
    assert year_to_words(1905) == "nineteen oh five"
    assert year_to_words(2000) == "two thousand"
    assert year_to_words(2008) == "two thousand eight"
    assert year_to_words(2024) == "twenty twenty four"


def test_normalize_numbers_money_time_commas():
    assert normalize_numbers("$3.50") == "three dollars, fifty cents"
    assert normalize_numbers("at 7:00 and 3:05") == "at seven o'clock and three oh five"
    assert normalize_numbers("1,000,000 people") == "one million people"


@pytest.mark.parametrize(
    "text, expected",
    [("1,250 students", "one thousand two hundred fifty students"), ("in 1999", "in nineteen ninety nine"),
     ("the 1990s", "the nineteen nineties"), ("$1.5 million", "one point five million dollars"),
     ("£2.05", "two pounds, five pence"), ("call 555-1234", "call five five five, one two three four"),
     ("at 7:30 pm", "at seven thirty PM"), ("3/4", "three quarters"), ("pages 10-20", "pages ten to twenty"),
     ("5 km", "five kilometers"), ("1 kg", "one kilogram"), ("30 °C", "thirty degrees Celsius"),
     ("on May 5", "on May fifth"), ("#1", "number one"), ("4G", "four G"), ("Q3", "Q three")],
)
def test_normalize_numbers_in_context(text, expected):
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("Dr. Smith", "doctor Smith"), ("St. Louis", "Saint Louis"), ("Baker St. now", "Baker Street now"),
     ("the U.S. today", "the US today"), ("No. 5", "number five"), ("pens, etc.", "pens, et cetera.")],
)
def test_abbreviations(text, expected):
    assert normalize_en(text) == expected


@pytest.mark.parametrize(
    "text, word, phones",
    [("I will record it", "record", "R IH0 K AO1 R D"), ("the record", "record", "R EH1 K ER0 D"),
     ("I read it yesterday", "read", "R EH1 D"), ("I like to read", "read", "R IY1 D"),
     ("live music", "live", "L AY1 V"), ("we live here", "live", "L IH1 V"), ("close the door", "close", "K L OW1 Z"),
     ("it is close", "close", "K L OW1 S"), ("of no use", "use", "Y UW1 S")],
)
def test_homographs_follow_part_of_speech(text, word, phones):
    from text.en_homographs import homograph_phones

    words = text.lower().split()
    assert " ".join(homograph_phones(words, words.index(word))) == phones


def test_normalize_punctuation_and_decoration():
    assert normalize_en('He said: "yes"; (really) … e.g. this') == "He said, yes, really… for example this"


def test_oov_fallback_never_empty():
    phones = letter_to_sound("blorptastic")
    assert phones and phones[0] == "B"
    assert sum(p[-1] == "1" for p in phones) == 1  # exactly one primary stress
    assert word_to_phones("iPhone") == ["AY1", "F", "OW2", "N"]


@pytest.mark.parametrize("text", ["hello 😀", "hello 你好", "Привет"])
def test_unknown_characters_raise(text):
    with pytest.raises(TextFrontendError) as info:
        clean_text(text, "en")
    assert text.split()[-1][0] in str(info.value)


@pytest.mark.parametrize("text", ["", "...", "!?"])
def test_no_phones_raise(text):
    with pytest.raises(TextFrontendError):
        clean_text(text, "en")
