"""The tokens file: what s1_infer.py hands to s2_infer.py (``.npz``, no pickle).

Arrays:

- ``tokens`` int64 [sum T_i]: the NEW semantic tokens of every piece, concatenated
  (no prompt tokens, no EOS); ``token_lengths`` int64 [n_pieces].
- ``phones`` int64 [sum L_i]: the TARGET phoneme ids of every piece (no prompt phonemes),
  concatenated; ``phone_lengths`` int64 [n_pieces].
- ``meta``: a JSON string (0-d unicode array) with at least ``format`` (``"ar-vits-tokens"``),
  ``version``, ``token_rate``, ``codebook_size``, ``seed`` and ``pieces`` (the piece texts);
  s1_infer.py adds the checkpoints and steps, sampling parameters, reference and options.

``load_tokens_file`` checks everything and raises ``TokensFileError`` naming the file.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.fileio import atomic_open
from infer.errors import InferenceError

FORMAT = "ar-vits-tokens"
VERSION = 1
ARRAYS = ("tokens", "token_lengths", "phones", "phone_lengths", "meta")
REQUIRED_META = ("format", "version", "token_rate", "codebook_size", "seed", "pieces")


class TokensFileError(InferenceError):
    """A tokens file is missing, unreadable or inconsistent; the message names the file."""


@dataclass
class TokensFile:
    """tokens[i]: int64 [T_i] new tokens of piece i; phones[i]: int64 [L_i] its target phoneme ids."""

    tokens: list[np.ndarray]
    phones: list[np.ndarray]
    meta: dict = field(default_factory=dict)

    @property
    def n_pieces(self) -> int:
        return len(self.tokens)


def _concat(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
    return flat, lengths


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return [a.copy() for a in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []


def check_tokens_file(tf: TokensFile, source: str | Path) -> None:
    """Consistency checks shared by saving and loading; raises ``TokensFileError``."""
    meta = tf.meta
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise TokensFileError(f"{source}: metadata lacks {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise TokensFileError(f"{source}: not a tokens file (format {meta['format']!r}, expected {FORMAT!r})")
    if meta["version"] != VERSION:
        raise TokensFileError(f"{source}: tokens file version {meta['version']} is not supported (need {VERSION})")
    n = tf.n_pieces
    if n == 0:
        raise TokensFileError(f"{source}: holds no pieces")
    if len(tf.phones) != n or len(meta["pieces"]) != n:
        raise TokensFileError(f"{source}: {n} token sequences but {len(tf.phones)} phoneme sequences and "
                              f"{len(meta['pieces'])} piece texts")
    codebook = int(meta["codebook_size"])
    for i, (tok, ph) in enumerate(zip(tf.tokens, tf.phones)):
        if len(tok) == 0 or len(ph) == 0:
            raise TokensFileError(f"{source}: piece {i + 1} ({meta['pieces'][i]!r}) has "
                                  f"{len(tok)} tokens and {len(ph)} phonemes; both must be non-empty")
        if tok.min() < 0 or tok.max() >= codebook:
            raise TokensFileError(f"{source}: piece {i + 1} has token ids outside [0, {codebook})")
        if ph.min() < 0:
            raise TokensFileError(f"{source}: piece {i + 1} has negative phoneme ids")


def save_tokens_file(path: str | Path, tf: TokensFile) -> Path:
    """Write ``tf`` to ``path`` (``.npz``) atomically after checking it; returns the path."""
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, **tf.meta}
    tf = TokensFile(tokens=[np.asarray(t, dtype=np.int64) for t in tf.tokens],
                    phones=[np.asarray(p, dtype=np.int64) for p in tf.phones], meta=meta)
    check_tokens_file(tf, path)
    tokens, token_lengths = _concat(tf.tokens)
    phones, phone_lengths = _concat(tf.phones)
    with atomic_open(path, "wb") as f:
        np.savez(f, tokens=tokens, token_lengths=token_lengths, phones=phones, phone_lengths=phone_lengths,
                 meta=np.array(json.dumps(meta, ensure_ascii=False)))
    return path


def load_tokens_file(path: str | Path) -> TokensFile:
    """Read and validate a tokens file written by ``save_tokens_file``."""
    path = Path(path)
    if not path.is_file():
        raise TokensFileError(f"{path}: tokens file not found")
    if not zipfile.is_zipfile(path):
        raise TokensFileError(f"{path}: not a tokens file (an .npz written by s1_infer.py)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise TokensFileError(f"{path}: not a tokens file (missing array(s) {', '.join(missing)})")
            arrays = {k: z[k] for k in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise TokensFileError(f"{path}: cannot read tokens file ({type(e).__name__}: {e})") from None
    for k in ("tokens", "token_lengths", "phones", "phone_lengths"):
        a = arrays[k]
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise TokensFileError(f"{path}: array {k!r} must be 1-D integers, got {a.dtype} {a.shape}")
    try:
        meta = json.loads(str(arrays["meta"][()]))
    except (json.JSONDecodeError, TypeError) as e:
        raise TokensFileError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise TokensFileError(f"{path}: metadata must be a JSON object")
    for flat, lengths in (("tokens", "token_lengths"), ("phones", "phone_lengths")):
        if (arrays[lengths] < 0).any() or int(arrays[lengths].sum()) != len(arrays[flat]):
            raise TokensFileError(f"{path}: {lengths} (sum {int(arrays[lengths].sum())}) does not match the "
                                  f"{len(arrays[flat])} entries of {flat!r}")
    if len(arrays["token_lengths"]) != len(arrays["phone_lengths"]):
        raise TokensFileError(f"{path}: {len(arrays['token_lengths'])} token sequences but "
                              f"{len(arrays['phone_lengths'])} phoneme sequences")
    tf = TokensFile(tokens=_split(arrays["tokens"].astype(np.int64), arrays["token_lengths"]),
                    phones=_split(arrays["phones"].astype(np.int64), arrays["phone_lengths"]), meta=meta)
    check_tokens_file(tf, path)
    return tf
