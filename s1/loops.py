"""Loop detection for S1 generation: stop a row that repeats itself, never one that holds a sound.

A looping model says the same word or syllable again and again: the same SEVERAL different
tokens in the same order, period after period. A model that produces a pause or a held
vowel emits one token over and over, or wanders among two or three codes; that is speech
and must not be cut, however long it lasts.

Rule: take the smallest period ``p <= max_period`` for which the last
``max(min_span, min_repeats · p)`` tokens are exactly periodic; it is a loop when
``p >= min_period`` and one period holds at least ``min_distinct`` different tokens (a
repeated 4-token cycle is also periodic with period 8, but its smallest period decides).
The repeated stretch is then cut back to a single period. Defaults (25 Hz tokens): periods of
5-50 tokens (0.2-2 s: a syllable to a short phrase), at least 4 different tokens in a
period, at least 3 repeats, over at least 75 tokens (3 s). So a repeated single token
(silence), any cycle of 2-4 tokens (a held vowel, breathing noise) and any pattern of
fewer than 4 distinct tokens never stop a row; a 6-token syllable must repeat 13 times
exactly, a 40-token phrase 3 times.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopDetector:
    """See the module docstring; ``check`` is called with a row's new tokens after every step."""

    min_period: int = 5
    max_period: int = 50
    min_distinct: int = 4
    min_repeats: int = 3
    min_span: int = 75

    def __post_init__(self) -> None:
        if not 1 <= self.min_period <= self.max_period:
            raise ValueError(f"loop periods must satisfy 1 <= min ({self.min_period}) <= max ({self.max_period})")
        if self.min_distinct < 2 or self.min_repeats < 2:
            raise ValueError(f"a loop needs min_distinct >= 2 and min_repeats >= 2, got {self.min_distinct} and "
                             f"{self.min_repeats}")

    def check(self, tokens: list[int]) -> int | None:
        """Return how many tokens to keep if ``tokens`` ends in a loop, else None.

        Cost per call: one comparison per period for most rows; the periodicity check (a C-speed
        list comparison) only where the last token matches the one ``p`` back.
        """
        n = len(tokens)
        if n < self.min_span:
            return None
        last = tokens[-1]
        for p in range(1, self.max_period + 1):  # the smallest period decides: [a b c d] x 20 is not an 8-loop
            need = max(self.min_span, self.min_repeats * p)
            if need > n:
                break
            if tokens[n - 1 - p] != last:
                continue
            tail = tokens[n - need:]
            if tail[p:] != tail[:-p]:
                continue
            if p < self.min_period or len(set(tokens[n - p:])) < self.min_distinct:
                return None  # a steady stretch: one code or a short cycle over a few
            start = n - need
            while start > 0 and tokens[start - 1] == tokens[start - 1 + p]:
                start -= 1
            return start + p
        return None
