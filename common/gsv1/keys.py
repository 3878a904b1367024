"""State-dict names of GPT-SoVITS v1 <-> ours, both ways (renames only: values are untouched).

S1 (v1 ``Text2SemanticLightningModule.state_dict()``, every key under ``model.``)::

    model.ar_text_embedding.word_embeddings.weight   <-> phone_embedding.weight
    model.bert_proj.{weight,bias}                    <-> bert_proj.{weight,bias}
    model.ar_text_position.alpha                     <-> phone_position.alpha
    model.ar_audio_embedding.word_embeddings.weight  <-> token_embedding.weight
    model.ar_audio_position.alpha                    <-> token_position.alpha
    model.h.layers.N.self_attn.in_proj_{weight,bias} <-> transformer.layers.N.self_attn.in_proj.{weight,bias}
    model.h.layers.N.{self_attn.out_proj,linear1,linear2,norm1,norm2}.{weight,bias}
                                                     <-> transformer.layers.N.(same)
    model.ar_predict_layer.weight                    <-> head.weight

S2 generator and discriminator (same module paths on both sides)::

    quantizer.vq.layers.0._codebook.{inited,cluster_size,embed,embed_avg} <-> quantizer.(same)
    X.weight_g / X.weight_v (legacy weight norm) <-> X.parametrizations.weight.original0 / original1

A ``weight_v`` without its ``weight_g`` (legacy spectral norm: ``weight_orig``, ``weight_u``,
``weight_v``) keeps its name. A key no rule knows is reported, never passed through silently
(S1); S2 names outside the renames are the same on both sides and are checked against the
model's own keys by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

_LAYER_REST = r"(?:self_attn\.out_proj|linear1|linear2|norm1|norm2)\.(?:weight|bias)"
# (v1 name, our name); {N} is a layer index, {R} the rest of a layer key.
_S1_RULES = [
    ("model.ar_text_embedding.word_embeddings.weight", "phone_embedding.weight"),
    ("model.bert_proj.weight", "bert_proj.weight"),
    ("model.bert_proj.bias", "bert_proj.bias"),
    ("model.ar_text_position.alpha", "phone_position.alpha"),
    ("model.ar_audio_embedding.word_embeddings.weight", "token_embedding.weight"),
    ("model.ar_audio_position.alpha", "token_position.alpha"),
    ("model.h.layers.{N}.self_attn.in_proj_weight", "transformer.layers.{N}.self_attn.in_proj.weight"),
    ("model.h.layers.{N}.self_attn.in_proj_bias", "transformer.layers.{N}.self_attn.in_proj.bias"),
    ("model.h.layers.{N}.{R}", "transformer.layers.{N}.{R}"),
    ("model.ar_predict_layer.weight", "head.weight"),
]
_CODEBOOK_V1 = "quantizer.vq.layers.0._codebook."
_CODEBOOK_OURS = "quantizer."
_CODEBOOK_BUFFERS = ("inited", "cluster_size", "embed", "embed_avg")
_PARAM_G = ".parametrizations.weight.original0"
_PARAM_V = ".parametrizations.weight.original1"


class KeyMapError(ValueError):
    """A state dict does not have the names (or shapes) it must have; the message lists them."""


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{N\}", r"(?P<N>\d+)").replace(r"\{R\}", f"(?P<R>{_LAYER_REST})")
    return re.compile(pattern)


_S1_TO_OURS = [(_compile(v1), ours) for v1, ours in _S1_RULES]
_S1_TO_V1 = [(_compile(ours), v1) for v1, ours in _S1_RULES]


def _rename(state: Mapping[str, Tensor], rules: list[tuple[re.Pattern, str]], source: str,
            what: str) -> dict[str, Tensor]:
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, target in rules:
            m = pattern.fullmatch(key)
            if m:
                out[target.format(**m.groupdict())] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyMapError(f"{source}: {len(unknown)} key(s) that no {what} name maps to: {', '.join(unknown[:6])}")
    return out


def s1_to_ours(state: Mapping[str, Tensor], source: str = "S1 weights") -> dict[str, Tensor]:
    """v1 S1 ``weight`` dict -> our ``Text2Semantic`` names."""
    return _rename(state, _S1_TO_OURS, source, "AR-VITS S1")


def s1_to_v1(state: Mapping[str, Tensor], source: str = "S1 weights") -> dict[str, Tensor]:
    """Our ``Text2Semantic`` state dict -> v1 S1 ``weight`` names (``model.`` prefix)."""
    return _rename(state, _S1_TO_V1, source, "GPT-SoVITS v1 S1")


def s2_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """v1 S2 generator or discriminator names -> ours (codebook path, weight-norm parametrizations)."""
    out = {}
    for key, value in state.items():
        if key.startswith(_CODEBOOK_V1):
            key = _CODEBOOK_OURS + key[len(_CODEBOOK_V1):]
        elif key.endswith(".weight_g") and key[:-2] + "_v" in state:
            key = key[: -len(".weight_g")] + _PARAM_G
        elif key.endswith(".weight_v") and key[:-2] + "_g" in state:
            key = key[: -len(".weight_v")] + _PARAM_V
        out[key] = value
    return out


def s2_to_v1(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our S2 generator or discriminator state dict -> v1 names."""
    out = {}
    for key, value in state.items():
        if key.startswith(_CODEBOOK_OURS) and key[len(_CODEBOOK_OURS):] in _CODEBOOK_BUFFERS:
            key = _CODEBOOK_V1 + key[len(_CODEBOOK_OURS):]
        elif key.endswith(_PARAM_G):
            key = key[: -len(_PARAM_G)] + ".weight_g"
        elif key.endswith(_PARAM_V):
            key = key[: -len(_PARAM_V)] + ".weight_v"
        out[key] = value
    return out


def check_keys(state: Mapping[str, Tensor], expected: Mapping[str, torch.Size | tuple], source: str,
               optional: Iterable[str] = ()) -> None:
    """Exact key and shape equality of ``state`` with ``expected`` (name -> shape), else ``KeyMapError``.

    Keys of ``expected`` that start with one of the ``optional`` prefixes may be missing.
    """
    optional = tuple(optional)
    missing = [k for k in expected if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k])})" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:6])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected[:6])}")
    if shapes:
        problems.append(f"{len(shapes)} of another shape: {'; '.join(shapes[:4])}")
    if problems:
        raise KeyMapError(f"{source}: the weights do not fit the model derived from the file ({' | '.join(problems)})")


def cast_floats(state: Mapping[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
    """Floating-point tensors cast to ``dtype`` (a new dict; other tensors kept as they are)."""
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
