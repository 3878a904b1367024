"""The S1 loop detector (s1/loops.py): long steady stretches are never cut; repeated words are.

Every stream is fed token by token, as generation does, and the detector must stay silent at
every step (steady stretches) or fire at the expected step and trim to one period (loops).
"""

from __future__ import annotations

import random

import pytest

from s1.loops import LoopDetector

DET = LoopDetector()


def first_cut(tokens: list[int], det: LoopDetector = DET) -> tuple[int, int] | None:
    """(length when the detector fired, tokens kept) for a stream fed one token at a time, or None."""
    for n in range(1, len(tokens) + 1):
        keep = det.check(tokens[:n])
        if keep is not None:
            return n, keep
    return None


def speech(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1024) for _ in range(n)]


def steady(n: int, codes: list[int], seed: int) -> list[int]:
    """A pause or held vowel: the same few codes, in random order and runs."""
    rng = random.Random(seed)
    return [rng.choice(codes) for _ in range(n)]


@pytest.mark.parametrize("stretch", [
    [3] * 400,  # 16 s of one silence token
    [3, 9] * 200,  # exact 2-cycle
    [3, 9, 11] * 130,  # exact 3-cycle over three codes
    [3, 3, 9, 9] * 100,  # period 4, two codes
    [3, 9, 11, 12] * 100,  # period 4: shorter than a syllable
    [3, 3, 3, 9, 9, 11] * 70,  # period 6 but only 3 distinct codes
    steady(400, [3, 9], 0),  # silence wandering between two codes
    steady(400, [40, 41, 42], 1),  # a held vowel over three codes
])
def test_steady_stretches_are_never_cut(stretch: list[int]) -> None:
    assert first_cut(speech(30, 2) + stretch + speech(30, 3)) is None


def test_speech_is_never_cut() -> None:
    assert first_cut(speech(600, 4)) is None


def test_repeated_syllable_is_cut_to_one_period() -> None:
    syllable = [100, 101, 102, 103, 104, 105]
    head = speech(30, 5)
    fired = first_cut(head + syllable * 20)
    assert fired is not None
    n, keep = fired
    assert n == 30 + 75  # after 3 s of repetition (75 tokens >= 3 repeats of 6)
    assert keep == 30 + 6  # one syllable kept


def test_repeated_phrase_needs_three_repeats() -> None:
    phrase = speech(40, 6)
    head = speech(10, 7)
    assert first_cut(head + phrase * 2 + speech(10, 8)) is None  # said twice: not a loop
    fired = first_cut(head + phrase * 4)
    assert fired == (10 + 120, 10 + 40)


def test_loop_with_pauses_inside_is_cut() -> None:
    word = [3, 3, 3, 200, 201, 202, 203]  # a word and a short pause, again and again
    assert first_cut(speech(20, 9) + word * 15) == (20 + 75, 20 + 7)  # fires after 75 periodic tokens


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="min_distinct"):
        LoopDetector(min_distinct=1)
    with pytest.raises(ValueError, match="periods"):
        LoopDetector(min_period=10, max_period=5)
