"""Training steps of AR-VITS and of GPT-SoVITS v1, side by side on the same batch shapes and data.

    python -m bench.train_compare --gs-root /path/to/GPT-SoVITS          # S1 and S2, fp32, 2 threads
    python -m bench.train_compare --gs-root ... --parts s1 --repeats 7
    python -m bench.train_compare --gs-root ... --parts s2 --s2-seconds 4 --s2-batch 2

GPT-SoVITS is imported at run time from ``--gs-root`` (``bench/gs_reference.py``; no GS code is
in this repository; a v1 checkout such as 3a9161c). Both sides start from random weights (GS's
classes with GS's default init, ours with ours), train mode with their dropouts, fp32, on
the CPU with ``--threads`` threads. Each side's step is timed in turn (one untimed warm-up
step each, then ``--repeats`` rounds of GS then ours); the figures are medians:

- ``s1``: batch ``--s1-batch`` x (``--s1-phones`` phonemes + ``--s1-tokens`` tokens), 12 layers
  (``--s1-layers``), width 512, BERT projection 1024 -> 512 on both sides (GS's
  ``s1longer.yaml`` shapes; ours ``configs/gsv1/s1.json``). GS: ``Text2SemanticDecoder.forward_old``
  (what its Lightning module's ``training_step`` calls without DPO: sum cross-entropy and the
  top-3 accuracy metric) + backward + ``torch.optim.AdamW`` step (the issue's comparison; GS
  itself trains with ScaledAdam, ``--gs-s1-optimizer scaledadam`` times that instead). Ours:
  ``bench.s1_train.OurStep`` (``S1Trainer.update``: ``accumulate_step``, ``clip_grad_norm_``, AdamW).
  Also each side's no-grad forward in training mode (``forward_s``), timed in the same rounds.
- ``s2``: batch ``--s2-batch`` x ``--s2-seconds`` of a speech-like waveform (its spectrogram,
  random 768-d HuBERT features, 12 phonemes per second), GPT-SoVITS v1 S2 shapes (GS's
  ``configs/s2.json``; ours ``configs/gsv1/s2.json``), frozen quantizer on both sides. GS: the step
  of its ``s2_train.py`` (``SynthesizerTrn`` forward, mel of the spectrogram and of the output,
  ``MultiPeriodDiscriminator`` on the detached output, D loss, backward, ``clip_grad_value_``
  (norm only), AdamW; D again, mel L1 x c_mel + KL + feature + generator losses, backward,
  ``clip_grad_value_``, AdamW). Ours: ``S2Trainer.train_step`` (``bench.s2_train``).

Prints one JSON object: ``machine`` (``bench.machine``: CPU model and flags, threads, load
average before) and ``load_avg_after``, the GS commit, the stand-ins used to import GS,
the settings, and per part the GS and our medians, every time, and ``ours_vs_gs`` (our median
step time / GS's: below 1 is faster) against the target (``TARGET_RATIO``, 0.8), with two figures
that a busy machine disturbs less: ``ours_vs_gs_of_minima`` (best time / best time) and
``ours_vs_gs_median_per_round`` (the median over rounds of ours / GS in the same round).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import gs_reference as gsr
from bench.gsv1_compare import gs_commit, interleaved
from bench.machine import load_now, machine_facts

REPO = Path(__file__).resolve().parents[1]
PARTS = ("s1", "s2")
TARGET_RATIO = 0.8


def summary(times: dict[str, list[float]], pairs: dict[str, tuple[str, str]]) -> dict:
    """Medians and every time per run; for each ``name: (gs, ours)`` pair, ``ours / gs`` of the medians."""
    med = {k: statistics.median(v) for k, v in times.items()}
    out: dict = {f"{k}_s": round(m, 4) for k, m in med.items()}
    out["times_s"] = {k: [round(t, 4) for t in v] for k, v in times.items()}
    for name, (gs, ours) in pairs.items():
        out[name] = round(med[ours] / med[gs], 3)
        # robust companions on a busy machine: the ratio of the best times, the median of each round's ratio
        out[f"{name}_of_minima"] = round(min(times[ours]) / min(times[gs]), 3)
        out[f"{name}_median_per_round"] = round(statistics.median(o / g for o, g in zip(times[ours], times[gs])), 3)
    out["target"] = f"ours_vs_gs <= {TARGET_RATIO}"
    out["ok"] = out["ours_vs_gs"] <= TARGET_RATIO
    return out


# ----------------------------------------------------------------------------- S1


def part_s1(gs: gsr.GS, args: argparse.Namespace) -> dict:
    from bench.s1_train import OurStep, our_batch, synthetic_inputs
    from common.config import S1Config, load_config

    cfg = load_config(REPO / "configs" / "gsv1" / "s1.json", S1Config)
    cfg.model = dataclasses.replace(cfg.model, n_layer=args.s1_layers)
    b, x, y = args.s1_batch, args.s1_phones, args.s1_tokens
    phones, tokens, bert = synthetic_inputs(b, x, y, cfg.model.codebook_size, cfg.model.bert_dim, args.seed)
    ours = OurStep.build(cfg, torch.device("cpu"), "fp32", args.seed)
    batch = our_batch(phones, tokens, bert, cfg.model.eos_id)

    torch.manual_seed(args.seed)
    model = gs.t2s.Text2SemanticDecoder(config=gsr.s1_config(gs, args.s1_layers), top_k=3).train()
    if args.gs_s1_optimizer == "scaledadam":
        optim_mod = importlib.import_module("AR.modules.optim")
        names = [n for n, _ in model.named_parameters()]
        optim = optim_mod.ScaledAdam(model.parameters(), lr=0.01, betas=(0.9, 0.95), clipping_scale=2.0,
                                     parameters_names=[names], show_dominant_parameters=False,
                                     clipping_update_period=1000)
    else:
        optim = torch.optim.AdamW(model.parameters(), lr=cfg.train.learning_rate, betas=tuple(cfg.train.betas),
                                  eps=cfg.train.eps, weight_decay=cfg.train.weight_decay)
    x_lens, y_lens = torch.full((b,), x), torch.full((b,), y)

    def gs_step() -> None:
        optim.zero_grad()
        loss, _acc = model.forward_old(phones, x_lens, tokens, y_lens, bert)
        loss.backward()
        optim.step()

    @torch.no_grad()
    def gs_forward() -> None:
        model.forward_old(phones, x_lens, tokens, y_lens, bert)

    times = interleaved({"gs": gs_step, "ours": lambda: ours(batch),
                         "gs_forward": gs_forward, "ours_forward": lambda: ours.forward(batch)}, args.repeats)
    out = summary(times, {"ours_vs_gs": ("gs", "ours"), "forward_ours_vs_gs": ("gs_forward", "ours_forward")})
    out["shape"] = {"batch": b, "phones": x, "tokens": y, "layers": args.s1_layers, "bert_dim": cfg.model.bert_dim}
    out["params_m"] = {"gs": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                       "ours": round(sum(p.numel() for p in ours.model.parameters()) / 1e6, 2)}
    out["gs_optimizer"] = args.gs_s1_optimizer
    return out


# ----------------------------------------------------------------------------- S2


class GSS2Step:
    """The training step of GS v1's ``s2_train.py`` (fp32, no grad scaling), on plain tensors."""

    def __init__(self, gs: gsr.GS, seed: int) -> None:
        self.gs = gs
        self.hps, _ = gsr.s2_hparams(gs)
        h = self.hps
        self.commons = importlib.import_module("module.commons")
        self.losses = importlib.import_module("module.losses")
        torch.manual_seed(seed)
        self.net_g = gs.models.SynthesizerTrn(h.data.filter_length // 2 + 1, h.train.segment_size // h.data.hop_length,
                                              n_speakers=h.data.n_speakers, **h.model).train()
        codebook = self.net_g.quantizer.vq.layers[0]._codebook  # as a trained file: no k-means on the first batch
        with torch.no_grad():
            codebook.embed.normal_()
            codebook.embed_avg.copy_(codebook.embed)
            codebook.cluster_size.fill_(1.0)
            codebook.inited.fill_(1.0)
        self.net_d = gs.models.MultiPeriodDiscriminator(h.model.use_spectral_norm).train()
        kw = {"betas": tuple(h.train.betas), "eps": h.train.eps}
        self.optim_g = torch.optim.AdamW([p for p in self.net_g.parameters() if p.requires_grad],
                                         h.train.learning_rate, **kw)
        self.optim_d = torch.optim.AdamW(self.net_d.parameters(), h.train.learning_rate, **kw)

    def __call__(self, inp) -> float:
        h, commons, losses = self.hps, self.commons, self.losses
        d = h.data
        y_hat, kl_ssl, ids_slice, _x_mask, z_mask, (_z, z_p, m_p, logs_p, _m_q, logs_q), _ = self.net_g(
            inp.ssl, inp.spec, inp.spec_lengths, inp.text, inp.text_lengths)
        mel = self.gs.mel.spec_to_mel_torch(inp.spec, d.filter_length, d.n_mel_channels, d.sampling_rate,
                                            d.mel_fmin, d.mel_fmax)
        y_mel = commons.slice_segments(mel, ids_slice, h.train.segment_size // d.hop_length)
        y_hat_mel = self.gs.mel.mel_spectrogram_torch(y_hat.squeeze(1), d.filter_length, d.n_mel_channels,
                                                      d.sampling_rate, d.hop_length, d.win_length, d.mel_fmin,
                                                      d.mel_fmax)
        y = commons.slice_segments(inp.wav, ids_slice * d.hop_length, h.train.segment_size)
        y_d_hat_r, y_d_hat_g, _, _ = self.net_d(y, y_hat.detach())
        loss_disc, _, _ = losses.discriminator_loss(y_d_hat_r, y_d_hat_g)
        self.optim_d.zero_grad()
        loss_disc.backward()
        commons.clip_grad_value_(self.net_d.parameters(), None)
        self.optim_d.step()
        y_d_hat_r, y_d_hat_g, fmap_r, fmap_g = self.net_d(y, y_hat)
        loss_mel = F.l1_loss(y_mel, y_hat_mel) * h.train.c_mel
        loss_kl = losses.kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * h.train.c_kl
        loss_fm = losses.feature_loss(fmap_r, fmap_g)
        loss_gen, _ = losses.generator_loss(y_d_hat_g)
        loss_gen_all = loss_gen + loss_fm + loss_mel + kl_ssl * 1 + loss_kl
        self.optim_g.zero_grad()
        loss_gen_all.backward()
        commons.clip_grad_value_(self.net_g.parameters(), None)
        self.optim_g.step()
        return float(loss_gen_all.detach())


def part_s2(gs: gsr.GS, args: argparse.Namespace) -> dict:
    from bench.s2_train import our_batch, our_inputs, our_trainer

    device = torch.device("cpu")
    theirs = GSS2Step(gs, args.seed)
    with our_trainer(REPO / "configs" / "gsv1" / "s2.json", device) as trainer:
        shape = argparse.Namespace(batch=args.s2_batch, seconds=args.s2_seconds, phones_per_second=12.0)
        inputs = our_inputs(trainer, shape, args.seed)
        batch = our_batch(trainer, inputs, device)
        times = interleaved({"gs": lambda: theirs(inputs), "ours": lambda: trainer.train_step(batch)},
                            args.repeats)
        ours_params = {"g": sum(p.numel() for p in trainer.net_g.parameters()),
                       "d": sum(p.numel() for p in trainer.net_d.parameters())}
    out = summary(times, {"ours_vs_gs": ("gs", "ours")})
    out["shape"] = {"batch": args.s2_batch, "seconds": args.s2_seconds, "frames": int(inputs.spec.shape[-1]),
                    "phones": int(inputs.text.shape[-1]), "segment_samples": theirs.hps.train.segment_size}
    out["params_m"] = {"gs_g": round(sum(p.numel() for p in theirs.net_g.parameters()) / 1e6, 2),
                       "gs_d": round(sum(p.numel() for p in theirs.net_d.parameters()) / 1e6, 2),
                       "ours_g": round(ours_params["g"] / 1e6, 2), "ours_d": round(ours_params["d"] / 1e6, 2)}
    return out


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    parts = [p for p in args.parts.split(",") if p]
    if not parts or not set(parts) <= set(PARTS):
        raise SystemExit(f"error: --parts {args.parts}: choose from {','.join(PARTS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    machine = machine_facts()
    gs = gsr.import_gs(args.gs_root, s2="s2" in parts)
    results = {}
    if "s1" in parts:
        results["s1"] = part_s1(gs, args)
    if "s2" in parts:
        results["s2"] = part_s2(gs, args)
    print(json.dumps({
        "bench": "train_compare", "machine": machine, "load_avg_after": load_now(),
        "gs_root": str(gs.root), "gs_commit": gs_commit(gs.root), "stand_ins": gs.notes,
        "settings": {k: v for k, v in vars(args).items() if k != "gs_root"},
        "dtype": "fp32", "results": results, "all_ok": all(r["ok"] for r in results.values()),
    }, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gs-root", required=True, help="a GPT-SoVITS checkout (the folder holding GPT_SoVITS/)")
    p.add_argument("--parts", default="s1,s2", help="comma-separated parts: s1, s2 (default: both)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds, GS then ours in each (default: 5)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: torch's default; default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--s1-batch", type=int, default=4, help="S1 items per batch (default: 4)")
    p.add_argument("--s1-phones", type=int, default=80, help="S1 phonemes per item (default: 80)")
    p.add_argument("--s1-tokens", type=int, default=150, help="S1 semantic tokens per item (default: 150)")
    p.add_argument("--s1-layers", type=int, default=12, help="S1 transformer layers (default: 12)")
    p.add_argument("--gs-s1-optimizer", choices=("adamw", "scaledadam"), default="adamw",
                   help="GS's S1 optimizer: torch AdamW (default, the issue's comparison) or its own ScaledAdam")
    p.add_argument("--s2-batch", type=int, default=2, help="S2 items per batch (default: 2)")
    p.add_argument("--s2-seconds", type=float, default=4.0, help="seconds per S2 item (default: 4)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
