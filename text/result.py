"""The result of grapheme-to-phoneme conversion, with the language runs (parts) it was made of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TextPart:
    """One run of a single language inside an utterance: ``phones[start:end]`` of the whole result.

    ``lang``: ``"zh"``, ``"en"`` or ``"ja"`` (an English run inside Chinese text is an ``"en"`` part).
    ``norm_text`` / ``word2ph``: this run's normalised text and phones per unit (``sum(word2ph) ==
    end - start``). BERT word features (``modules.bert``) are computed per ``zh`` part, from its
    ``norm_text``, and are zero on every other part.
    """

    lang: str
    norm_text: str
    word2ph: tuple[int, ...]
    start: int
    end: int

    @property
    def n_phones(self) -> int:
        return self.end - self.start


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
    ``parts``: the single-language runs, in order, covering ``phones``, ``word2ph`` and
    ``norm_text`` exactly (their concatenations); left empty it becomes one part of ``lang``
    covering everything. ``G2PResult.concat`` joins results and keeps their parts.
    """

    phones: list[str]
    word2ph: list[int]
    norm_text: str
    lang: str
    parts: list[TextPart] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.phones) != sum(self.word2ph):
            raise AssertionError(
                f"g2p invariant broken for {self.norm_text!r}: {len(self.phones)} phones but "
                f"sum(word2ph) = {sum(self.word2ph)}"
            )
        if not self.parts:
            self.parts = [TextPart(self.lang, self.norm_text, tuple(self.word2ph), 0, len(self.phones))]
        self._check_parts()

    def _check_parts(self) -> None:
        pos = 0
        for part in self.parts:
            if part.start != pos or part.n_phones != sum(part.word2ph):
                raise AssertionError(f"g2p parts of {self.norm_text!r} do not tile the phones: part "
                                     f"{part.norm_text!r} spans [{part.start}, {part.end}) after position {pos} "
                                     f"with sum(word2ph) = {sum(part.word2ph)}")
            pos = part.end
        joined_w2p = [n for part in self.parts for n in part.word2ph]
        if pos != len(self.phones) or joined_w2p != list(self.word2ph) or \
                "".join(p.norm_text for p in self.parts) != self.norm_text:
            raise AssertionError(f"g2p parts of {self.norm_text!r} do not add up to the whole result")

    @classmethod
    def concat(cls, results: Sequence[G2PResult], lang: str) -> G2PResult:
        """One result of the runs ``results`` in order, their parts shifted to the joined phones."""
        parts: list[TextPart] = []
        offset = 0
        for r in results:
            parts += [TextPart(p.lang, p.norm_text, p.word2ph, p.start + offset, p.end + offset) for p in r.parts]
            offset += len(r.phones)
        return cls(
            phones=[p for r in results for p in r.phones],
            word2ph=[n for part in parts for n in part.word2ph],
            norm_text="".join(part.norm_text for part in parts),
            lang=lang,
            parts=parts,
        )
