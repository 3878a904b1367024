"""A tiny random BERT masked-LM saved like a real one (chinese-roberta-wwm-ext-large layout), for tests.

Same architecture family as ``hfl/chinese-roberta-wwm-ext-large`` (``BertForMaskedLM`` with a
WordPiece ``BertTokenizer`` that splits every CJK character into its own token), but 4 layers
of width 32, so it loads and runs in milliseconds. The vocabulary (``vocab.txt``) holds the
special tokens, the punctuation of the text frontend and every character of the synthetic
corpus and of ``EXTRA_TEXT``; other characters become ``[UNK]`` (still one token each). It is
written with ``save_pretrained`` and must be read back through ``modules.bert.load_bert_model``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizer
from transformers.utils import logging as hf_logging

from tests.corpus import ZH_SENTENCES

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = "!?…,.-"
EXTRA_TEXT = "我喜欢用写代码参考音频的文字你呢要合成句子第一二三四五六七八九十零百千万个点半"


def vocabulary() -> list[str]:
    chars = sorted({ch for text in (*ZH_SENTENCES, EXTRA_TEXT) for ch in text if "\u4e00" <= ch <= "\u9fa5"})
    return SPECIAL + list(PUNCTUATION) + chars


def make_tiny_bert(path: Path, hidden_size: int = 32, n_layers: int = 4, seed: int = 0) -> Path:
    """Build a seeded random ``BertForMaskedLM`` + tokenizer and ``save_pretrained`` both into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(vocabulary()), hidden_size=hidden_size, num_hidden_layers=n_layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=256,
    ))
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    return path
