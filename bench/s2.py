"""S2 speed: one training step (D + G) and the decode real-time factor, against the machine's matmul peak.

    python -m bench.s2                          # CPU, all cores
    python -m bench.s2 --threads 1 --skip-train
    python -m bench.s2 --device cuda

Full-size model (configs/s2.json), random weights. Prints one JSON object:

- ``train``: seconds per training step of ``s2.trainer.S2Trainer.train_step`` (generator
  forward, discriminator forward/backward/AdamW step, discriminator judging again, generator
  backward/AdamW step), on a fixed synthetic batch of ``--train-batch`` items of
  ``--train-seconds`` seconds each (spectrogram of a synthetic waveform, random HuBERT
  features and phoneme ids); median of ``--train-steps`` steps after one warm-up step
  (which also runs the codebook's k-means initialisation).
- ``decode``: ``SynthesizerTrn.decode`` for ``--decode-seconds`` of audio (codes at the token
  rate), ``--n-phones`` phonemes and a ``--ref-seconds`` reference spectrogram, in eval mode,
  weight norm folded, under ``torch.inference_mode``; best of ``--repeats`` after a warm-up.
  ``rtf`` = wall time / audio seconds; ``generator_s`` is the HiFi-GAN generator alone on a
  latent of the same length (timed interleaved with the decode runs), ``rest_s`` the decode
  with the generator replaced by a zero output (content/text encoders, MRTE, flow, reference).
  The generator's FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``
  (convolutions and transposed convolutions, 2 FLOPs per multiply-add): ``generator_gflop``,
  per audio second, and the achieved ``generator_gflop_s``.
- ``decode_bf16``: the same with the generator under bf16 autocast (oneDNN's bf16 kernels on CPUs
  with AVX-512 BF16; the rest stays fp32), with its difference from the fp32 waveform: max/rms
  difference, ``snr_db_vs_fp32`` against the stated tolerance (``BF16_SNR_TOLERANCE_DB``, 20 dB) and ``speedup_vs_fp32``
  (skip with ``--no-bf16``). ``infer.decoder`` decodes like this with ``--s2-precision bf16``
  (or ``auto`` on CPUs with native bf16).
- ``peaks``: a 2048³ fp32 matmul, a large fp32 ``Conv1d`` (512 channels, kernel 7, 4000
  frames: the convolution library's best case) and a 2048³ bf16 matmul, each the best of
  probes taken before and after the measurements (the machine is shared and noisy: compare
  ratios from one run, not absolute numbers across runs). On AMD CPUs the fp32 matmul (MKL)
  does not use its fastest kernels and understates the machine; the conv peak does not.
  ``generator_fraction_of_*_peak`` relate the generator's fp32 GFLOP/s to them.
- ``target_rtf``: the goal for the fp32 decode of 10 s on a 2-core CPU, and whether it was met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.machine import machine_facts

ROOT = Path(__file__).resolve().parents[1]
TARGET_RTF = 0.15
BF16_SNR_TOLERANCE_DB = 20.0  # bf16 decode vs fp32: error power at most 1 % of the signal's


def snr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    """10·log10(Σ ref² / Σ (test - ref)²) in dB (inf when identical)."""
    err = float((test.float() - ref.float()).pow(2).sum())
    return math.inf if err == 0 else 10 * math.log10(float(ref.float().pow(2).sum()) / err)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                       repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n``³ matmul in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def conv_peak_gflops(device: torch.device, channels: int = 512, kernel: int = 7, frames: int = 4000,
                     repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of a large fp32 ``Conv1d`` (the convolution library's best case)."""
    conv = torch.nn.Conv1d(channels, channels, kernel, padding=kernel // 2).to(device)
    x = torch.randn(1, channels, frames, device=device)
    with torch.inference_mode():
        conv(x)
        best = min(timed(lambda: conv(x), device) for _ in range(repeats))
    return 2 * channels * channels * kernel * frames / best / 1e9


def synthetic_wav(seconds: float, sample_rate: int, seed: int) -> torch.Tensor:
    """A deterministic speech-like test signal [N]: a gliding harmonic tone with noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    f0 = 120 + 40 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    wav = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.2
    return (wav + 0.01 * torch.randn(n, generator=g)).clamp(-1, 1)


def bench_train(cfg_path: Path, device: torch.device, batch_size: int, seconds: float, steps: int) -> dict:
    from bench.s2_train import our_batch, our_trainer, synthetic_inputs

    with our_trainer(cfg_path, device) as trainer:
        d = trainer.cfg.data
        inputs = synthetic_inputs(batch_size, seconds, 12.0, d.sampling_rate, d.hop_length,
                                  trainer.mel_of_wav.spectrogram.cpu(), d.ssl_dim, seed=0)
        batch = our_batch(trainer, inputs, device)
        trainer.train_step(batch)  # warm-up (and the codebook's k-means init)
        times = [timed(lambda: trainer.train_step(batch), device) for _ in range(steps)]
    step_s = statistics.median(times)
    return {"batch": batch_size, "seconds_per_item": seconds, "frames": int(batch.spec.size(2)),
            "segment_frames": trainer.cfg.train.segment_frames, "step_s": step_s, "steps_per_s": 1 / step_s,
            "step_times_s": times, "g_params": sum(p.numel() for p in trainer.net_g.parameters()),
            "d_params": sum(p.numel() for p in trainer.net_d.parameters())}


class Silent(torch.nn.Module):
    """Stands in for the generator to time the rest of decode: latent [B, C, T] -> zeros [B, 1, T · hop]."""

    def __init__(self, hop: int):
        super().__init__()
        self.hop = hop

    def forward(self, z: torch.Tensor, g: torch.Tensor | None = None, x_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        return z.new_zeros(z.size(0), 1, z.size(2) * self.hop)


def bench_decode(cfg_path: Path, device: torch.device, seconds: float, ref_seconds: float, n_phones: int,
                 repeats: int, dtype: torch.dtype | None = None) -> tuple[dict, torch.Tensor]:
    """Decode timings (see the module docstring) and the decoded wav; ``dtype``: the generator runs under
    that autocast (``SynthesizerTrn.decode(dec_dtype=...)``, as ``--s2-precision bf16`` decodes)."""
    from torch.utils.flop_counter import FlopCounterMode

    from common.config import S2Config, load_config
    from modules.spectrogram import Spectrogram
    from s2.model import build_generator

    cfg = load_config(cfg_path, S2Config)
    d = cfg.data
    torch.manual_seed(0)
    net = build_generator(cfg).to(device).eval()
    folded = net.fold_weight_norm()
    n_tokens = round(seconds * cfg.token_rate)
    codes = torch.randint(0, cfg.model.codebook_size, (1, n_tokens), device=device)
    text = torch.randint(1, 322, (1, n_phones), device=device)
    text_lengths = torch.tensor([n_phones], device=device)
    ref = synthetic_wav(ref_seconds, d.sampling_rate, seed=7)
    refer = Spectrogram(d.filter_length, d.hop_length, d.win_length)(ref[None]).to(device)  # [1, F, T_ref]
    n_frames = n_tokens * net.frames_per_token
    z = torch.randn(1, cfg.model.inter_channels, n_frames, device=device)
    ge = torch.randn(1, cfg.model.gin_channels, 1, device=device)
    audio_s = n_frames * d.hop_length / d.sampling_rate
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    with torch.inference_mode():
        def decode() -> torch.Tensor:
            return net.decode(codes, text, text_lengths, refer, generator=torch.Generator(device).manual_seed(0),
                              dec_dtype=dtype)

        def generator() -> torch.Tensor:
            with cast:
                return net.dec(z, g=ge)

        wav = decode()
        generator()
        walls, gens = [], []
        for _ in range(repeats):  # interleaved, so that both see the same share of a noisy machine
            walls.append(timed(decode, device))
            gens.append(timed(generator, device))
        counter = FlopCounterMode(display=False)
        with counter:
            generator()
        gen_flops = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter:
            decode()
        total_flops = counter.get_total_flops()
        net.dec = Silent(d.hop_length)  # the rest of decode: everything but the generator
        decode()
        rest_s = min(timed(decode, device) for _ in range(repeats))
    wall, gen_s = min(walls), min(gens)
    return {"audio_s": audio_s, "tokens": n_tokens, "phonemes": n_phones, "ref_s": ref_seconds,
            "weight_norm_layers_folded": folded, "wall_s": wall, "rtf": wall / audio_s, "wall_runs_s": walls,
            "generator_s": gen_s, "rest_s": rest_s, "decode_gflop": total_flops / 1e9,
            "generator_gflop": gen_flops / 1e9, "generator_gflop_per_audio_s": gen_flops / 1e9 / audio_s,
            "generator_gflop_s": gen_flops / 1e9 / gen_s}, wav.float()


def peaks(device: torch.device, bf16: bool) -> dict:
    out = {"matmul_fp32_gflop_s": matmul_peak_gflops(device), "conv_fp32_gflop_s": conv_peak_gflops(device)}
    if bf16:
        out["matmul_bf16_gflop_s"] = matmul_peak_gflops(device, torch.bfloat16)
    return out


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg_path = Path(args.config)
    out: dict = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "config": str(cfg_path), "machine": machine_facts(device),
                 "reference": "the matmul and conv peaks of this run (peaks); GPT-SoVITS on the same work: "
                              "python -m bench.gsv1_compare --parts speed-s2 (decode), python -m "
                              "bench.train_compare --parts s2 (training step)"}
    before = peaks(device, args.bf16)
    if not args.skip_train:
        out["train"] = bench_train(cfg_path, device, args.train_batch, args.train_seconds, args.train_steps)
    decode_args = (cfg_path, device, args.decode_seconds, args.ref_seconds, args.n_phones, args.repeats)
    out["decode"], wav = bench_decode(*decode_args)
    if args.bf16:
        out["decode_bf16"], wav_bf16 = bench_decode(*decode_args, dtype=torch.bfloat16)
        diff = wav_bf16 - wav
        out["decode_bf16"]["max_abs_diff_vs_fp32"] = float(diff.abs().max())
        out["decode_bf16"]["rms_diff_vs_fp32"] = float(diff.pow(2).mean().sqrt())
        out["decode_bf16"]["rms_fp32"] = float(wav.pow(2).mean().sqrt())
        out["decode_bf16"]["snr_db_vs_fp32"] = snr_db(wav, wav_bf16)
        out["decode_bf16"]["snr_tolerance_db"] = BF16_SNR_TOLERANCE_DB
        out["decode_bf16"]["within_tolerance"] = out["decode_bf16"]["snr_db_vs_fp32"] >= BF16_SNR_TOLERANCE_DB
        out["decode_bf16"]["speedup_vs_fp32"] = out["decode"]["wall_s"] / out["decode_bf16"]["wall_s"]
    after = peaks(device, args.bf16)
    # the best probe of before and after: the highest, i.e. the strictest, reference
    out["peaks"] = {k: max(before[k], after[k]) for k in before}
    gen = out["decode"]["generator_gflop_s"]
    out["generator_fraction_of_matmul_peak"] = gen / out["peaks"]["matmul_fp32_gflop_s"]
    out["generator_fraction_of_conv_peak"] = gen / out["peaks"]["conv_fp32_gflop_s"]
    out["target_rtf"] = TARGET_RTF
    out["meets_target"] = out["decode"]["rtf"] <= TARGET_RTF
    if args.bf16:
        out["meets_target_bf16"] = out["decode_bf16"]["rtf"] <= TARGET_RTF
    print(json.dumps(out, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "s2.json"), help="S2 config (default: full size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    p.add_argument("--train-batch", type=int, default=2, help="items per training batch (default: 2)")
    p.add_argument("--train-seconds", type=float, default=4.0, help="seconds per training item (default: 4)")
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps (default: 3)")
    p.add_argument("--skip-train", action="store_true", help="only the decode benchmark")
    p.add_argument("--decode-seconds", type=float, default=10.0, help="seconds of audio to decode (default: 10)")
    p.add_argument("--ref-seconds", type=float, default=3.0, help="reference length in seconds (default: 3)")
    p.add_argument("--n-phones", type=int, default=100, help="phonemes of the decoded text (default: 100)")
    p.add_argument("--repeats", type=int, default=3, help="timed decode runs, the best is kept (default: 3)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="skip the bf16 autocast decode (it is measured by default)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
