"""Next-token sampling for S1 (spec §6.3).

Order of operations on the next-token logits ``[B, V]``:

1. repetition penalty over the *unique* previous tokens (prompt included): a logit ``l``
   of a token already seen becomes ``l * r`` if ``l < 0`` else ``l / r`` — once per token
   id, however often it occurred;
2. top-p (if < 1): sort descending, drop tokens whose cumulative probability exceeds
   ``top_p``, always keep the most likely one;
3. temperature: divide by ``max(temperature, 1e-5)``;
4. top-k (if > 0): keep logits >= the k-th largest;
5. softmax, then sample with the exponential race ``argmax(p / E)``, ``E ~ Exp(1)``
   (equivalent to multinomial sampling, no host sync), from a seeded ``torch.Generator``.

``greedy=True`` returns ``argmax`` of the penalised logits (steps 2-5 skipped).

Presets (``PRESETS``):

- ``greedy`` (ours): deterministic, penalty 1.35 — for tests and reproducible drafts.
- ``stable`` (ours): top_k 5, temperature 0.8, penalty 1.35 — conservative, fewest skipped
  or repeated words, flatter prosody (AR-VITS sampled with top_k 5 at temperature 1 and no
  penalty; the lower temperature is ours).
- ``gshead``: top_k 15, top_p 1.0, temperature 1.0, penalty 1.35 — GPT-SoVITS at HEAD
  (checkout 48b1a01): the defaults of its WebUI sliders, ``api_v2.py`` and
  ``TTS_infer_pack``. Also the ``inference`` section of configs/s1.json, used without
  ``--preset``. (Formerly called ``default``, which it is neither in GPT-SoVITS v1, whose
  WebUI used top_k 10 — see ``gsv1`` — nor necessarily here, where the checkpoint decides.)
- ``expressive`` (ours): top_k 50, top_p 0.95, temperature 1.05, penalty 1.35 — livelier
  prosody, higher risk of artefacts; generate several seeds and pick.
- ``gsv1``: top_k 10, top_p 1.0, temperature 1.0, penalty 1.35 — the GPT-SoVITS v1 WebUI
  defaults (its top_k/top_p/temperature sliders; the penalty is fixed in v1's ``infer_panel``;
  ``get_tts_wav``'s own keyword defaults 20/0.6/0.6 are overridden by the sliders). Used by
  the ``gsv1`` inference rules (``infer/rules.py``) unless another preset is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; ``top_k=0`` and ``top_p=1.0`` switch those filters off."""

    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0.0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.repetition_penalty <= 0.0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")


PRESETS: dict[str, SamplingParams] = {
    "greedy": SamplingParams(top_k=1, greedy=True),
    "stable": SamplingParams(top_k=5, top_p=1.0, temperature=0.8),
    "gshead": SamplingParams(top_k=15, top_p=1.0, temperature=1.0, repetition_penalty=1.35),
    "expressive": SamplingParams(top_k=50, top_p=0.95, temperature=1.05),
    "gsv1": SamplingParams(top_k=10, top_p=1.0, temperature=1.0, repetition_penalty=1.35),
}

Generators = torch.Generator | list[torch.Generator] | None


def token_presence(prev_tokens: Tensor, prev_mask: Tensor | None, vocab_size: int) -> Tensor:
    """Which token ids occur among the previous tokens: bool ``[B, V]``.

    prev_tokens ``[B, T]`` (LongTensor); prev_mask ``[B, T]`` bool, True on real tokens
    (None = all real). Padded entries may hold any id in ``[0, V)``.
    """
    b = prev_tokens.shape[0]
    counts = torch.zeros(b, vocab_size, device=prev_tokens.device)
    if prev_tokens.numel() == 0:
        return counts.bool()
    weight = torch.ones_like(prev_tokens, dtype=counts.dtype) if prev_mask is None else prev_mask.to(counts.dtype)
    counts.scatter_add_(1, prev_tokens, weight)
    return counts > 0


def apply_repetition_penalty_(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """In place on logits ``[B, V]``: seen ids get ``l*r`` (``l<0``) or ``l/r``; once per id."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return logits.copy_(torch.where(seen, penalised, logits))


def filter_logits(logits: Tensor, params: SamplingParams) -> Tensor:
    """Steps 2-4 (top-p, temperature, top-k) on ``[B, V]``; removed entries become ``-inf``."""
    if params.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum > params.top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    logits = logits / max(params.temperature, 1e-5)
    if 0 < params.top_k < logits.shape[-1]:
        kth = logits.topk(params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def _exponential_noise(like: Tensor, generator: Generators) -> Tensor:
    noise = torch.empty_like(like)
    if isinstance(generator, list):
        if len(generator) != like.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {like.shape[0]} rows")
        for row, gen in zip(noise, generator):
            row.exponential_(generator=gen)
    else:
        noise.exponential_(generator=generator)
    return noise


def pick_tokens(logits: Tensor, params: SamplingParams, generator: Generators = None) -> Tensor:
    """Steps 2-5 on already penalised logits ``[B, V]`` -> tokens ``[B]`` (LongTensor).

    ``generator``: one ``torch.Generator`` for the batch, or one per row (then row ``i``'s draw
    depends only on its own generator, so a row samples the same alone or in a batch).
    """
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float(), params).softmax(dim=-1)
    return (probs / _exponential_noise(probs, generator)).argmax(dim=-1)


def sample_next(
    logits: Tensor,
    prev_tokens: Tensor,
    params: SamplingParams,
    generator: Generators = None,
    prev_mask: Tensor | None = None,
) -> Tensor:
    """Sample next tokens: logits ``[B, V]``, prev_tokens ``[B, T]`` (+ prev_mask ``[B, T]``) -> ``[B]``.

    ``logits`` is modified in place by the repetition penalty (as in GPT-SoVITS, so a later
    EOS/argmax check sees the penalised values).
    """
    seen = token_presence(prev_tokens, prev_mask, logits.shape[-1])
    apply_repetition_penalty_(logits, seen, params.repetition_penalty)
    return pick_tokens(logits, params, generator)
