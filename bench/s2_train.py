"""S2 training step speed: one discriminator and one generator update (``S2Trainer.train_step``).

    python -m bench.s2_train                                  # configs/gsv1/s2.json, CPU, 2 threads, 2 x 4 s
    python -m bench.s2_train --config configs/s2.json --batch 4 --seconds 6
    python -m bench.s2_train --device cuda --threads 0

A real ``S2Trainer`` (the one train_s2.py runs, in a temporary run directory) on a fixed
synthetic batch: ``--batch`` items of ``--seconds`` of a speech-like waveform, its linear
spectrogram, random HuBERT features and ``--phones-per-second`` random phoneme ids per second.
The first step (``--warmup``, untimed) also runs the codebook's k-means initialisation. A step
is the generator forward, discriminator forward/backward/AdamW step, the discriminator judging
again, generator backward/AdamW step. Prints one JSON object: ``step_s`` (median over
``--steps``), every step's time, the shapes, parameter counts and ``machine`` (``bench.machine``).
GPT-SoVITS's step on the same batch shapes: ``python -m bench.train_compare``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.machine import load_now, machine_facts

REPO = Path(__file__).resolve().parents[1]


def speechlike_wav(seconds: float, sample_rate: int, seed: int) -> torch.Tensor:
    """A deterministic speech-like signal [N] in [-1, 1]: a gliding harmonic tone, gated into syllables, noise."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    phase = 2 * math.pi * torch.cumsum(120 + 40 * torch.sin(2 * math.pi * 0.7 * t), 0) / sample_rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 8)) * (torch.sin(2 * math.pi * 1.5 * t) > -0.2)
    return (0.25 * voiced + 0.01 * torch.randn(n, generator=g)).clamp(-1, 1)


@dataclass
class S2Inputs:
    """One training batch in plain tensors (both implementations take these):
    wav ``[B, 1, T·hop]``, spec ``[B, F, T]``, spec_lengths ``[B]``, ssl ``[B, 768, T]`` (50 Hz, as
    many frames as the spectrogram), text ``[B, L]``, text_lengths ``[B]``."""

    wav: torch.Tensor
    spec: torch.Tensor
    spec_lengths: torch.Tensor
    ssl: torch.Tensor
    text: torch.Tensor
    text_lengths: torch.Tensor


def synthetic_inputs(batch: int, seconds: float, phones_per_second: float, sample_rate: int, hop: int,
                     spectrogram: torch.nn.Module, ssl_dim: int, seed: int) -> S2Inputs:
    """``batch`` items of equal length: ``spectrogram`` maps wav ``[1, N]`` to ``[1, F, T]``."""
    wavs, specs, ssls, texts = [], [], [], []
    for i in range(batch):
        wav = speechlike_wav(seconds, sample_rate, seed + i)
        frames = wav.numel() // hop
        wav = wav[: frames * hop]
        g = torch.Generator().manual_seed(seed + 100 + i)
        wavs.append(wav)
        specs.append(spectrogram(wav[None])[0, :, :frames])
        ssls.append(torch.randn(ssl_dim, frames, generator=g))
        texts.append(torch.randint(1, 322, (max(1, round(phones_per_second * seconds)),), generator=g))
    return S2Inputs(torch.stack(wavs)[:, None], torch.stack(specs), torch.full((batch,), specs[0].shape[-1]),
                    torch.stack(ssls), torch.stack(texts), torch.full((batch,), texts[0].numel()))


@contextlib.contextmanager
def our_trainer(config: Path, device: torch.device) -> Iterator:
    """A real ``S2Trainer`` for ``config`` in a temporary run directory (train mode, on ``device``).

    A config with ``freeze_quantizer`` (the v1 fine-tuning setup) needs a trained codebook, which a
    random model lacks: the trainer is built unfrozen, then its codebook is seeded N(0, 1), marked
    initialised (as in a trained file) and frozen, so that the step does the frozen-quantizer work.
    """
    import dataclasses

    import train_s2
    from common.config import S2Config, load_config, save_config
    from common.dist import DistInfo
    from s2.trainer import S2Trainer

    with tempfile.TemporaryDirectory(prefix="bench_s2_train_") as tmp:
        cfg = load_config(config, S2Config)
        frozen = cfg.model.freeze_quantizer
        cfg.model = dataclasses.replace(cfg.model, freeze_quantizer=False)
        unfrozen = save_config(cfg, Path(tmp) / "s2.json")
        args = train_s2.parse_args(["-c", str(unfrozen), "-m", str(Path(tmp) / "run"), "--device", str(device)])
        trainer = S2Trainer(args, DistInfo(0, 0, 1, device))
        if frozen:
            q = trainer.net_g.quantizer
            with torch.no_grad():
                q.embed.normal_()
                q.embed_avg.copy_(q.embed)
                q.cluster_size.fill_(1.0)
                q.inited.fill_(1.0)
            trainer.net_g.freeze_quantizer()
        trainer.net_g.train()
        trainer.net_d.train()
        try:
            yield trainer
        finally:
            trainer.board.close()


def our_batch(trainer, inputs: S2Inputs, device: torch.device):
    """``inputs`` as our ``S2Batch`` (through ``s2.data.collate_s2``)."""
    from s2.data import S2Example, collate_s2

    examples = [S2Example(f"item{i}", inputs.wav[i, 0], inputs.spec[i], inputs.ssl[i], inputs.text[i])
                for i in range(inputs.wav.shape[0])]
    return collate_s2(examples).to(device)


def our_inputs(trainer, args: argparse.Namespace, seed: int = 0) -> S2Inputs:
    d = trainer.cfg.data
    spectrogram = trainer.mel_of_wav.spectrogram.cpu()
    return synthetic_inputs(args.batch, args.seconds, args.phones_per_second, d.sampling_rate, d.hop_length,
                            spectrogram, d.ssl_dim, seed)


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = machine_facts(device)
    with our_trainer(args.config, device) as trainer:
        batch = our_batch(trainer, our_inputs(trainer, args, args.seed), device)
        times = []
        for i in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            out = trainer.train_step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        if out is None:
            raise SystemExit("bench.s2_train: the last step was skipped (non-finite loss)")
        g_params = sum(p.numel() for p in trainer.net_g.parameters())
        d_params = sum(p.numel() for p in trainer.net_d.parameters())
        precision = trainer.precision
    step = statistics.median(times)
    print(json.dumps({
        "bench": "s2_train", "machine": machine, "load_avg_after": load_now(),
        "reference": "none in this run; python -m bench.train_compare --gs-root <GPT-SoVITS> times GPT-SoVITS's "
                     "step beside ours",
        "config": str(args.config), "precision": precision, "threads": torch.get_num_threads(),
        "batch": args.batch, "seconds_per_item": args.seconds, "frames": int(batch.spec.size(2)),
        "step_s": round(step, 4), "steps_per_s": round(1 / step, 3), "step_times_s": [round(t, 4) for t in times],
        "audio_s_per_s": round(args.batch * args.seconds / step, 3),
        "g_params_m": round(g_params / 1e6, 2), "d_params_m": round(d_params / 1e6, 2),
    }))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "gsv1" / "s2.json",
                   help="S2 config (default: configs/gsv1/s2.json, GPT-SoVITS v1 shapes)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--batch", type=int, default=2, help="items per batch (default: 2)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per item (default: 4)")
    p.add_argument("--phones-per-second", type=float, default=12.0, help="phonemes per second of audio (default: 12)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: leave the default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
