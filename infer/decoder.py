"""S2 side of inference: decode pieces of tokens to audio (batched), join them, resynthesize a wav.

``decode_pieces`` pads consecutive pieces into batches (at most ``batch_size`` pieces and
``max_batch_tokens`` padded tokens, which bounds memory) and calls ``SynthesizerTrn.decode``
with ``code_lengths``; each piece's waveform is cut at ``T_i * samples_per_token``. Piece
``i`` draws its prior noise from its own generator seeded ``seed + i`` (``s2.noise``) and the
generator zeroes the padding before every convolution, so a piece gives the same samples
(up to float rounding) alone, in any batch, with any ``batch_size`` (tts.py and s1_infer.py
+ s2_infer.py rely on this). ``join_pieces`` puts
``pause_seconds`` of silence between pieces and divides by the peak only if it exceeds 1.
Resynthesis (s2_infer.py --resynth) gets its tokens from ``infer.reference.audio_tokens``.

``DecodeOptions.precision``: ``fp32`` (default), ``bf16`` (the HiFi-GAN generator, ~95 % of the
decode's work, under bf16 autocast; encoders, flow and the output in fp32) or ``auto`` (bf16 on a
CPU that multiplies bf16 natively, ``common.cpu.cpu_bf16_native``, and on CUDA with bf16;
fp32 elsewhere). bf16 is about 1.5-2x faster on such CPUs; its waveform differs from fp32's
by rounding (``bench/s2.py`` and ``bench/gsv1_compare.py`` report the SNR against fp32), and
a piece is then equal alone and in a batch only up to that rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from common.audio import resample
from common.cpu import cpu_bf16_native
from infer.errors import GenerationError, InferenceError
from infer.loading import LoadedS2, speaker_row
from infer.tokens_file import TokensFile
from s2.noise import batch_noise

DEFAULT_NOISE_SCALE = 0.5
DEFAULT_PAUSE_SECONDS = 0.3
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_BATCH_TOKENS = 2000  # padded tokens per S2 batch: 80 s of audio at 25 Hz
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass(frozen=True)
class DecodeOptions:
    seed: int = 0
    noise_scale: float = DEFAULT_NOISE_SCALE
    batch_size: int = DEFAULT_BATCH_SIZE
    pause_seconds: float = DEFAULT_PAUSE_SECONDS
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    speaker: str | None = None  # speaker name, for an S2 model with a speaker table
    precision: str = "fp32"  # S2 decode: fp32, bf16 or auto (see the module docstring)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InferenceError(f"--s2-precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_size < 1:
            raise InferenceError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_batch_tokens < 1:
            raise InferenceError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if self.noise_scale < 0:
            raise InferenceError(f"--noise-scale must be >= 0, got {self.noise_scale}")
        if self.pause_seconds < 0:
            raise InferenceError(f"--pause must be >= 0 seconds, got {self.pause_seconds}")


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether S2 decodes in bf16 for this ``precision`` (see the module docstring) on ``device``."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type == "cpu" and cpu_bf16_native()
    return precision == "bf16"


def generator_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The ``dec_dtype`` of ``SynthesizerTrn.decode`` for this ``precision``: bf16 or None (fp32)."""
    return torch.bfloat16 if uses_bf16(precision, device) else None


def _pad(seqs: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D LongTensors with 0: -> ([B, max_len], lengths [B])."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out.to(device), lengths.to(device)


def batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` items whose padded size ``n * max(len)`` stays within
    ``max_batch_tokens`` (an item longer than that gets a batch of its own)."""
    out: list[slice] = []
    start, longest = 0, 0
    for i, n in enumerate(lengths):
        if i > start and (i - start >= batch_size or (i - start + 1) * max(longest, n) > max_batch_tokens):
            out.append(slice(start, i))
            start, longest = i, 0
        longest = max(longest, n)
    if lengths:
        out.append(slice(start, len(lengths)))
    return out


def _check_piece(s2: LoadedS2, i: int, tokens: Tensor, phones: Tensor) -> None:
    if tokens.dim() != 1 or tokens.numel() == 0:
        raise GenerationError(f"piece {i + 1}: no semantic tokens to decode")
    if phones.dim() != 1 or phones.numel() == 0:
        raise InferenceError(f"piece {i + 1}: no phonemes to decode with")
    if int(tokens.min()) < 0 or int(tokens.max()) >= s2.codebook_size:
        raise InferenceError(f"piece {i + 1}: token ids outside the S2 codebook [0, {s2.codebook_size}) of {s2.path}")
    n_symbols = s2.generator.enc_p.text_embedding.num_embeddings
    if int(phones.min()) < 0 or int(phones.max()) >= n_symbols:
        raise InferenceError(f"piece {i + 1}: phoneme ids outside the symbol table [0, {n_symbols})")


@torch.inference_mode()
def decode_pieces(s2: LoadedS2, tokens: Sequence[Tensor], phones: Sequence[Tensor], ref_spec: Tensor | None,
                  opts: DecodeOptions) -> list[np.ndarray]:
    """Waveforms (float32 [T_i * samples_per_token] at the S2 rate) of the pieces.

    tokens[i]: [T_i] semantic tokens; phones[i]: [L_i] target phoneme ids; ref_spec:
    [1, F, T_ref] reference spectrogram (None: no style). Piece ``i``'s noise seed is ``opts.seed + i``.
    """
    if len(tokens) != len(phones):
        raise InferenceError(f"{len(tokens)} token sequences but {len(phones)} phoneme sequences")
    tokens = [torch.as_tensor(t, dtype=torch.long).cpu() for t in tokens]
    phones = [torch.as_tensor(p, dtype=torch.long).cpu() for p in phones]
    for i, (t, p) in enumerate(zip(tokens, phones)):
        _check_piece(s2, i, t, p)
    device = s2.device
    row = speaker_row(s2, opts.speaker)
    out: list[np.ndarray] = []
    for chunk in batches([len(t) for t in tokens], opts.batch_size, opts.max_batch_tokens):
        start = chunk.start
        codes, code_lengths = _pad(tokens[chunk], device)  # [B, N], [B]
        text, text_lengths = _pad(phones[chunk], device)  # [B, L], [B]
        spec = None if ref_spec is None else ref_spec.to(device)  # [1, F, T_ref], shared by the rows
        fpt = s2.generator.frames_per_token
        noise = batch_noise([opts.seed + start + b for b in range(codes.size(0))],
                            (code_lengths * fpt).tolist(), s2.generator.enc_p.out_channels, codes.size(1) * fpt)
        speakers = None if row is None else torch.full((codes.size(0),), row, device=device)
        wav = s2.generator.decode(codes, text, text_lengths, spec, noise_scale=opts.noise_scale,
                                  code_lengths=code_lengths, noise=noise.to(device), speakers=speakers,
                                  dec_dtype=generator_dtype(opts.precision, device))  # [B, 1, N * spt]
        wav = wav[:, 0].float().cpu()
        for b, n in enumerate(code_lengths.tolist()):
            piece = wav[b, : n * s2.samples_per_token].numpy()
            if not np.isfinite(piece).all():
                raise GenerationError(f"piece {start + b + 1}: S2 produced non-finite audio")
            out.append(piece)
    return out


def join_pieces(wavs: Sequence[np.ndarray], sample_rate: int, pause_seconds: float = DEFAULT_PAUSE_SECONDS
                ) -> np.ndarray:
    """Concatenate with ``pause_seconds`` of silence between pieces; divide by the peak only if it is > 1."""
    if not wavs:
        raise InferenceError("nothing to join: no pieces")
    pause = np.zeros(int(round(pause_seconds * sample_rate)), dtype=np.float32)
    parts: list[np.ndarray] = []
    for i, w in enumerate(wavs):
        if i:
            parts.append(pause)
        parts.append(np.asarray(w, dtype=np.float32))
    wav = np.concatenate(parts)
    peak = float(np.abs(wav).max()) if len(wav) else 0.0
    return wav / peak if peak > 1.0 else wav


def to_sample_rate(wav: np.ndarray, sample_rate: int, out_rate: int | None) -> np.ndarray:
    """Resample (soxr, via ``common.audio``) unless ``out_rate`` is None or equal."""
    if out_rate is None or out_rate == sample_rate:
        return wav
    if out_rate <= 0:
        raise InferenceError(f"--sample-rate must be positive, got {out_rate}")
    return resample(np.ascontiguousarray(wav, dtype=np.float32), sample_rate, out_rate)



def decode_tokens_file(s2: LoadedS2, tf: TokensFile, ref_spec: Tensor | None, opts: DecodeOptions) -> np.ndarray:
    """All pieces of ``tf`` decoded (batched) and joined: float32 [N] at the S2 rate (as the speaker that
    ``tf.meta["speaker"]`` names, unless ``opts.speaker`` names one)."""
    if "codebook_size" in tf.meta and int(tf.meta["codebook_size"]) != s2.codebook_size:
        raise InferenceError(f"the tokens come from a {tf.meta['codebook_size']}-code codebook but {s2.path} has "
                             f"{s2.codebook_size} codes")
    tokens = [torch.from_numpy(t) for t in tf.tokens]
    phones = [torch.from_numpy(p) for p in tf.phones]
    if opts.speaker is None and tf.meta.get("speaker") is not None:
        opts = replace(opts, speaker=str(tf.meta["speaker"]))
    wavs = decode_pieces(s2, tokens, phones, ref_spec, opts)
    return join_pieces(wavs, s2.sample_rate, opts.pause_seconds)

