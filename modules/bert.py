"""BERT word features for S1 (spec §5.6, GPT-SoVITS v1): loading, per-utterance features, feature files.

Convention (the same for training data and inference):

- Model: a masked-LM model (``AutoModelForMaskedLM`` + its tokenizer, e.g.
  ``hfl/chinese-roberta-wwm-ext-large``), from a local ``save_pretrained`` folder or a hub id
  (``modules.pretrained``), in eval mode, fp32, on an explicit device.
- Text: each ``zh`` part of a ``G2PResult`` (``text.result.TextPart``) is encoded on its own,
  from the part's ``norm_text``. Every character must be exactly one tokenizer token (offsets
  ``(i, i+1)`` where the tokenizer reports them), else ``BertAlignmentError`` naming the text.
- Feature: ``hidden_states[-3]`` (the output of layer n-2 of n), ``[CLS]``/``[SEP]`` dropped →
  one row per character, repeated ``word2ph[i]`` times → the part's phones. Every other part
  (``en``, ``ja``, English runs inside Chinese text) is zeros. Result ``[D, L]``, ``L`` = number of
  phones of the whole utterance, fp32 on the model's device.
- Batching: texts are sorted by length and run in padded batches with an attention mask
  (padding changes a row only at float rounding level); one text is one unpadded call, exactly
  as GPT-SoVITS's ``get_bert_feature`` computes it.
- Files: ``dump/bert/<id>.pt``, fp16 ``[D, L]`` (``save_bert_features`` / ``load_bert_features``).

``bert_features(bert, result)`` is the plain one-utterance function (parity checks use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from common.tensor_file import NonFiniteTensor, TensorFileError, load_fp16, save_fp16
from modules.pretrained import ModelKind, load_pretrained
from text.result import G2PResult

BERT_DIR = "bert"  # dump/bert/<id>.pt: fp16 [bert_dim, n_phones]
HIDDEN_LAYER = -3  # hidden_states index: output of layer n-2 (GPT-SoVITS v1)
BERT_KIND = ModelKind(role="BERT", arch="masked-LM (BERT)", option="--bert-model")
DEFAULT_MAX_BATCH_TOKENS = 4096


class BertError(RuntimeError):
    """The BERT model cannot be loaded, or gave no usable features."""


class BertAlignmentError(BertError):
    """A text whose characters do not map one-to-one onto tokenizer tokens (or onto word2ph)."""


class NonFiniteBertFeatures(BertError):
    """NaN or inf in the features (or values beyond fp16 storage)."""


@dataclass
class LoadedBert:
    model: Any = field(repr=False)  # transformers masked-LM model, eval mode, fp32
    tokenizer: Any = field(repr=False)
    device: torch.device
    hidden_size: int  # feature dimension D
    max_positions: int  # the model's position table (512 for BERT): at most this - 2 characters per text
    source: str  # the directory or hub id it was loaded from


def load_bert_model(name_or_path: str, device: str | torch.device = "cpu") -> LoadedBert:
    """Load a masked-LM model and its tokenizer from a local directory or a hub id (see ``modules.pretrained``)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer  # seconds to import: only when needed

    def load(src: str, **kw: Any) -> tuple[Any, Any, dict]:
        tokenizer = AutoTokenizer.from_pretrained(src, **kw)
        model, info = AutoModelForMaskedLM.from_pretrained(src, output_loading_info=True, **kw)
        return tokenizer, model, info

    if not name_or_path:
        raise BertError("no BERT model given: set data.bert_model in the S1 config or pass --bert-model")
    device = torch.device(device)
    (tokenizer, model, info), source = load_pretrained(load, name_or_path, BERT_KIND, BertError)
    base_prefix = f"{model.base_model_prefix}."
    missing = sorted(k for k in info.get("missing_keys", ()) if k.startswith(base_prefix))
    if missing:  # the masked-LM head is never used; the encoder must be complete
        raise BertError(f"{source}: checkpoint does not fit {type(model).__name__}; {len(missing)} encoder weight(s) "
                        f"missing (would be random): {', '.join(missing[:5])}")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise BertError(f"{source}: the tokenizer has no [CLS]/[SEP] tokens; expected a BERT-style tokenizer")
    cfg = model.config
    n_layers = int(getattr(cfg, "num_hidden_layers", 0))
    if n_layers + 1 < -HIDDEN_LAYER:  # hidden_states holds the embeddings plus one output per layer
        raise BertError(f"{source}: {n_layers} layer(s); the features are hidden_states[{HIDDEN_LAYER}], "
                        f"which needs a model of at least {-HIDDEN_LAYER - 1} layers")
    model.float().eval().to(device)
    return LoadedBert(model=model, tokenizer=tokenizer, device=device, hidden_size=int(cfg.hidden_size),
                      max_positions=int(getattr(cfg, "max_position_embeddings", 512)), source=source)


def token_ids(bert: LoadedBert, text: str) -> list[int]:
    """``[CLS] + one token per character + [SEP]``; ``BertAlignmentError`` naming ``text`` otherwise."""
    tok = bert.tokenizer
    fast = bool(getattr(tok, "is_fast", False))
    enc = tok(text, return_offsets_mapping=fast)
    ids = list(enc["input_ids"])
    n = len(text)
    inner = ids[1:-1]
    offsets = [tuple(o) for o in enc["offset_mapping"][1:-1]] if fast else None
    ok = (len(ids) >= 2 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and len(inner) == n
          and (offsets is None or offsets == [(i, i + 1) for i in range(n)]))
    if not ok:
        pieces = tok.convert_ids_to_tokens(inner)
        raise BertAlignmentError(f"text {text!r}: its {n} characters do not line up with the BERT tokenizer's "
                                 f"{len(inner)} tokens {pieces[:12]}{'...' if len(pieces) > 12 else ''} (each "
                                 "character must be exactly one token)")
    if len(ids) > bert.max_positions:
        raise BertError(f"text {text!r}: {n} characters, more than the {bert.max_positions - 2} the BERT model "
                        "can encode at once")
    return ids


@torch.no_grad()
def char_features(bert: LoadedBert, texts: Sequence[str],
                  max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> list[Tensor]:
    """``hidden_states[-3]`` per character of each text: ``[len(text), D]`` fp32 on ``bert.device``.

    Texts are tokenized first (all alignment errors before any model call), then run longest
    first in padded batches of at most ``max_batch_tokens`` tokens (padding included).
    """
    ids = [token_ids(bert, t) for t in texts]
    out: list[Tensor | None] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    pad_id = bert.tokenizer.pad_token_id or 0
    start = 0
    while start < len(order):
        width = len(ids[order[start]])  # the longest of this batch
        size = max(1, min(len(order) - start, max_batch_tokens // width))
        batch = order[start:start + size]
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, i in enumerate(batch):
            input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
            mask[row, :len(ids[i])] = 1
        hidden = bert.model.base_model(input_ids=input_ids.to(bert.device), attention_mask=mask.to(bert.device),
                                       token_type_ids=torch.zeros_like(input_ids).to(bert.device),
                                       output_hidden_states=True).hidden_states[HIDDEN_LAYER]  # [B, S, D]
        for row, i in enumerate(batch):
            feats = hidden[row, 1:len(ids[i]) - 1].float()  # [n_chars, D]: [CLS] and [SEP] dropped
            if not torch.isfinite(feats).all():
                raise NonFiniteBertFeatures(f"text {texts[i]!r}: NaN or inf in the BERT features")
            out[i] = feats
        start += size
    return [t for t in out if t is not None]  # every slot is filled


def zh_texts(result: G2PResult) -> list[str]:
    """The texts BERT encodes for ``result``: the ``norm_text`` of each Chinese part with phones."""
    return [p.norm_text for p in result.parts if p.lang == "zh" and p.n_phones]


def expand_to_phones(result: G2PResult, chars: Sequence[Tensor], dim: int,
                     device: str | torch.device = "cpu") -> Tensor:
    """Phone-level features ``[dim, L]``: ``chars[k]`` (``[n_chars, dim]``, the k-th text of ``zh_texts``)
    repeated by its part's ``word2ph``; zeros on every other part."""
    out = torch.zeros(dim, len(result.phones), device=device)
    zh = [p for p in result.parts if p.lang == "zh" and p.n_phones]
    if len(zh) != len(chars):
        raise ValueError(f"{len(zh)} Chinese part(s) in {result.norm_text!r} but {len(chars)} feature block(s)")
    for part, feats in zip(zh, chars):
        if len(part.word2ph) != len(part.norm_text) or feats.shape != (len(part.norm_text), dim):
            raise BertAlignmentError(f"text {part.norm_text!r}: {len(part.norm_text)} characters, "
                                     f"{len(part.word2ph)} word2ph entries and {feats.shape[0]} feature rows of "
                                     f"width {feats.shape[-1]} (expected one per character, width {dim})")
        repeats = torch.tensor(part.word2ph, device=feats.device)
        out[:, part.start:part.end] = feats.repeat_interleave(repeats, dim=0).T.to(out.device)  # [dim, n_phones]
    return out


def bert_features(bert: LoadedBert, result: G2PResult) -> Tensor:
    """BERT features of one utterance: ``[D, L]`` fp32 on ``bert.device`` (each Chinese part one
    unpadded model call; see the module docstring)."""
    chars = [char_features(bert, [text])[0] for text in zh_texts(result)]
    return expand_to_phones(result, chars, bert.hidden_size, bert.device)


def bert_features_batch(bert: LoadedBert, results: Sequence[G2PResult],
                        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> list[Tensor]:
    """``bert_features`` of several utterances, their Chinese parts run in padded batches."""
    texts = [zh_texts(r) for r in results]
    flat = char_features(bert, [t for ts in texts for t in ts], max_batch_tokens)
    out, k = [], 0
    for r, ts in zip(results, texts):
        out.append(expand_to_phones(r, flat[k:k + len(ts)], bert.hidden_size, bert.device))
        k += len(ts)
    return out


# ----------------------------------------------------------------------------- files


def bert_path(dump: str | Path, uid: str) -> Path:
    """Where the BERT features of utterance ``uid`` live in the dump directory."""
    return Path(dump) / BERT_DIR / f"{uid}.pt"


def save_bert_features(path: str | Path, feats: Tensor) -> Tensor:
    """Write ``feats`` [D, L] as fp16, atomically; ``NonFiniteBertFeatures`` if they do not fit fp16."""
    try:
        return save_fp16(path, feats)
    except NonFiniteTensor as err:
        raise NonFiniteBertFeatures(str(err)) from None


def load_bert_features(path: str | Path, mmap: bool = False) -> Tensor:
    """Read a BERT features file: fp16 [D, L]; ``BertError`` naming the file if missing or malformed."""
    try:
        return load_fp16(path, mmap)
    except TensorFileError as err:
        raise BertError(str(err)) from err
