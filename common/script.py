"""What every pipeline script does at its boundary with the user: number arguments, Ctrl-C.

- ``finite_float``: the argparse type of every float option, so ``--temperature nan`` or
  ``--pause inf`` is a usage error (exit status 2) before anything is loaded.
- ``--seed -1`` means a random seed (``random_seed``), which the script prints so that the
  result can be made again with ``--seed N`` (as GPT-SoVITS users expect); seeds are 0..2**32-1.
- ``exit_on_interrupt``: Ctrl-C (SIGINT) inside becomes one line on stderr saying what was kept
  and how to continue, and exit status 130 (128 + SIGINT, what shells report), instead of a stack
  of tracebacks. Cleanup code (``finally`` blocks, removal of temp files) still runs; a second
  Ctrl-C while the line is printed is ignored. DataLoader workers swallow their own
  KeyboardInterrupt, so nothing else is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import secrets
import signal
import sys
from collections.abc import Callable, Iterator

INTERRUPTED = 130  # exit status after SIGINT
ITEMS_KEPT = "finished items are kept; run the same command again to do the rest"  # per-item stages
RANDOM_SEED = -1  # --seed value asking for a random seed
MAX_SEED = 2**32 - 1  # numpy's limit; torch takes more


def random_seed() -> int:
    """A fresh seed for ``--seed -1`` (the caller prints it)."""
    return secrets.randbelow(MAX_SEED + 1)


def finite_float(text: str) -> float:
    """``float(text)`` for argparse, refusing nan and inf (they would pass every ``x > 0`` check unnoticed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


@contextlib.contextmanager
def exit_on_interrupt(prog: str, kept: Callable[[], str]) -> Iterator[None]:
    """On Ctrl-C inside: print ``<prog>: interrupted; <kept()>`` and exit with status 130."""
    try:
        yield
    except KeyboardInterrupt:
        with contextlib.suppress(ValueError):  # not the main thread: nothing to ignore
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"{prog}: interrupted; {kept()}", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None
