"""A tiny random HuBERT saved like a real one, for tests and the demo.

Same architecture family as chinese-hubert-base (group-norm conv front end with the
standard kernels (10,3,3,3,3,2,2) and strides (5,2,2,2,2,2,2): 320 samples per frame,
50 Hz at 16 kHz), but 2 transformer layers of width 64, so it loads and runs in
milliseconds. It is written with ``save_pretrained`` and must be read back through
``modules.ssl.load_ssl_model``, the real loading code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import HubertConfig, HubertModel
from transformers.utils import logging as hf_logging


def tiny_hubert_config(hidden_size: int = 64) -> HubertConfig:
    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(32,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=False,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        vocab_size=32,
    )


def make_tiny_hubert(path: Path, hidden_size: int = 64, seed: int = 0, nan_weights: bool = False) -> Path:
    """Build a seeded random ``HubertModel`` and ``save_pretrained`` it into ``path``; return ``path``.

    ``nan_weights`` fills the final layer norm with NaN, for testing the non-finite guards.
    """
    path = Path(path)
    torch.manual_seed(seed)
    model = HubertModel(tiny_hubert_config(hidden_size))
    if nan_weights:
        with torch.no_grad():
            model.encoder.layers[-1].final_layer_norm.weight.fill_(float("nan"))
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    return path
