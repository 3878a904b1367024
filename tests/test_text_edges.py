"""Text pieces at their edges: final punctuation after closing quotes and brackets, pauses next to quotes.

The model was trained on transcripts like ``他说：“不去。”`` whose phones end in ``.``; a piece
ending in a closing quote or bracket without a full stop must end the same way, and the
pause marks next to quotes must survive the front end dropping the quotes.
"""

from __future__ import annotations

import pytest

from infer.text_input import phonemize, split_text
from text.symbols import PUNCTUATION


@pytest.mark.parametrize("text,lang,last", [
    ("“再见”", "zh", "."), ("她说：“不去”", "zh", "."), ("你好」", "zh", "."), ("《三体》", "zh", "."),
    ("（你好）", "zh", "."), ("他说‘好的’", "zh", "."), ('"Now"', "en", "."), ("Hello (world)", "en", "."),
    ("It is 'fine'", "en", "."), ("“你好！”", "zh", "!"), ("“你好……”", "zh", "…"), ("他说：“你好。”", "zh", "."),
    ('"Really?"', "en", "?"), ("你好", "zh", "."), ("Hello", "en", "."),
])
def test_piece_ends_in_punctuation_like_training(text: str, lang: str, last: str) -> None:
    piece = phonemize(text, lang, "test")
    assert piece.phones[-1] == last
    assert piece.phones[-2] not in PUNCTUATION  # exactly one final mark, none added after an existing one


def test_quotes_do_not_swallow_pauses() -> None:
    assert phonemize("“你好，”他说", "zh", "t").phones.count(",") == 1
    assert phonemize('"Hi," she said.', "en", "t").phones.count(",") == 1
    assert phonemize("他说：“好”，然后走了", "zh", "t").phones.count(",") == 2
    pieces = split_text("他说：“你好。”我们走吧。“再见”", "zh")
    assert [p.text for p in pieces] == ["他说：“你好。”", "我们走吧。", "“再见”。"]
    assert [p.phones[-1] for p in pieces] == [".", ".", "."]
    assert pieces[1].phones[0] == "w"  # the closing quote stayed with its sentence: no stray mark in front
