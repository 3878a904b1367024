"""Held-out evaluation of trained S1/S2 checkpoints beside untrained ones (the demo and bench/learn.py).

    from infer.heldout import evaluate_pipeline
    report = evaluate_pipeline(s1_ckpt, s2_ckpt, dump, ref_wav, ref_text, ssl_model)
    print(format_measures(report.measures))

Held-out items are the S1 validation list (their text was seen by neither S1 nor, when the
lists share a seed and size as in the demo, S2). For each one (``common.learning``):

- S2 resynthesis of the recording (prior path, as inference; and the posterior path, the
  decoder's ceiling): log-mel L1 and energy-envelope correlation;
- S1 teacher-forced top-1 accuracy over the list;
- text to speech of the item's text with ``ref`` as the voice/prompt: generated/true token
  count ratio (mean of ``LENGTH_DRAWS`` sampled generations) and MCD-DTW against the
  recording (espeak-ng's own rendering in the demo).

The untrained models have the configs of the checkpoints and the trainers' initial weights
(``seed_everything(train.seed)`` then ``build_model``, as rank 0 of the trainer does), so
every figure has its step-0 counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common.audio import load_audio
from common.learning import Measure, mcd_dtw, mean, s2_resynthesis_scores
from common.manifest import MANIFEST_NAME, S2_VAL_LIST, WAV_DIR, read_manifest, read_s2_list
from common.training import seed_everything
from infer.decoder import DecodeOptions, decode_tokens_file
from infer.engine import GenerationOptions, TTSEngine, sampling_params
from infer.loading import LoadedS1, LoadedS2, load_s1, load_s2
from infer.reference import load_reference, reference_spectrogram
from infer.text_input import phonemize
from modules.spectrogram import MelSpectrogram
from modules.ssl import load_ssl_model
from s1.data import S1_VAL_LIST, SEMANTIC_JSON, S1Dataset
from s2.data import S2Dataset

LENGTH_DRAWS = 4  # sampled S1 generations per held-out item for the length ratio


@dataclass
class PipelineScores:
    """Means over the held-out items for one pair of models."""

    s2_prior: dict[str, float]  # mel_l1, env_corr
    s2_posterior: dict[str, float] | None  # None when the checkpoint has no posterior encoder
    s1_top1: float
    token_ratio: float  # generated / true token count (mean over items)
    mcd: float  # dB
    tts_wavs: dict[str, np.ndarray]  # id -> synthesized wav


@dataclass
class HeldOutReport:
    ids: list[str]
    trained: PipelineScores
    untrained: PipelineScores

    @property
    def measures(self) -> list[Measure]:
        t, u = self.trained, self.untrained
        rows = [Measure("S2 resynthesis log-mel L1", t.s2_prior["mel_l1"], u.s2_prior["mel_l1"], False, margin=0.1),
                Measure("S2 resynthesis envelope correlation", t.s2_prior["env_corr"], u.s2_prior["env_corr"], True,
                        margin=0.1)]
        if t.s2_posterior is not None and u.s2_posterior is not None:
            rows += [Measure("S2 posterior-path log-mel L1 (ceiling)", t.s2_posterior["mel_l1"],
                             u.s2_posterior["mel_l1"], False, margin=0.1),
                     Measure("S2 posterior-path envelope corr (ceiling)", t.s2_posterior["env_corr"],
                             u.s2_posterior["env_corr"], True, margin=0.1)]
        rows += [Measure("S1 teacher-forced top-1 accuracy", t.s1_top1, u.s1_top1, True, margin=0.02),
                 Measure("S1 generated / true token count", t.token_ratio, u.token_ratio, False, target=1.0,
                         margin=0.1),
                 Measure("TTS vs recording MCD-DTW (dB)", t.mcd, u.mcd, False, margin=1.0)]
        return rows

    def as_dict(self) -> dict:
        return {"held_out_ids": self.ids,
                "measures": {m.name: {"trained": m.trained, "untrained": m.untrained, "improved": m.improved}
                             for m in self.measures}}


def untrained_s2(s2: LoadedS2) -> LoadedS2:
    """The same S2 config with the trainer's initial weights (codebook not initialised)."""
    from s2.model import build_model

    seed_everything(s2.cfg.train.seed)
    generator, _ = build_model(s2.cfg)
    generator.fold_weight_norm()
    generator.to(device=s2.device, dtype=torch.float32).eval()
    return replace(s2, generator=generator, step=0)


def untrained_s1(s1: LoadedS1) -> LoadedS1:
    """The same S1 config with the trainer's initial weights."""
    from s1.model import build_model

    seed_everything(s1.cfg.train.seed)
    return replace(s1, model=build_model(s1.cfg).to(device=s1.device, dtype=torch.float32).eval(), step=0)


@torch.no_grad()
def s1_top1(s1: LoadedS1, val: S1Dataset, batch: int = 16) -> float:
    """Teacher-forced top-1 accuracy of the next token over ``val`` (EOS excluded), item-token weighted."""
    hits, scored = 0.0, 0.0
    for start in range(0, len(val), batch):
        b = val.collate([val[i] for i in range(start, min(start + batch, len(val)))]).to(s1.device)
        out = s1.model(b.phones, b.phone_lens, b.tokens, b.token_lens, bert=b.bert_rows)
        n = float(b.token_lens.sum())
        hits, scored = hits + float(out.acc) * n, scored + n
    return hits / max(scored, 1.0)


def tts_scores(engine: TTSEngine, texts: dict[str, str], recordings: dict[str, np.ndarray],
               true_tokens: dict[str, int], ref_wav: str | Path, ref_text: str, lang: str = "zh",
               seed: int = 0, draws: int = LENGTH_DRAWS) -> tuple[float, float, dict[str, np.ndarray]]:
    """(mean generated/true token ratio, mean MCD-DTW in dB, id -> wav) for the held-out texts.

    S1 samples, so one generation's length is a noisy reading of where the model stops (one seed
    gave a mean ratio of 0.49, the next 0.82, for the same checkpoint): each item's ratio is the
    mean over ``draws`` generations (seeds ``seed``, ``seed + 1``, ...). The first is the one
    decoded, scored by MCD and returned."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    s2 = engine.s2
    ref = load_reference(ref_wav, s2.sample_rate)
    prompt = engine.prompt(ref, ref_text, lang)
    spec = reference_spectrogram(ref.wav, s2)
    inf = engine.s1.cfg.inference
    options = [GenerationOptions(sampling=sampling_params(inf), seed=seed + i, min_new_tokens=inf.min_new_tokens,
                                 max_tokens_per_phoneme=inf.max_tokens_per_phoneme) for i in range(draws)]
    ratios, mcds, wavs = [], [], {}
    for uid, text in texts.items():
        phones = [phonemize(text, lang, f"held-out item {uid}")]
        generated = [engine.generate(phones, prompt, opts) for opts in options]
        tf = generated[0]
        wav = decode_tokens_file(s2, tf, spec, DecodeOptions(seed=seed))
        ratios.append(mean([len(g.tokens[0]) / true_tokens[uid] for g in generated]))
        mcds.append(mcd_dtw(recordings[uid], wav, s2.sample_rate))
        wavs[uid] = wav
    return mean(ratios), mean(mcds), wavs


def _scores(s1: LoadedS1, s2: LoadedS2, ssl, dump: Path, ids: list[str], texts: dict[str, str],
            recordings: dict[str, np.ndarray], ref_wav: str | Path, ref_text: str) -> PipelineScores:
    d = s2.cfg.data
    mel = MelSpectrogram(d.sampling_rate, d.filter_length, d.hop_length, d.win_length, d.n_mel_channels,
                         d.mel_fmin, d.mel_fmax).to(s2.device)
    s2_val = S2Dataset(dump / S2_VAL_LIST, dump, d)
    examples = [s2_val[i] for i, it in enumerate(s2_val.items) if it.id in set(ids)]
    net = s2.generator
    prior = s2_resynthesis_scores(net, examples, mel, d.hop_length, "prior")
    posterior = s2_resynthesis_scores(net, examples, mel, d.hop_length, "posterior") if hasattr(net, "enc_q") \
        else None
    s1_val = S1Dataset(dump / S1_VAL_LIST, dump / SEMANTIC_JSON)
    true_tokens = {uid: s1_val.token_lens[i] for i, uid in enumerate(s1_val.ids)}
    engine = TTSEngine(s1, s2, ssl)
    ratio, mcd, wavs = tts_scores(engine, texts, recordings, true_tokens, ref_wav, ref_text)
    return PipelineScores(prior, posterior, s1_top1(s1, s1_val), ratio, mcd, wavs)


def heldout_ids(dump: Path, limit: int | None = None) -> list[str]:
    """Ids in both validation lists (S1's and S2's), sorted; at most ``limit``."""
    s1_ids = S1Dataset(dump / S1_VAL_LIST, dump / SEMANTIC_JSON).ids
    s2_ids = {it.id for it in read_s2_list(dump / S2_VAL_LIST)}
    ids = sorted(set(s1_ids) & s2_ids)
    return ids[:limit] if limit else ids


def evaluate_pipeline(s1_ckpt: str | Path, s2_ckpt: str | Path, dump: str | Path, ref_wav: str | Path,
                      ref_text: str, ssl_model: str | None = None, limit: int | None = 8,
                      device: str | torch.device = "cpu") -> HeldOutReport:
    """Every measure on the held-out items, for the checkpoints and for their untrained counterparts."""
    dump, device = Path(dump), torch.device(device)
    ids = heldout_ids(dump, limit)
    if not ids:
        raise ValueError(f"{dump}: no item is in both {S1_VAL_LIST} and {S2_VAL_LIST}; generate both lists with "
                         "the same --seed and --val-items")
    manifest = {u.id: u for u in read_manifest(dump / MANIFEST_NAME)}
    texts = {uid: manifest[uid].text for uid in ids}
    s2, s1 = load_s2(s2_ckpt, device), load_s1(s1_ckpt, device)
    recordings = {uid: load_audio(dump / WAV_DIR / f"{uid}.wav", s2.sample_rate) for uid in ids}
    ssl = load_ssl_model(ssl_model or s2.cfg.data.ssl_model, device)
    trained = _scores(s1, s2, ssl, dump, ids, texts, recordings, ref_wav, ref_text)
    untrained = _scores(untrained_s1(s1), untrained_s2(s2), ssl, dump, ids, texts, recordings, ref_wav, ref_text)
    return HeldOutReport(ids, trained, untrained)
