"""Errors of the inference path that a user can act on (scripts print them without a traceback)."""

from __future__ import annotations


class InferenceError(RuntimeError):
    """Bad input: text, reference audio, checkpoints or files; the message names the problem."""

    exit_code = 2


class GenerationError(InferenceError):
    """The models produced nothing usable for some piece of text (e.g. S1 stopped at once)."""

    exit_code = 1
