"""S1 inference rules: ours (models trained here) and GPT-SoVITS v1's (``gsv1``, v1 pretrained S1).

``inference.rules`` in the S1 config picks them ("ours" by default; the v1 checkpoint
converter writes "gsv1"); ``--rules`` overrides it.

``ours`` — our S1 trainer supervises the first token from the last phoneme (spec §5.5):

- every generated token is kept;
- EOS is blocked for the first ``inference.min_new_tokens`` steps (11 = 0.44 s at 25 Hz);
- prompt tokens: the reference window at the S2 rate with 0.3 s of zeros appended, HuBERT
  features from ``modules.ssl.extract_features`` (the preprocessing function: soxr to
  16 kHz, frames aligned to the spectrogram), then the S2 quantizer;
- prompt text (and every piece) without final punctuation gets "。" ("." for en); any
  Unicode punctuation counts as final;
- sampling: the checkpoint's ``inference`` section.

``gsv1`` — what GPT-SoVITS v1 does (``inference_webui.get_tts_wav`` and
``Text2SemanticDecoder.infer_panel`` at commit 3a9161c):

- v1 S1 was trained with the first semantic token as input only, never as a target, so
  its first generated token is noise: it is sampled, fed back and penalised as usual but
  DROPPED from the result (v1 returns ``idx - 1`` tokens);
- EOS is blocked at the first step only (``min_new_tokens = 1``; ``--min-new-tokens`` still wins);
- prompt tokens: the reference FILE read as ``librosa.load(path, sr=16000)`` reads it
  (channel mean, soxr HQ, length ``ceil(n · 16000 / sr)``, no clipping), 9 600 zeros
  (0.6 s at 16 kHz) appended, HuBERT ``last_hidden_state`` with no frame alignment, the S2
  quantizer (``extract_latent``);
- prompt text whose last character is not one of v1's ``splits`` (``GSV1_SPLITS``) gets
  "。" ("." for en);
- sampling: the ``gsv1`` preset (v1 WebUI: top_k 10, top_p 1, temperature 1, penalty 1.35)
  unless ``--preset`` or explicit sampling options are given.

Kept from ours under ``gsv1`` (deliberate): the per-phoneme length cap and the loop
detector (v1 only stops after 1500 steps), batched pieces, the reference window rules
(v1 refuses references outside 3-10 s), the S2 side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.audio import audio_info, load_audio
from common.config import INFERENCE_RULES
from infer.errors import InferenceError
from infer.loading import LoadedS2
from modules.ssl import SSL_SAMPLE_RATE, NonFiniteFeatures, SSLError, SSLModel

GSV1_SPLITS = frozenset("，。？！,.?!~:：—…")  # v1 inference_webui.py `splits`
GSV1_PROMPT_SILENCE = 9600  # zeros appended at 16 kHz: int(32000 * 0.3), i.e. 0.6 s (v1's rate mix-up)


@dataclass(frozen=True)
class InferenceRules:
    """What differs between the rule sets (see the module docstring).

    drop_first_token: leave the first generated token out; min_new_tokens: EOS-blocked steps
    (None: the checkpoint's ``inference.min_new_tokens``); preset: default sampling preset
    (None: the checkpoint's ``inference`` section); final_marks: characters that count as
    final punctuation of the prompt text (None: any Unicode punctuation); v1_prompt_audio:
    make prompt tokens the v1 way (``gsv1_prompt_tokens``).
    """

    name: str
    drop_first_token: bool
    min_new_tokens: int | None
    preset: str | None
    final_marks: frozenset[str] | None
    v1_prompt_audio: bool


RULES: dict[str, InferenceRules] = {
    "ours": InferenceRules("ours", drop_first_token=False, min_new_tokens=None, preset=None, final_marks=None,
                           v1_prompt_audio=False),
    "gsv1": InferenceRules("gsv1", drop_first_token=True, min_new_tokens=1, preset="gsv1", final_marks=GSV1_SPLITS,
                           v1_prompt_audio=True),
}
assert tuple(RULES) == INFERENCE_RULES

RULES_HELP = ("S1 inference rules (default: the S1 checkpoint's inference.rules; 'gsv1' for GPT-SoVITS v1 files). "
              "ours: keep every token, EOS blocked for min_new_tokens steps, prompt audio = reference at the S2 "
              "rate + 0.3 s silence through the preprocessing HuBERT path. gsv1: as GPT-SoVITS v1 — drop the "
              "first generated token (v1 S1 never learned it), EOS blocked at the first step only, prompt audio "
              "read at 16 kHz as librosa.load does + 0.6 s of zeros, no frame alignment, '。'/'.' added to a "
              "prompt text without v1 final punctuation, preset gsv1 unless --preset/--top-k/... say otherwise")


def get_rules(name: str) -> InferenceRules:
    """The rule set called ``name`` ("ours" or "gsv1")."""
    try:
        return RULES[name]
    except KeyError:
        raise InferenceError(f"unknown inference rules {name!r}; choose one of {', '.join(RULES)}") from None


def librosa_style_load(path: str | Path, sample_rate: int = SSL_SAMPLE_RATE) -> np.ndarray:
    """``path`` as ``librosa.load(path, sr=sample_rate)`` returns it: mono float32 [ceil(n · sr / sr_file)].

    Channel mean, soxr HQ resampling (librosa's default ``soxr_hq``), no clipping, and the
    length librosa's ``fix_length`` gives (soxr's output zero-padded or trimmed to it).
    Unreadable files raise ``AudioError`` naming the file.
    """
    info = audio_info(path)
    wav = load_audio(path, sample_rate, clip=False)
    if info.sample_rate == sample_rate:
        return wav
    n = math.ceil(info.frames * sample_rate / info.sample_rate)
    return np.pad(wav[:n], (0, max(0, n - len(wav))))


@torch.inference_mode()
def gsv1_prompt_tokens(wav16k: np.ndarray, ssl: SSLModel, s2: LoadedS2) -> Tensor:
    """v1 prompt tokens of a 16 kHz reference [N16]: + 9 600 zeros -> HuBERT -> S2 quantizer -> CPU LongTensor [P].

    No feature-extractor normalisation, no gain and no frame alignment (``get_tts_wav`` at v1).
    """
    if ssl.hidden_size != s2.cfg.data.ssl_dim:
        raise InferenceError(f"SSL model {ssl.source} has hidden size {ssl.hidden_size}, but the S2 checkpoint "
                             f"{s2.path} expects data.ssl_dim = {s2.cfg.data.ssl_dim}: pass the HuBERT it was "
                             "trained with (--ssl-model)")
    wav = np.concatenate([np.asarray(wav16k, dtype=np.float32), np.zeros(GSV1_PROMPT_SILENCE, dtype=np.float32)])
    if len(wav) < ssl.receptive_field:
        raise SSLError(f"too short: {len(wav)} samples at 16 kHz is less than one HuBERT frame")
    x = torch.from_numpy(wav).to(ssl.device)[None]  # [1, N16 + 9600]
    feats = ssl.model(x).last_hidden_state.transpose(1, 2).float()  # [1, D, T50]
    if not torch.isfinite(feats).all():
        raise NonFiniteFeatures("non-finite features: NaN or inf in the HuBERT output (fp32)")
    codes = s2.generator.extract_codes(feats.to(s2.device))  # [1, T50 // frames_per_token]
    return codes[0].to("cpu", torch.long)
