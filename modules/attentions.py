"""VITS transformer encoder: relative-position multi-head attention, conv FFN, post-LN.

Conv side throughout: activations ``[B, C, T]``, masks ``[B, 1, T]`` (float, 1 = real),
attention masks ``[B, 1, T_q, T_k]``. Masked attention scores are filled with -1e4 (not
-inf), as in the original models, so fully padded query rows stay finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.commons import pad_same

MASK_VALUE = -1e4


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, T]`` (parameters ``gamma``, ``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, T] -> [B, C, T]."""
        y = F.layer_norm(x.transpose(1, 2), (x.size(1),), self.gamma, self.beta, self.eps)
        return y.transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with 1x1 conv projections and optional relative positions.

    With ``window_size = w`` (self-attention only) learned embeddings ``emb_rel_k`` and
    ``emb_rel_v`` of shape ``[1 or H, 2w+1, d_k]`` add a logit ``q_i · e_k[j-i]`` and a value
    ``Σ_j p_ij e_v[j-i]`` for every pair with ``|j - i| <= w``; farther pairs get nothing.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_heads: int,
        p_dropout: float = 0.0,
        window_size: int | None = None,
        heads_share: bool = True,
    ):
        super().__init__()
        if channels % n_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            rel_heads = 1 if heads_share else n_heads
            std = self.k_channels**-0.5
            self.emb_rel_k = nn.Parameter(torch.randn(rel_heads, 2 * window_size + 1, self.k_channels) * std)
            self.emb_rel_v = nn.Parameter(torch.randn(rel_heads, 2 * window_size + 1, self.k_channels) * std)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: Tensor, c: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x: queries [B, C, T]; c: keys/values [B, C, S]; attn_mask: [B, 1, T, S] -> [B, C_out, T]."""
        b, _, t = x.shape
        s = c.size(2)
        h, d = self.n_heads, self.k_channels
        q = self.conv_q(x).view(b, h, d, t).transpose(2, 3)  # [B, H, T, d]
        k = self.conv_k(c).view(b, h, d, s).transpose(2, 3)  # [B, H, S, d]
        v = self.conv_v(c).view(b, h, d, s).transpose(2, 3)  # [B, H, S, d]
        q = q / math.sqrt(d)
        scores = q @ k.transpose(2, 3)  # [B, H, T, S]
        if self.window_size is not None:
            if t != s:
                raise ValueError(f"relative attention needs self-attention, got {t} queries and {s} keys")
            rel_index, rel_valid = self._relative_layout(t, x.device)
            rel_logits = q @ self.emb_rel_k.transpose(1, 2)  # [B, H, T, 2w+1]
            rel_logits = torch.gather(rel_logits, 3, rel_index.expand(b, h, -1, -1))  # [B, H, T, T]
            scores = scores + rel_logits * rel_valid.to(rel_logits.dtype)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, MASK_VALUE)
        p = self.drop(torch.softmax(scores, dim=-1))  # [B, H, T, S]
        out = p @ v  # [B, H, T, d]
        if self.window_size is not None:
            out = out + self._relative_values(p) @ self.emb_rel_v  # [B, H, T, d]
        out = out.transpose(2, 3).reshape(b, h * d, t)
        return self.conv_o(out)

    def _relative_layout(self, t: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """For every (i, j): index ``j - i + w`` into the 2w+1 relative slots (clamped) and validity."""
        w = self.window_size
        pos = torch.arange(t, device=device)
        rel = pos.unsqueeze(0) - pos.unsqueeze(1) + w  # [T, T], entry (i, j) = j - i + w
        valid = (rel >= 0) & (rel <= 2 * w)
        return rel.clamp(0, 2 * w).view(1, 1, t, t), valid.view(1, 1, t, t).float()

    def _relative_values(self, p: Tensor) -> Tensor:
        """Attention weights ``[B, H, T, T]`` regrouped by relative offset: ``[B, H, T, 2w+1]``."""
        b, h, t, _ = p.shape
        w = self.window_size
        i = torch.arange(t, device=p.device).unsqueeze(1)
        r = torch.arange(2 * w + 1, device=p.device).unsqueeze(0)
        j = i + r - w  # [T, 2w+1]: key position of offset slot r for query i
        valid = ((j >= 0) & (j < t)).to(p.dtype)
        gathered = torch.gather(p, 3, j.clamp(0, t - 1).view(1, 1, t, -1).expand(b, h, -1, -1))
        return gathered * valid


class FFN(nn.Module):
    """Conv1d(k) -> ReLU -> dropout -> Conv1d(k), "same" padding, input of each conv masked."""

    def __init__(self, in_channels: int, out_channels: int, filter_channels: int, kernel_size: int,
                 p_dropout: float = 0.0):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        """x: [B, C_in, T]; x_mask: [B, 1, T] -> [B, C_out, T] (masked)."""
        x = self.conv_1(pad_same(x * x_mask, self.kernel_size))
        x = self.drop(torch.relu(x))
        x = self.conv_2(pad_same(x * x_mask, self.kernel_size))
        return x * x_mask


class Encoder(nn.Module):
    """Post-LN transformer encoder with relative-position self-attention (VITS ``attentions.Encoder``)."""

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int = 1, p_dropout: float = 0.0, window_size: int = 4):
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(MultiHeadAttention(hidden_channels, hidden_channels, n_heads,
                                                       p_dropout=p_dropout, window_size=window_size))
            self.norm_layers_1.append(LayerNorm(hidden_channels))
            self.ffn_layers.append(FFN(hidden_channels, hidden_channels, filter_channels, kernel_size,
                                       p_dropout=p_dropout))
            self.norm_layers_2.append(LayerNorm(hidden_channels))

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        """x: [B, C, T]; x_mask: [B, 1, T] -> [B, C, T] (masked)."""
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)  # [B, 1, T, T]
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers,
                                           self.norm_layers_2):
            y = attn(x, x, attn_mask)
            x = norm1(x + self.drop(y))
            y = ffn(x, x_mask)
            x = norm2(x + self.drop(y))
        return x * x_mask
