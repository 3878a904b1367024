"""GPT-SoVITS v1-format test files, built at test time (no GPT-SoVITS code, no network).

- ``manifest()``: the committed key/shape facts of the real v1 files
  (``common/gsv1/v1_manifest.json``, generated from GPT-SoVITS's own classes);
- ``full_size_raw(name)``: a file payload with exactly the manifest's keys and shapes (full
  size, meta tensors);
- ``write_small_s2`` / ``write_small_s1`` / ``write_small_d``: small files in the v1 layout
  (v1 key names and top-level layout, a GPT-SoVITS-style config with no AR-VITS section,
  fp16 or fp32, with or without ``enc_q``, the S2 config pickled as GPT-SoVITS's
  ``utils.HParams`` or as a dict). Their names come from our models through the v1
  renames; ``assert_v1_names`` checks every name against the manifest's patterns, so a
  small file has only names a real v1 file has.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch

from common.config import S1Config, S2Config
from common.gsv1.configs import OURS_KEY, v1_s1_config, v1_s2_config
from common.gsv1.keys import s1_to_v1, s2_to_v1

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "common/gsv1/v1_manifest.json"
S2G, S2D, S1 = "s2G488k.pth", "s2D488k.pth", "s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt"


def manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["files"]


def pattern(key: str) -> str:
    """A key with its numeric path parts replaced by N (``dec.ups.3.bias`` -> ``dec.ups.N.bias``)."""
    return re.sub(r"(?<=\.)\d+(?=\.)", "N", key)


def assert_v1_names(state: dict, name: str) -> None:
    known = {pattern(k) for k in manifest()[name]["keys"]}
    foreign = [k for k in state if pattern(k) not in known]
    assert not foreign, f"names a real {name} does not have: {foreign[:5]}"


def full_size_raw(name: str, dtype: torch.dtype = torch.float16) -> dict:
    """A payload of the real file ``name`` with exactly the manifest's keys and shapes, as meta tensors
    (shapes without memory: enough for every name, shape and config check, not for running)."""
    entry = manifest()[name]
    raw: dict = {"weight": {k: torch.empty(shape, dtype=dtype, device="meta") for k, shape in entry["keys"].items()}}
    if "config" in entry["top_level"]:
        raw["config"] = entry["config"]
    if "info" in entry["top_level"]:
        raw["info"] = "GPT-e68" if name == S1 else "0epoch_488000iteration"
    return raw


@contextlib.contextmanager
def gs_hparams_class() -> Iterator[type]:
    """A class named ``utils.HParams`` (GPT-SoVITS's config class) importable while the block runs."""
    module = types.ModuleType("utils")

    class HParams:
        def __init__(self, **kwargs):
            for k, v in kwargs.items():
                setattr(self, k, HParams(**v) if isinstance(v, dict) else v)

    HParams.__module__ = "utils"
    HParams.__qualname__ = "HParams"
    module.HParams = HParams
    saved = sys.modules.get("utils")
    sys.modules["utils"] = module
    try:
        yield HParams
    finally:
        if saved is None:
            sys.modules.pop("utils", None)
        else:
            sys.modules["utils"] = saved


def _cast(state: dict, dtype: torch.dtype) -> dict:
    return {k: v.detach().to(dtype) if v.is_floating_point() else v.detach() for k, v in state.items()}


def write_small_s2(path: Path, cfg: S2Config, generator: torch.nn.Module, *, dtype: torch.dtype = torch.float16,
                   enc_q: bool = True, hparams: bool = True, info: str = "8epoch_96iteration") -> Path:
    """``generator`` (ours) saved as a v1 SoVITS file: v1 names, GS-style config, no AR-VITS section."""
    state = s2_to_v1(generator.state_dict())
    if not enc_q:
        state = {k: v for k, v in state.items() if not k.startswith("enc_q.")}
    assert_v1_names(state, S2G)
    config = v1_s2_config(cfg)
    del config[OURS_KEY]
    payload = {"weight": _cast(state, dtype), "info": info}
    if hparams:
        with gs_hparams_class() as hp:
            payload["config"] = hp(**config)
            torch.save(payload, path)
    else:
        payload["config"] = config
        torch.save(payload, path)
    return path


def write_small_d(path: Path, disc: torch.nn.Module, dtype: torch.dtype = torch.float32) -> Path:
    state = s2_to_v1(disc.state_dict())
    assert_v1_names(state, S2D)
    torch.save({"weight": _cast(state, dtype)}, path)
    return path


def write_small_s1(path: Path, cfg: S1Config, model: torch.nn.Module, *, dtype: torch.dtype = torch.float16,
                   info: str = "GPT-e15") -> Path:
    """``model`` (ours, with a ``bert_proj``) saved as a v1 GPT file: ``model.`` names, the YAML-style config."""
    state = s1_to_v1(model.state_dict())
    assert_v1_names(state, S1)
    config = v1_s1_config(cfg)
    del config[OURS_KEY]
    torch.save({"weight": _cast(state, dtype), "config": config, "info": info}, path)
    return path
