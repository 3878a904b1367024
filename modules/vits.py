"""VITS latent-side blocks: WaveNet-style WN, posterior encoder, residual coupling flow.

Conv side: ``[B, C, T]`` activations, ``[B, 1, T]`` float masks, ``g [B, gin, 1]`` conditioning.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from modules.commons import fused_add_tanh_sigmoid_multiply, get_padding, weight_norm


class WN(nn.Module):
    """Non-causal WaveNet: gated dilated convs with residual and skip paths, global conditioning.

    Layer i uses dilation ``dilation_rate ** i``; the conditioning conv produces the gate
    bias of every layer at once (slice ``[2H·i, 2H·(i+1))`` for layer i).
    """

    def __init__(self, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int = 0, p_dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN needs an odd kernel size, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        if gin_channels > 0:
            self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(weight_norm(nn.Conv1d(
                hidden_channels, 2 * hidden_channels, kernel_size, dilation=dilation,
                padding=get_padding(kernel_size, dilation))))
            res_skip = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, res_skip, 1)))

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor | None = None) -> Tensor:
        """x: [B, H, T]; x_mask: [B, 1, T]; g: [B, gin, 1] or None -> [B, H, T] (masked)."""
        h = self.hidden_channels
        output = torch.zeros_like(x)
        g_all = self.cond_layer(g) if g is not None else None  # [B, 2H·n_layers, 1]
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            x_in = in_layer(x)
            g_l = g_all[:, 2 * h * i: 2 * h * (i + 1)] if g_all is not None else torch.zeros_like(x_in)
            acts = self.drop(fused_add_tanh_sigmoid_multiply(x_in, g_l, h))
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :h]) * x_mask
                output = output + res_skip[:, h:]
            else:
                output = output + res_skip
        return output * x_mask


class PosteriorEncoder(nn.Module):
    """q(z | spectrogram): ``pre`` conv -> WN -> ``proj`` to mean and log-std; z sampled."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, kernel_size: int,
                 dilation_rate: int, n_layers: int, gin_channels: int = 0):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(self, y: Tensor, y_mask: Tensor, g: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """y: [B, F, T]; y_mask: [B, 1, T]; g: [B, gin, 1] (detached here) -> z, m, logs each [B, out, T]."""
        if g is not None:
            g = g.detach()
        x = self.pre(y) * y_mask
        x = self.enc(x, y_mask, g=g)
        stats = self.proj(x) * y_mask
        m, logs = stats.split(self.out_channels, dim=1)
        noise = torch.randn(m.shape, device=m.device, dtype=m.dtype, generator=generator)
        z = (m + noise * torch.exp(logs)) * y_mask
        return z, m, logs


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: ``x1 <- x1 + m(x0)`` (forward) / ``x1 <- x1 - m(x0)`` (reverse).

    ``post`` is zero-initialised so that a fresh flow is the identity.
    """

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, gin_channels: int = 0):
        super().__init__()
        if channels % 2 != 0:
            raise ValueError(f"coupling channels must be even, got {channels}")
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half, 1)
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor | None = None, reverse: bool = False) -> Tensor:
        """x: [B, C, T]; x_mask: [B, 1, T]; g: [B, gin, 1] -> [B, C, T]."""
        x0, x1 = x.split(self.half, dim=1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        m = self.post(h) * x_mask
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], dim=1)


class Flip(nn.Module):
    """Reverse the channel order (its own inverse)."""

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor | None = None, reverse: bool = False) -> Tensor:
        """x: [B, C, T] -> [B, C, T] with channels reversed."""
        return torch.flip(x, dims=[1])


class ResidualCouplingBlock(nn.Module):
    """``n_flows`` x (coupling, flip); ``flows`` indices 0, 2, 4, ... are the couplings."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, n_flows: int = 4, gin_channels: int = 0):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(ResidualCouplingLayer(channels, hidden_channels, kernel_size, dilation_rate,
                                                    n_layers, gin_channels=gin_channels))
            self.flows.append(Flip())

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor | None = None, reverse: bool = False) -> Tensor:
        """x: [B, C, T]; x_mask: [B, 1, T]; g: [B, gin, 1] -> [B, C, T] (reverse runs the inverse)."""
        flows = reversed(self.flows) if reverse else self.flows
        for flow in flows:
            x = flow(x, x_mask, g=g, reverse=reverse)
        return x
