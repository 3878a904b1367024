"""The result of grapheme-to-phoneme conversion."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class G2PResult:
    """Phones of one utterance.

    ``phones``: symbols of ``text.symbols.SYMBOLS`` (length ``L``).
    ``word2ph``: phones per unit of ``norm_text``, ``sum(word2ph) == L``. A unit is one
    character for Chinese (2 phones per syllable, 1 per punctuation mark, so
    ``len(norm_text) == len(word2ph)`` for pure Chinese), and one word or punctuation mark for
    English and Japanese runs (see ``text.english.tokens_of``).
    ``norm_text``: the normalised text the phones were made from.
    ``lang``: ``"zh"``, ``"en"`` or ``"ja"`` (the language asked for; zh may contain English runs).
    """

    phones: list[str]
    word2ph: list[int]
    norm_text: str
    lang: str

    def __post_init__(self) -> None:
        if len(self.phones) != sum(self.word2ph):
            raise AssertionError(
                f"g2p invariant broken for {self.norm_text!r}: {len(self.phones)} phones but "
                f"sum(word2ph) = {sum(self.word2ph)}"
            )
