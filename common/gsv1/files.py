"""GPT-SoVITS v1 files <-> our ``Checkpoint``: detection by content, conversion both ways.

v1 layouts (ARCHITECTURE §9), all read with ``common.safe_load``:

- S2 generator (``s2G488k.pth``, WebUI exports): ``{"weight": state_dict (fp16, v1 names),
  "config": GS HParams or dict, "info": "{epoch}epoch_{step}iteration"}``; exports leave out
  every ``enc_q`` key (the posterior encoder, used only in training);
- S2 discriminator (``s2D488k.pth``): ``{"weight": MultiPeriodDiscriminator.state_dict()}``;
- S1 (``s1bert25hz-...ckpt``, WebUI exports): ``{"weight": state_dict (fp16, "model." prefix),
  "config": dict (the YAML), "info": "GPT-e{epoch}"}``.

Reading casts every floating tensor to fp32. Writing (``v1_files``) produces exactly these
layouts, fp16 by default, with the config as a plain dict (no pickled class) that also holds
our own config, so that ours -> v1 -> ours gives back the same checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from common.checkpoint import Checkpoint, CheckpointError
from common.config import ConfigError, S1Config, S2Config, from_dict, to_dict
from common.gsv1.configs import (
    V1_N_SYMBOLS,
    discriminator_config,
    s1_config_from_v1,
    s2_config_from_v1,
    v1_mismatches_s1,
    v1_mismatches_s2,
    v1_s1_config,
    v1_s2_config,
)
from common.gsv1.keys import KeyMapError, cast_floats, s1_to_ours, s1_to_v1, s2_to_ours, s2_to_v1
from text.symbols import SYMBOLS, SYMBOLS_MD5

V1_S1, V1_S2G, V1_S2D = "gsv1-s1", "gsv1-s2-generator", "gsv1-s2-discriminator"
EXTRA_KEY = "ar_vits_extra"  # our S1 checkpoint's step and token facts inside a v1 config
ENC_Q = "enc_q."  # the posterior encoder: absent from v1 exports, needed only for training


def detect_v1(raw: Any) -> str | None:
    """Which v1 file ``raw`` (a loaded torch file) is, judged by its weight names; None if not v1."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("weight"), Mapping):
        return None
    keys = raw["weight"].keys()
    if "model.ar_predict_layer.weight" in keys:
        return V1_S1
    if "enc_p.text_embedding.weight" in keys:
        return V1_S2G
    if any(str(k).startswith("discriminators.") for k in keys):
        return V1_S2D
    return None


def _info_numbers(info: Any) -> tuple[int, int]:
    """(step, epoch) from a v1 ``info`` string ("8epoch_1234iteration", "GPT-e15"); zeros if absent."""
    text = str(info or "")
    if m := re.fullmatch(r"(\d+)epoch_(\d+)iteration", text):
        return int(m.group(2)), int(m.group(1))
    if m := re.fullmatch(r"GPT-e(\d+)", text):
        return 0, int(m.group(1))
    return 0, 0


def _tensors(raw: Mapping, source: str) -> dict[str, Tensor]:
    weight = raw["weight"]
    bad = [k for k, v in weight.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source}: 'weight' holds non-tensor values ({', '.join(map(str, bad[:4]))})")
    return cast_floats(weight, torch.float32)


def checkpoint_from_v1(raw: Mapping, path: str | Path, kind: str) -> Checkpoint:
    """Our ``Checkpoint`` (fp32, our names, derived config) for a loaded v1 S1 or S2-generator file."""
    source = str(path)
    if len(SYMBOLS) != V1_N_SYMBOLS:
        raise CheckpointError(f"{source}: a GPT-SoVITS v1 file needs v1's {V1_N_SYMBOLS}-symbol phoneme table, but "
                              f"this code's has {len(SYMBOLS)}")
    config = raw.get("config") if isinstance(raw.get("config"), Mapping) else {}
    weight = _tensors(raw, source)
    step, epoch = _info_numbers(raw.get("info"))
    extra: dict = {"source": {"format": kind, "file": source, "info": str(raw.get("info", ""))}}
    try:
        if kind == V1_S2G:
            cfg = s2_config_from_v1(config, weight, source)
            models = {"generator": s2_to_ours(weight)}
            if not any(k.startswith(ENC_Q) for k in weight):
                extra["without_enc_q"] = True
            stage = "s2"
        elif kind == V1_S1:
            cfg = s1_config_from_v1(config, weight, source)
            if cfg.model.bert_dim == 0 and "model.bert_proj.weight" in weight:
                weight = _drop_zero_bert(weight, source)
            models = {"model": s1_to_ours(weight, source)}
            ours = config.get(EXTRA_KEY)
            if isinstance(ours, Mapping):  # written by AR-VITS: its step and token facts
                step = int(ours.get("step", step))
                extra.update({k: v for k, v in ours.items() if k != "step"})
            else:  # GPT-SoVITS v1 S1 models are trained on 25 Hz tokens of the v1 codebook
                extra["semantic"] = {"token_rate": 25.0, "codebook_size": cfg.model.codebook_size,
                                     "eos_id": cfg.model.eos_id, "semantic_frame_rate": "25hz"}
            stage = "s1"
        else:
            raise CheckpointError(f"{source}: this is a GPT-SoVITS v1 discriminator (only D weights); pass it "
                                  "to train_s2.py with --init-d, together with the generator in --init")
    except (KeyMapError, ConfigError) as err:
        raise CheckpointError(str(err)) from None
    return Checkpoint(stage=stage, step=step, epoch=epoch, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                      models=models, extra=extra, path=Path(path))


def _drop_zero_bert(weight: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """A model without BERT input written in v1 layout carries a zero ``bert_proj``: drop it."""
    if bool(weight["model.bert_proj.weight"].any()) or bool(weight["model.bert_proj.bias"].any()):
        raise KeyMapError(f"{source}: config says model.bert_dim 0 but model.bert_proj is not zero")
    return {k: v for k, v in weight.items() if not k.startswith("model.bert_proj.")}


def discriminator_from_v1(raw: Mapping, path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(our discriminator state dict in fp32, its ``disc_*`` config values) of a loaded v1 D file."""
    weight = _tensors(raw, str(path))
    try:
        return s2_to_ours(weight), discriminator_config(weight, str(path))
    except KeyMapError as err:
        raise CheckpointError(str(err)) from None


# ----------------------------------------------------------------------------- writing


def _half(state: Mapping[str, Tensor], fp16: bool) -> dict[str, Tensor]:
    return cast_floats(state, torch.float16) if fp16 else {k: v.clone() for k, v in state.items()}


def v1_files(ckpt: Checkpoint, fp16: bool = True, enc_q: bool = True,
             check_v1_shapes: bool = True) -> dict[str, dict]:
    """The v1 file payloads of one of our checkpoints: ``{"s1": ...}`` or ``{"s2g": ..., "s2d": ...}``.

    ``fp16`` casts floating tensors to half (what GPT-SoVITS writes; ``False`` keeps fp32 and
    makes the round trip exact). ``enc_q=False`` leaves out the posterior encoder like the
    WebUI's exports. ``check_v1_shapes`` refuses models that GPT-SoVITS v1's classes cannot
    build (its loaders would fail); without it the v1 layout is written anyway (readable by
    AR-VITS only).
    """
    source = str(ckpt.path or "checkpoint")
    if ckpt.symbols_md5 != SYMBOLS_MD5:
        raise CheckpointError(f"{source}: trained with another phoneme table; v1 files need GPT-SoVITS v1's")
    if ckpt.stage == "s1":
        cfg = from_dict(S1Config, ckpt.config, where=f"{source} config")
        problems = v1_mismatches_s1(cfg)
        _refuse(problems, check_v1_shapes, source)
        state = dict(ckpt.models["model"])
        if cfg.model.bert_dim == 0:  # v1 always has bert_proj; a zero one adds nothing to the input
            dim = cfg.model.embedding_dim
            state["bert_proj.weight"] = torch.zeros(dim, 1024, dtype=state["head.weight"].dtype)
            state["bert_proj.bias"] = torch.zeros(dim, dtype=state["head.weight"].dtype)
        config = v1_s1_config(cfg)
        config[EXTRA_KEY] = {"step": ckpt.step, **{k: v for k, v in ckpt.extra.items() if k == "semantic"}}
        return {"s1": {"weight": _half(s1_to_v1(state, source), fp16), "config": config,
                       "info": f"GPT-e{ckpt.epoch}"}}
    cfg = from_dict(S2Config, ckpt.config, where=f"{source} config")
    gen = ckpt.models.get("generator")
    if gen is None:
        raise CheckpointError(f"{source}: no generator weights in this S2 checkpoint")
    _refuse(v1_mismatches_s2(cfg, len(SYMBOLS)), check_v1_shapes, source)
    gen = {k: v for k, v in gen.items() if enc_q or not k.startswith(ENC_Q)}
    out = {"s2g": {"weight": _half(s2_to_v1(gen), fp16), "config": v1_s2_config(cfg),
                   "info": f"{ckpt.epoch}epoch_{ckpt.step}iteration"}}
    if "discriminator" in ckpt.models:
        out["s2d"] = {"weight": _half(s2_to_v1(ckpt.models["discriminator"]), fp16)}
    return out


def _refuse(problems: list[str], check: bool, source: str) -> None:
    if problems and check:
        raise CheckpointError(f"{source}: GPT-SoVITS v1 cannot build this model ({'; '.join(problems)}); "
                              "pass --any-shape to write the v1 layout anyway (then only AR-VITS can read it)")

