"""Streaming S2: audio of a piece while S1 is still producing its tokens.

``PieceStreamer`` receives a piece's token list as it grows (``push`` after every S1 step)
and returns the samples that are ready. A window is decoded when ``first_chunk_tokens``
(then ``chunk_tokens``) new tokens plus ``lookahead_tokens`` are known:

- the prior latent (content + phoneme encoders, sampled prior, reverse flow) is computed
  over ALL tokens known so far, from the start of the piece (it is cheap next to the
  HiFi-GAN generator), with the piece's whole phoneme sequence and its noise at the same
  frames as in a one-shot decode (``s2.noise.PriorNoise``);
- the generator renders only ``[emitted - context_tokens, known)``: its receptive field is a
  few tokens wide (measured on the full-size model: 3 tokens of context give 52 dB, 4 give
  79 dB), so the left context makes the new samples those of a whole decode;
- the last ``lookahead_tokens`` are not emitted: near the end of what is known the prior
  still changes when later tokens arrive (the flow and the encoders' convolutions see
  about ±20 frames, and the self-attention sees what comes after); the next window
  re-renders them with more tokens known. On the demo's trained tiny S2 (500 steps, six
  utterances) the joined stream is on average 29.3 dB from the one-shot wav with 6 tokens of
  lookahead, 31.3 dB with 12 (the default, 0.48 s) and 35.6 dB with 20; other tokens give 3.6 dB;
- the first ``crossfade_samples`` of each window are cross-faded (raised cosine) with the
  previous window's rendering of the same samples, so no step is audible where they differ.

What remains different from a one-shot decode is the encoders' self-attention, which sees
the whole piece in a one-shot decode but only the tokens known so far here (a non-causal
model cannot be streamed exactly). The decode schedule depends only on token counts, so a
stream is deterministic. ``bench/stream.py`` measures the SNR against one-shot decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from infer.errors import InferenceError
from infer.loading import LoadedS2
from s2.noise import PriorNoise


@dataclass(frozen=True)
class StreamOptions:
    """Window sizes in semantic tokens (40 ms each at 25 Hz) and the cross-fade in samples."""

    first_chunk_tokens: int = 10
    chunk_tokens: int = 25
    lookahead_tokens: int = 12
    context_tokens: int = 4
    crossfade_samples: int = 640

    def __post_init__(self) -> None:
        if self.first_chunk_tokens < 1 or self.chunk_tokens < 1:
            raise InferenceError(f"stream chunks must be >= 1 token, got first {self.first_chunk_tokens}, "
                                 f"then {self.chunk_tokens}")
        if self.lookahead_tokens < 0 or self.context_tokens < 0 or self.crossfade_samples < 0:
            raise InferenceError("stream lookahead, context and cross-fade must be >= 0")

    def check(self, samples_per_token: int) -> None:
        """The cross-fade needs that many samples rendered both before and after a chunk boundary."""
        room = min(self.lookahead_tokens, self.context_tokens) * samples_per_token
        if self.crossfade_samples > room:
            raise InferenceError(f"a cross-fade of {self.crossfade_samples} samples needs lookahead and context of "
                                 f"at least {self.crossfade_samples} samples ({samples_per_token} per token)")


def _fade_in(n: int) -> np.ndarray:
    """Raised-cosine ramp from 0 to 1 over ``n`` samples (both ends excluded)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


class PieceStreamer:
    """Incremental S2 decoding of one piece (see the module docstring).

    phones: [L] the piece's phoneme ids; ge: [1, gin, 1] style vector (``SynthesizerTrn.style``)
    or None; seed: the piece's noise seed (``decode_pieces`` uses ``seed + piece index``);
    dec_dtype: the generator's autocast dtype (``infer.decoder.generator_dtype`` of ``--s2-precision``) or None.
    """

    def __init__(self, s2: LoadedS2, phones: Tensor, ge: Tensor | None, seed: int, noise_scale: float,
                 opts: StreamOptions, dec_dtype: torch.dtype | None = None):
        opts.check(s2.samples_per_token)
        self.s2, self.ge, self.noise_scale, self.opts, self.dec_dtype = s2, ge, noise_scale, opts, dec_dtype
        self.text = torch.as_tensor(phones, dtype=torch.long).to(s2.device)[None]  # [1, L]
        self.text_lengths = torch.tensor([self.text.size(1)], device=s2.device)
        self.noise = PriorNoise(seed, s2.generator.enc_p.out_channels)
        self.emitted = 0  # tokens whose samples have been returned
        self.tail = np.zeros(0, dtype=np.float32)  # previous window's samples just after the emitted ones
        self.windows = 0

    def ready(self, n_tokens: int) -> bool:
        """Whether ``n_tokens`` known tokens complete the next chunk (plus its lookahead)."""
        chunk = self.opts.first_chunk_tokens if self.emitted == 0 else self.opts.chunk_tokens
        return n_tokens >= self.emitted + chunk + self.opts.lookahead_tokens

    def push(self, tokens: list[int] | Tensor, final: bool = False) -> np.ndarray:
        """All tokens known so far (``final``: the piece is complete) -> new samples (float32, maybe empty)."""
        n = len(tokens)
        if not final and not self.ready(n):
            return np.zeros(0, dtype=np.float32)
        end = n if final else n - self.opts.lookahead_tokens
        if end <= self.emitted:  # e.g. the loop detector cut tokens that were already played
            return np.zeros(0, dtype=np.float32)
        return self._render(torch.as_tensor(tokens, dtype=torch.long), end, final)

    @torch.inference_mode()
    def _render(self, tokens: Tensor, end: int, final: bool) -> np.ndarray:
        gen, spt, fpt = self.s2.generator, self.s2.samples_per_token, self.s2.generator.frames_per_token
        n = tokens.numel()
        codes = tokens.to(self.s2.device, torch.long)[None]  # [1, n]
        noise = self.noise.frames(0, n * fpt)[None].to(self.s2.device)  # [1, C, n · fpt]
        z, _ = gen.prior_latent(codes, self.text, self.text_lengths, self.ge, self.noise_scale, noise=noise)
        start = max(0, self.emitted - self.opts.context_tokens)
        wav = gen.render(z[:, :, start * fpt:], self.ge, dec_dtype=self.dec_dtype)  # [1, 1, (n - start) · spt]
        wav = wav[0, 0].cpu().numpy()  # samples [start·spt, n·spt)
        lo, hi = (self.emitted - start) * spt, (end - start) * spt
        out = wav[lo:hi].copy()
        if not np.isfinite(out).all():
            raise InferenceError("S2 produced non-finite audio while streaming")
        x = min(len(self.tail), len(out))
        if x:
            ramp = _fade_in(x)
            out[:x] = self.tail[:x] * (1.0 - ramp) + out[:x] * ramp
        self.tail = np.zeros(0, dtype=np.float32) if final else wav[hi:hi + self.opts.crossfade_samples].copy()
        self.emitted = end
        self.windows += 1
        return out
