"""MRTE: content frames attend over phonemes, plus a global style vector.

``out = c_post((CrossAttn(q, kv) + q + ge) · mask)`` with ``q = c_pre(content)`` and
``kv = text_pre(text)``; plain multi-head attention (no relative positions, no dropout).
"""

from __future__ import annotations

from torch import Tensor, nn

from modules.attentions import MultiHeadAttention


class MRTE(nn.Module):
    def __init__(self, content_channels: int = 192, hidden_channels: int = 512, out_channels: int = 192,
                 n_heads: int = 4):
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden_channels, hidden_channels, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden_channels, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden_channels, 1)
        self.c_post = nn.Conv1d(hidden_channels, out_channels, 1)

    def forward(self, content: Tensor, content_mask: Tensor, text: Tensor, text_mask: Tensor,
                ge: Tensor | None) -> Tensor:
        """content: [B, C, T]; content_mask: [B, 1, T]; text: [B, C, L]; text_mask: [B, 1, L];
        ge: [B, hidden, 1] style (None = no style) -> [B, out, T]."""
        attn_mask = text_mask.unsqueeze(2) * content_mask.unsqueeze(-1)  # [B, 1, T, L]
        q = self.c_pre(content * content_mask)  # [B, hidden, T]
        kv = self.text_pre(text * text_mask)  # [B, hidden, L]
        x = self.cross_attention(q * content_mask, kv * text_mask, attn_mask) + q
        if ge is not None:
            x = x + ge
        return self.c_post(x * content_mask)
