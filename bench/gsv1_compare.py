"""Parity and speed of AR-VITS against GPT-SoVITS's own code, on the same random-weight v1 files.

    python -m bench.gsv1_compare --gs-root /path/to/GPT-SoVITS                 # v1 checkout (e.g. 3a9161c)
    python -m bench.gsv1_compare --gs-root /path/to/GPT-SoVITS-current --parts speed-s1
    python -m bench.gsv1_compare --gs-root ... --threads 2 --repeats 5 --work-dir /tmp/gsv1_compare

GPT-SoVITS is imported at run time from ``--gs-root`` (``bench/gs_reference.py``; no GS code is
in this repository). The tool writes, with GS's own classes and seeded default random init,
v1 files: S1 with ``bert_proj`` at 12 and 24 layers (``s1longer.yaml`` shapes), the S2
generator (with ``enc_q``, codebook marked initialised) and the discriminator, all fp16 as GS
writes them; GS loads them as its WebUI does, and we load them through our v1 loading path
(``infer.loading.load_s1/load_s2``, ``common.checkpoint.load_discriminator_state``). Batch 1,
fp32, CPU. Parts (``--parts``, default all but none of the GS-current-only ones):

- ``s1``: greedy decoding under the v1 rules (ours: ``drop_first_token``, EOS blocked at the
  first step; GS: ``infer_panel`` with top_k 1, its repetition penalty 1.35), EOS disabled in
  both (GS: a hook sets the EOS logit to -inf; ours: EOS blocked every step) so that every
  run has ``--steps`` tokens. Figures: tokens identical (count), logits max abs diff over every
  step (pre-penalty, KV-cached paths of both);
- ``prompt``: prompt tokens of the same reference wav (44.1 kHz stereo, speech-like), GS
  ``get_tts_wav``'s path (librosa 16 kHz + 0.6 s zeros -> cnhubert -> ``extract_latent``) vs ours
  under ``--rules gsv1``, with the same tiny HuBERT (768 wide, ``tests/tiny_hubert.py``);
- ``bert``: BERT features of Chinese and mixed Chinese-English text, GS ``get_bert_inf`` per
  language part vs ``modules.bert.bert_features``, same tiny BERT (1024 wide, ``tests/tiny_bert.py``);
- ``s2``: reference spectrogram, and ``decode`` with noise scale 0 (same codes, phonemes, spec);
- ``d``: discriminator logits and feature maps on the same pair of waveforms;
- ``speed-s1``: decoding speed, 12 and 24 layers, ``--n-phones`` phonemes + ``--n-prompt`` prompt
  tokens, ``--new-tokens`` new tokens, the gsv1 sampling preset (top_k 10), EOS disabled,
  GS ``infer_panel`` (fp32) vs our ``generate_detailed`` (KV cache) in each ``--weights`` format
  (``s1.weights``: fp32, bf16, fp16, int8), interleaved runs, medians; per non-fp32 format its agreement
  with our fp32 over ``--agreement-steps`` greedy tokens (``s1.weights.compare_with_fp32``) of each of
  ``--agreement-inputs`` random inputs, pooled (and the lowest input's);
- ``speed-s2``: ``decode`` of ``--seconds`` of audio, GS (fp32) vs ours in fp32 and, with
  ``--s2-bf16`` (default on CPUs with native bf16), ours with the generator under bf16 autocast
  (``--s2-precision bf16`` of tts.py/s2_infer.py) with its SNR against our fp32 output (noise scale 0);
  interleaved runs, medians.

Prints one JSON object: environment (CPU model and flags, threads, load average before and
after, torch, GS commit), ``stand_ins`` (what was replaced to import GS), ``checks``
(value, target, ok) and ``speed``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench import gs_reference as gsr
from bench.machine import machine_facts
from common.cpu import cpu_bf16_native

PARTS = ("s1", "prompt", "bert", "s2", "d", "speed-s1", "speed-s2")
LOGITS_TARGET = 1e-4
S2_TARGET = 1e-4
BERT_TEXTS = ["今天天气很好，我们去公园散步吧。", "我喜欢用Python写代码，你呢？"]


def cpu_facts() -> dict:
    """``bench.machine.machine_facts`` and whether this CPU multiplies bf16 natively."""
    return {**machine_facts(), "bf16_native": cpu_bf16_native()}


def gs_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or root.name
    except (OSError, subprocess.SubprocessError):
        return root.name


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise SystemExit(f"error: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def check(value: float | int | bool, target: str, ok: bool, **extra) -> dict:
    return {"value": value, "target": target, "ok": bool(ok), **extra}


def speechy(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A voiced-sounding signal: harmonics of a gliding f0, gated into syllables, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 1.5 * t) > -0.2)
    return (0.3 * x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


# ----------------------------------------------------------------------------- our side


class OurLogits:
    """Records the logits [B, V] of every step of ``s1.generate`` (prefill via the head, decode steps via
    ``decode_one_token``), before EOS blocking and the repetition penalty."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.logits: list[torch.Tensor] = []
        self.model = model
        self.handle = model.head.register_forward_hook(lambda m, i, out: self.logits.append(out.detach().clone()))
        inner = model.decode_one_token

        def recorded(*args, **kwargs):
            out = inner(*args, **kwargs)
            self.logits.append(out.detach().clone())
            return out

        model.decode_one_token = recorded

    def remove(self) -> None:
        self.handle.remove()
        del self.model.decode_one_token


def our_s1_decode(model: torch.nn.Module, phones: torch.Tensor, prompt: torch.Tensor, bert: torch.Tensor,
                  n_tokens: int, preset: str, seed: int = 0) -> torch.Tensor:
    """Our v1-rules decoding with EOS disabled: exactly ``n_tokens`` tokens (first generated one dropped)."""
    from s1.generate import generate_detailed
    from s1.sampling import PRESETS

    res = generate_detailed(model, [phones], [prompt], PRESETS[preset], max_new_tokens=n_tokens,
                            max_tokens_per_phoneme=None, min_new_tokens=n_tokens + 2, seed=seed, bert=[bert.T],
                            drop_first_token=True)
    return res.tokens[0]


def s1_inputs(n_phones: int, n_prompt: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    phones = torch.randint(0, 322, (n_phones,), generator=g)
    prompt = torch.randint(0, 1024, (n_prompt,), generator=g)
    bert = torch.randn(1024, n_phones, generator=g)
    return phones, prompt, bert


# ----------------------------------------------------------------------------- parts


def part_s1(gs: gsr.GS, files: dict[int, Path], args: argparse.Namespace) -> dict:
    from infer.loading import load_s1

    out = {}
    phones, prompt, bert = s1_inputs(args.n_phones, args.n_prompt, args.seed)
    for n_layer, path in files.items():
        gs_model = gsr.load_gs_s1(gs, path)
        ours = load_s1(path, torch.device("cpu"))
        gs_tokens, gs_logits = gsr.gs_s1_decode(gs_model, phones, prompt, bert, args.steps, top_k=1, record=True)
        rec = OurLogits(ours.model)
        try:
            our_tokens = our_s1_decode(ours.model, phones, prompt, bert, args.steps, "greedy")
        finally:
            rec.remove()
        same = int((gs_tokens == our_tokens).long().cumprod(0).sum()) if len(gs_tokens) == len(our_tokens) else -1
        n = min(len(gs_logits), len(rec.logits))
        diff = max(max_diff(a, b) for a, b in zip(gs_logits[:n], rec.logits[:n]))
        out[f"s1_{n_layer}L_greedy_tokens_identical"] = check(
            same, f">= {args.steps} of {args.steps}", same >= args.steps and same >= 300,
            gs_tokens=len(gs_tokens), our_tokens=len(our_tokens), distinct_tokens=len(set(our_tokens.tolist())))
        out[f"s1_{n_layer}L_logits_max_abs_diff"] = check(diff, f"<= {LOGITS_TARGET:g}", diff <= LOGITS_TARGET,
                                                          steps_compared=n)
        out[f"s1_{n_layer}L_loaded_rules"] = check(ours.cfg.inference.rules, "gsv1",
                                                   ours.cfg.inference.rules == "gsv1")
    return out


def part_prompt(gs: gsr.GS, g_path: Path, work: Path) -> dict:
    from transformers import Wav2Vec2FeatureExtractor

    from infer.loading import load_s2
    from infer.rules import gsv1_prompt_tokens, librosa_style_load
    from modules.ssl import load_ssl_model
    from tests.tiny_hubert import make_tiny_hubert

    hubert = make_tiny_hubert(work / "hubert768", hidden_size=768)
    Wav2Vec2FeatureExtractor().save_pretrained(hubert)  # GS's CNHubert also loads a feature extractor config
    ref = work / "ref44k_stereo.wav"
    wav = speechy(5.0, 44100, seed=1)
    sf.write(ref, np.stack([wav, 0.8 * np.roll(wav, 7)], axis=1), 44100)
    vq, _, _ = gsr.load_gs_s2(gs, g_path, work / "s2D.pth")
    gs_tokens = gsr.gs_prompt_tokens(gs, hubert, vq, ref)
    s2 = load_s2(g_path, torch.device("cpu"))
    ours = gsv1_prompt_tokens(librosa_style_load(ref), load_ssl_model(str(hubert)), s2)
    same = len(gs_tokens) == len(ours) and bool(torch.equal(gs_tokens, ours))
    return {"prompt_tokens_identical": check(same, "identical", same, n_tokens=len(ours), gs_n_tokens=len(gs_tokens),
                                             distinct_tokens=len(set(ours.tolist())))}


def part_bert(gs: gsr.GS, work: Path) -> dict:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from modules.bert import bert_features, load_bert_model
    from tests.tiny_bert import make_tiny_bert
    from text.cleaner import clean_text
    from text.symbols import phones_to_ids

    path = make_tiny_bert(work / "bert1024", hidden_size=1024, n_layers=3)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForMaskedLM.from_pretrained(path).eval()
    _, get_bert_inf = gsr.gs_bert_functions(gs, tokenizer, model)
    bert = load_bert_model(str(path))
    diffs, same = [], True
    for text in BERT_TEXTS:
        g2p = clean_text(text, "zh")
        ours = bert_features(bert, g2p)
        ids = phones_to_ids(g2p.phones)
        with gsr.quiet():
            theirs = torch.cat([get_bert_inf(ids[p.start:p.end], list(p.word2ph), p.norm_text, p.lang)
                                for p in g2p.parts], dim=1)
        diffs.append(max_diff(theirs, ours))
        same &= bool(torch.equal(theirs, ours))
    return {"bert_features_max_abs_diff": check(max(diffs), "identical (0)", same, texts=BERT_TEXTS,
                                                 per_text=diffs)}


def s2_inputs(seconds: float, n_phones: int, seed: int, token_rate: float = 25.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 1024, (round(seconds * token_rate),), generator=g),
            torch.randint(1, 322, (n_phones,), generator=g))


def part_s2_d(gs: gsr.GS, g_path: Path, d_path: Path, args: argparse.Namespace, parts: set[str]) -> dict:
    from common.audio import load_audio
    from common.checkpoint import load_discriminator_state, load_model_state
    from infer.loading import load_s2
    from infer.reference import reference_spectrogram
    from s2.model import build_discriminator

    out = {}
    vq, net_d, hps = gsr.load_gs_s2(gs, g_path, d_path)
    s2 = load_s2(g_path, torch.device("cpu"))
    ref = args.work / "ref32k.wav"
    sf.write(ref, speechy(3.0, 32000, seed=2), 32000)
    wav32 = torch.from_numpy(load_audio(ref, 32000))
    gs_spec = gsr.gs_reference_spec(gs, hps, wav32)
    if "s2" in parts:
        spec_diff = max_diff(gs_spec, reference_spectrogram(wav32.numpy(), s2))
        out["s2_reference_spec_max_abs_diff"] = check(spec_diff, f"<= {S2_TARGET:g}", spec_diff <= S2_TARGET)
        codes, text = s2_inputs(args.seconds, args.n_phones, args.seed)
        with torch.no_grad():
            theirs = vq.decode(codes[None, None], text[None], gs_spec, noise_scale=0)
            ours = s2.generator.decode(codes[None], text[None], torch.tensor([len(text)]), gs_spec, noise_scale=0.0)
        d = max_diff(theirs, ours)
        out["s2_decode_noise0_max_abs_diff"] = check(d, f"<= {S2_TARGET:g}", d <= S2_TARGET,
                                                     samples=theirs.shape[-1], peak=float(theirs.abs().max()))
    if "d" in parts:
        disc = build_discriminator(s2.cfg)
        load_model_state(disc, load_discriminator_state(d_path), d_path)
        disc.eval()
        g = torch.Generator().manual_seed(args.seed)
        y = 0.5 * torch.randn(1, 1, 32000, generator=g).clamp(-2, 2)
        y_hat = 0.5 * torch.randn(1, 1, 32000, generator=g).clamp(-2, 2)
        with torch.no_grad():
            rs, gs_, fr, fg = net_d(y, y_hat)
            o = disc(y, y_hat)
        diffs = [max_diff(a, b) for a, b in zip(rs + gs_, o.real_logits + o.fake_logits)]
        diffs += [max_diff(a, b) for la, lb in zip(fr + fg, o.real_features + o.fake_features) for a, b in zip(la, lb)]
        out["discriminator_max_abs_diff"] = check(max(diffs), f"<= {S2_TARGET:g}", max(diffs) <= S2_TARGET,
                                                  tensors_compared=len(diffs))
    return out


def timed_call(fn: callable) -> float:
    """Wall time of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(runs: dict[str, callable], repeats: int) -> dict[str, list[float]]:
    """Wall times of each callable, run in turn ``repeats`` times (after one warm-up each)."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def pooled_agreement(model: torch.nn.Module, inputs: list[tuple], refs: list, steps: int, fmt: str,
                     kernel: str) -> dict:
    """``fmt`` against fp32 over several inputs ``(phones, prompt, bert)`` with their fp32 references: the pooled
    argmax agreement (all steps of all inputs), the lowest input's, and each input's ``Agreement``."""
    from s1.weights import compare_with_fp32

    each = [compare_with_fp32(model, phones, prompt, steps, fmt, bert=bert.T, kernel=kernel, reference=ref)
            for (phones, prompt, bert), ref in zip(inputs, refs)]
    rates = [a.argmax_agreement for a in each]
    return {"argmax_agreement": sum(rates) / len(rates), "lowest_input": min(rates), "steps": steps * len(each),
            "logits_max_abs_diff": max(a.logits_max_abs_diff for a in each), "per_input": [vars(a) for a in each]}


def part_speed_s1(gs: gsr.GS, files: dict[int, Path], args: argparse.Namespace) -> dict:
    from infer.loading import load_s1
    from s1.compiled import compile_decode_step
    from s1.weights import fp32_reference, use_weight_format

    phones, prompt, bert = s1_inputs(args.n_phones, args.n_prompt, args.seed + 1)
    agreement_inputs = [s1_inputs(args.n_phones, args.n_prompt, args.seed + 1 + i)
                        for i in range(args.agreement_inputs)]
    formats = args.weights.split(",")
    out = {}
    for n_layer, path in files.items():
        checked = load_s1(path, torch.device("cpu")).model  # agreement runs (eager; compiled: the graph's arithmetic)
        refs = [] if args.agreement_steps <= 0 or formats == ["fp32"] else [
            fp32_reference(checked, p, pr, args.agreement_steps, bert=b.T) for p, pr, b in agreement_inputs]
        gs_model = gsr.load_gs_s1(gs, path)
        n = args.new_tokens
        runs = {"gs": lambda m=gs_model, n=n: gsr.gs_s1_decode(m, phones, prompt, bert, n, top_k=10)}
        formats_info, compile_s = {}, {}
        variants = [(fmt, False) for fmt in formats] + ([(fmt, True) for fmt in formats] if args.compile else [])
        for fmt, compiled in variants:
            name = fmt + ("+compiled" if compiled else "")
            ours = load_s1(path, torch.device("cpu")).model
            use_weight_format(ours, fmt)
            runs[name] = lambda m=ours, n=n: our_s1_decode(m, phones, prompt, bert, n, "gsv1")
            if compiled:  # compiled (and its threads timed) here and in the first call, apart from the runs
                t0 = time.perf_counter()
                compile_decode_step(ours)
                compile_s[name] = time.perf_counter() - t0 + timed_call(runs[name])
            formats_info[name] = vars(ours.transformer.decode_linear.info)
        times = interleaved(runs, args.repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        res = {"gs_tok_s": n / med["gs"], "gs_s": times["gs"]}
        for fmt, compiled in variants:
            name = fmt + ("+compiled" if compiled else "")
            res[name] = {"tok_s": n / med[name], "speedup_vs_gs": med["gs"] / med[name], "runs_s": times[name],
                         "weights": formats_info[name]}
            if compiled:
                res[name]["compile_s"] = round(compile_s[name] - med[name], 1)  # first call minus a run
            if fmt != "fp32" and refs:
                res[name]["agreement_vs_fp32"] = pooled_agreement(checked, agreement_inputs, refs,
                                                                  args.agreement_steps, fmt,
                                                                  "compiled" if compiled else "auto")
        out[f"s1_{n_layer}L"] = res
    return out


def part_speed_s2(gs: gsr.GS, g_path: Path, d_path: Path, args: argparse.Namespace) -> dict:
    from bench.s2 import BF16_SNR_TOLERANCE_DB, snr_db
    from infer.loading import load_s2

    vq, _, hps = gsr.load_gs_s2(gs, g_path, d_path)
    s2 = load_s2(g_path, torch.device("cpu"))
    spec = gsr.gs_reference_spec(gs, hps, torch.from_numpy(speechy(3.0, 32000, seed=2)))
    codes, text = s2_inputs(args.seconds, args.n_phones, args.seed)

    @torch.no_grad()
    def theirs() -> None:
        vq.decode(codes[None, None], text[None], spec, noise_scale=0.5)

    @torch.no_grad()
    def ours() -> None:
        s2.generator.decode(codes[None], text[None], torch.tensor([len(text)]), spec, noise_scale=0.5)


    @torch.no_grad()
    def ours_bf16(noise_scale: float = 0.5) -> torch.Tensor:
        return s2.generator.decode(codes[None], text[None], torch.tensor([len(text)]), spec, noise_scale=noise_scale,
                                   dec_dtype=torch.bfloat16)

    runs = {"gs": theirs, "ours": ours}
    if args.s2_bf16:
        runs["ours_bf16"] = ours_bf16
    times = interleaved(runs, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"audio_s": args.seconds, "gs_rtf": med["gs"] / args.seconds,
           "ours_rtf": med["ours"] / args.seconds, "speedup_ours_vs_gs": med["gs"] / med["ours"],
           "gs_s": times["gs"], "ours_s": times["ours"]}
    if args.s2_bf16:
        with torch.no_grad():
            ref = s2.generator.decode(codes[None], text[None], torch.tensor([len(text)]), spec, noise_scale=0.0)
        res.update({"ours_bf16_rtf": med["ours_bf16"] / args.seconds,
                    "speedup_ours_bf16_vs_gs": med["gs"] / med["ours_bf16"], "ours_bf16_s": times["ours_bf16"],
                    "bf16_snr_db_vs_fp32": snr_db(ref, ours_bf16(0.0)),
                    "bf16_snr_tolerance_db": BF16_SNR_TOLERANCE_DB})
    return {"s2_decode": res}


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> None:
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        raise SystemExit(f"error: --parts {args.parts}: choose from {','.join(PARTS)}")
    from s1.weights import WEIGHT_FORMATS

    if not set(args.weights.split(",")) <= set(WEIGHT_FORMATS):
        raise SystemExit(f"error: --weights {args.weights}: choose from {','.join(WEIGHT_FORMATS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    load_before = os.getloadavg()
    need_s2 = bool(parts & {"prompt", "s2", "d", "speed-s2"})
    gs = gsr.import_gs(args.gs_root, s2=need_s2)
    tmp = None if args.work_dir else tempfile.TemporaryDirectory(prefix="gsv1_compare_")
    args.work = Path(args.work_dir or tmp.name)
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        s1_files = {}
        if parts & {"s1", "speed-s1"}:
            for n_layer in args.layers:
                s1_files[n_layer] = args.work / f"s1_{n_layer}L.ckpt"
                gsr.build_s1_file(gs, n_layer, args.seed + n_layer, s1_files[n_layer])
        g_path, d_path = args.work / "s2G.pth", args.work / "s2D.pth"
        if need_s2:
            gsr.build_s2_files(gs, args.seed, g_path, d_path)
        checks: dict = {}
        speed: dict = {}
        if "s1" in parts:
            checks.update(part_s1(gs, s1_files, args))
        if "prompt" in parts:
            checks.update(part_prompt(gs, g_path, args.work))
        if "bert" in parts:
            checks.update(part_bert(gs, args.work))
        if parts & {"s2", "d"}:
            checks.update(part_s2_d(gs, g_path, d_path, args, parts))
        if "speed-s1" in parts:
            speed.update(part_speed_s1(gs, s1_files, args))
        if "speed-s2" in parts:
            speed.update(part_speed_s2(gs, g_path, d_path, args))
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {
        "gs_root": str(gs.root), "gs_commit": gs_commit(gs.root), "parts": sorted(parts),
        "environment": {**cpu_facts(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "dtype": "fp32",
                        "batch": 1, "load_avg_before": [round(x, 2) for x in load_before],
                        "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "stand_ins": gs.notes,
        "settings": {"steps": args.steps, "n_phones": args.n_phones, "n_prompt": args.n_prompt,
                     "new_tokens": args.new_tokens, "seconds": args.seconds, "repeats": args.repeats,
                     "seed": args.seed, "weights": args.weights, "agreement_steps": args.agreement_steps,
                     "agreement_inputs": args.agreement_inputs,
                     "compile": args.compile,
                     "s2_bf16": args.s2_bf16},
        "checks": checks, "all_ok": all(c["ok"] for c in checks.values()), "speed": speed,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gs-root", required=True, help="a GPT-SoVITS checkout (the folder holding GPT_SoVITS/)")
    p.add_argument("--parts", default="s1,prompt,bert,s2,d,speed-s1,speed-s2",
                   help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)")
    p.add_argument("--steps", type=int, default=320, help="greedy tokens compared per S1 model (default: 320)")
    p.add_argument("--n-phones", type=int, default=100, help="phonemes of the S1 input and of S2 decoding")
    p.add_argument("--n-prompt", type=int, default=75, help="prompt tokens of the S1 input (default: 75 = 3 s)")
    p.add_argument("--new-tokens", type=int, default=500, help="new tokens per S1 speed run (default: 500)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per S2 decode (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each side, interleaved (default: 5)")
    p.add_argument("--weights", default="fp32,bf16,int8" if cpu_bf16_native() else "fp32,int8",
                   help="our S1 weight formats timed in speed-s1, comma-separated (default: fp32,bf16,int8; "
                        "without bf16 on CPUs with no native bf16, where it is emulated and ~30x slower than fp32)")
    p.add_argument("--agreement-steps", type=int, default=500,
                   help="greedy tokens of each non-fp32 format's check against fp32 in speed-s1 (0 = skip)")
    p.add_argument("--agreement-inputs", type=int, default=3,
                   help="random inputs (phonemes, prompt, BERT) of that check, pooled: one input's agreement on "
                        "random weights swings by about a percent from input to input (default: 3)")
    p.add_argument("--s2-bf16", action=argparse.BooleanOptionalAction, default=cpu_bf16_native(),
                   help="also time our S2 decode under bf16 autocast in speed-s2 (default: on CPUs with native bf16)")
    p.add_argument("--compile", action="store_true",
                   help="in speed-s1, also time each format with our decode step compiled (s1.compiled; "
                        "the compile time is reported apart, the runs after it are timed)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--layers", type=lambda v: [int(x) for x in v.split(",")], default=[12, 24],
                   help="S1 depths, comma-separated (default: 12,24)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--work-dir", default=None, help="keep the v1 files and tiny models here (default: a temp dir)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
