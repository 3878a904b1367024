"""Token-pattern measures of long S1 outputs (bench/long_eval.py): repeats, stalls, length.

A model that loses its place in a long text says a stretch again (a repeat), holds one
code for a long time (a stall: a frozen sound or a long silence), or runs much shorter or
longer than the text needs (skipped text, run-on). These are read from the tokens alone:

- ``repeated_fraction``: the share of tokens that lie in a window of ``n`` tokens which
  already occurred, exactly, earlier in the same sequence. Real speech repeats a 12-token
  window (0.5 s at 25 Hz) only where words are repeated, so the same measure on training
  speech of the same length is the baseline to read it against.
- ``long_runs``: the number of runs of one code at least ``min_run`` tokens long.
- length against the training set's tokens per phoneme: an output shorter than
  ``short`` times the expected length most likely skipped text, one longer than ``long``
  times ran on. These thresholds flag outliers; they are not a recognizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REPEAT_WINDOW = 12  # tokens (0.48 s at 25 Hz)
LONG_RUN = 25  # tokens (1 s at 25 Hz)
SHORT_RATIO = 0.6
LONG_RATIO = 1.6


def repeated_fraction(tokens: Sequence[int], n: int = REPEAT_WINDOW) -> float:
    """Share of ``tokens`` covered by ``n``-token windows seen earlier in ``tokens`` (0 for short ones)."""
    if len(tokens) < 2 * n:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    covered = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        window = tuple(tokens[i:i + n])
        if window in seen:
            covered[i:i + n] = [True] * n
        else:
            seen.add(window)
    return sum(covered) / len(tokens)


def long_runs(tokens: Sequence[int], min_run: int = LONG_RUN) -> int:
    """Number of maximal runs of one code that are at least ``min_run`` tokens long."""
    count, run = 0, 0
    for i, t in enumerate(tokens):
        run = run + 1 if i and t == tokens[i - 1] else 1
        if run == min_run:
            count += 1
    return count


@dataclass
class OutputStats:
    """The measures of one output; ``ratio`` = new tokens per target phoneme."""

    stop: str
    n_tokens: int
    ratio: float
    repeated: float
    long_runs: int
    short: bool
    long: bool


def output_stats(tokens: Sequence[int], n_phones: int, stop: str, train_ratio: float) -> OutputStats:
    """Measures of one generated output of a text with ``n_phones`` target phonemes."""
    expected = train_ratio * n_phones
    return OutputStats(stop=stop, n_tokens=len(tokens), ratio=len(tokens) / n_phones,
                       repeated=repeated_fraction(tokens), long_runs=long_runs(tokens),
                       short=len(tokens) < SHORT_RATIO * expected, long=len(tokens) > LONG_RATIO * expected)


def summarize(stats: Sequence[OutputStats], train_ratio: float) -> dict:
    """Per-model figures: stop reasons (shares), tokens per phoneme (mean, and relative to training),
    repeated share, long runs per text, shares of short and long outputs."""
    n = len(stats)
    if n == 0:
        raise ValueError("summarize: no outputs")
    mean_ratio = sum(s.ratio for s in stats) / n
    return {
        "texts": n,
        "stop_eos": sum(s.stop == "eos" for s in stats) / n,
        "stop_length_cap": sum(s.stop == "length" for s in stats) / n,
        "stop_loop": sum(s.stop == "loop" for s in stats) / n,
        "tokens_per_phone": round(mean_ratio, 3),
        "tokens_per_phone_vs_training": round(mean_ratio / train_ratio, 3),
        "repeated_share": round(sum(s.repeated for s in stats) / n, 4),
        "long_runs_per_text": round(sum(s.long_runs for s in stats) / n, 3),
        "short_share": sum(s.short for s in stats) / n,
        "long_share": sum(s.long for s in stats) / n,
    }
