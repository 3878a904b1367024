"""Errors raised by the text frontend."""

from __future__ import annotations


class TextFrontendError(ValueError):
    """The text cannot be turned into phones (unknown characters, no phones, bad language...).

    Per-utterance problem: a preprocessing stage should reject the item and report the message.
    """


class MissingDependencyError(ImportError):
    """An optional package needed for a language is not installed (a setup problem, not a data one)."""


def describe_chars(chars: str | list[str]) -> str:
    """Readable list of characters with their code points, e.g. ``'😀' (U+1F600)``."""
    seen: list[str] = []
    for ch in chars:
        if ch not in seen:
            seen.append(ch)
    return ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in seen)
