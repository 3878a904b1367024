"""HiFi-GAN v1 generator and the VITS multi-period discriminator.

Generator: ``[B, C, T]`` latent frames -> ``[B, 1, T · prod(upsample_rates)]`` waveform in [-1, 1].
Discriminator: waveforms ``[B, 1, N]`` -> per-sub-discriminator logits and feature maps.

Without grad on the CPU (inference) the generator runs channels-last: its activations as
``[B, C, 1, T]`` in ``torch.channels_last`` layout and every conv as the 2-D conv with a ``(1, k)``
kernel (``conv_any``), the same weights and sums in another order (~1e-6 relative). oneDNN's 1-D convs
over ``[C, T]`` rows (its ``ncw`` layout) run 1.5-2.8x slower than over ``[T, C]`` rows (``nwc``) at
the generator's shapes: on the 2-core AVX2 EPYC, 10 s of audio, k = 11, ms ncw / nwc: 16 channels x 320000
samples 50.7 / 18.3, 32 x 160000 58.2 / 29.2, 64 x 80000 106 / 47.9, 128 x 40000 237 / 160, and never
slower at 1/25 of those lengths. With grad (training) the 1-D layout stays: there the channels-last
forward + backward was up to 1.6x slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from modules.commons import get_padding, weight_norm

LRELU_SLOPE = 0.1


def channels_last_applies(x: Tensor) -> bool:
    """Whether the generator runs channels-last on ``x`` (see the module docstring): CPU, no grad."""
    return x.device.type == "cpu" and not torch.is_grad_enabled()


def conv_any(conv: nn.Conv1d | nn.ConvTranspose1d, x: Tensor) -> Tensor:
    """``conv(x)`` for x ``[B, C, T]``, or for channels-last ``[B, C, 1, T]`` the same conv as a 2-D conv with a
    ``(1, k)`` kernel (output ``[B, C', 1, T']``, channels-last)."""
    if x.dim() == 3:
        return conv(x)
    w = conv.weight.unsqueeze(2)  # [out, in/g, 1, k] (transposed: [in, out/g, 1, k])
    stride, pad, dil = (1, conv.stride[0]), (0, conv.padding[0]), (1, conv.dilation[0])
    if isinstance(conv, nn.ConvTranspose1d):
        return F.conv_transpose2d(x, w, conv.bias, stride, pad, (0, conv.output_padding[0]), conv.groups, dil)
    return F.conv2d(x, w, conv.bias, stride, pad, dil, conv.groups)


def _init_normal(conv: nn.Module, std: float = 0.01) -> nn.Module:
    """N(0, std) weights, applied before weight norm so that it actually takes effect."""
    nn.init.normal_(conv.weight, 0.0, std)
    return conv


class ResBlock1(nn.Module):
    """Three dilated conv pairs: ``x += c2(lrelu(c1(lrelu(x))))`` (dilations ``d``, then 1)."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        if not dilations:
            raise ValueError("ResBlock1 needs at least one dilation")
        self.convs1 = nn.ModuleList([
            weight_norm(_init_normal(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                               padding=get_padding(kernel_size, d))))
            for d in dilations])
        self.convs2 = nn.ModuleList([
            weight_norm(_init_normal(nn.Conv1d(channels, channels, kernel_size,
                                               padding=get_padding(kernel_size, 1))))
            for _ in dilations])

    def forward(self, x: Tensor, x_mask: Tensor | None = None, x_act: Tensor | None = None) -> Tensor:
        """x: [B, C, T]; x_mask: [B, 1, T] or None -> a new tensor [B, C, T] (``x`` is not modified); or all
        with a unit dimension before T, channels-last (``conv_any``).

        ``x_act`` may pass ``leaky_relu(x, LRELU_SLOPE)`` when the caller has it already (the
        blocks of a generator stage share their input). In-place operations touch only fresh
        conv outputs, which autograd does not need again.
        """
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            xt = x_act if i == 0 and x_act is not None else F.leaky_relu(x, LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            xt = F.leaky_relu(conv_any(c1, xt), LRELU_SLOPE, inplace=True)
            if x_mask is not None:
                xt = xt * x_mask
            x = conv_any(c2, xt).add_(x)
        return x if x_mask is None else x * x_mask


class Generator(nn.Module):
    """HiFi-GAN v1: conv_pre (+ style) -> [lrelu, transposed conv, mean of ResBlock1s] x stages
    -> LeakyReLU(0.01) -> conv_post (no bias) -> tanh."""

    def __init__(self, initial_channel: int, resblock_kernel_sizes: list[int],
                 resblock_dilation_sizes: list[list[int]], upsample_rates: list[int],
                 upsample_initial_channel: int, upsample_kernel_sizes: list[int], gin_channels: int = 0):
        super().__init__()
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError(f"upsample_rates {upsample_rates} and upsample_kernel_sizes "
                             f"{upsample_kernel_sizes} differ in length")
        for k, u in zip(upsample_kernel_sizes, upsample_rates):
            if (k - u) % 2 != 0 or k < u:
                raise ValueError(f"upsample kernel {k} with rate {u}: (kernel - rate) must be even and >= 0")
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, 7, padding=3)
        if gin_channels > 0:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for u, k in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(weight_norm(_init_normal(
                nn.ConvTranspose1d(ch, ch // 2, k, stride=u, padding=(k - u) // 2))))
            ch //= 2
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, rk, rd))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)

    def forward(self, x: Tensor, g: Tensor | None = None, x_mask: Tensor | None = None) -> Tensor:
        """x: [B, C, T]; g: [B, gin, 1] or None -> [B, 1, T · prod(upsample_rates)].

        x_mask: [B, 1, T] or None. With a mask, every convolution sees zeros on the padding
        (conv biases and the style make padded frames non-zero otherwise, which would leak into
        the last samples of a shorter row), so each row gives what it gives alone; the output on
        the padding itself is not zero (the caller masks it).
        """
        if channels_last_applies(x):  # [B, C, 1, T] channels-last from here on (module docstring)
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            x_mask = None if x_mask is None else x_mask.unsqueeze(2)
            g = None if g is None else g.unsqueeze(2)
        x = conv_any(self.conv_pre, x if x_mask is None else x * x_mask)
        if g is not None:
            x = x + conv_any(self.cond, g)
        if x_mask is not None:
            x = x * x_mask
        for i, up in enumerate(self.ups):
            x = conv_any(up, F.leaky_relu(x, LRELU_SLOPE))
            if x_mask is not None:
                x_mask = x_mask.repeat_interleave(up.stride[0], dim=-1)  # [B, 1, (1,) T · rates so far]
                x = x * x_mask
            x_act = F.leaky_relu(x, LRELU_SLOPE)  # the first activation of every block of this stage
            total = None
            for block in self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]:
                y = block(x, x_mask, x_act=x_act)  # a fresh tensor: summed in place (fewer passes over memory)
                total = y if total is None else total.add_(y)
            x = total.div_(self.num_kernels)  # the mean of the blocks
        x = F.leaky_relu(x, inplace=True)  # PyTorch default slope 0.01 here (as in VITS), not 0.1
        x = conv_any(self.conv_post, x)
        return torch.tanh(x.squeeze(2) if x.dim() == 4 else x)  # [B, 1, T_out]


FOLD_MAX_PERIOD = 3  # period discriminators up to this period run folded on the CPU (DiscriminatorP._folded)


def _norm(module: nn.Module, use_spectral_norm: bool) -> nn.Module:
    return spectral_norm(module) if use_spectral_norm else weight_norm(module)


class DiscriminatorP(nn.Module):
    """Period discriminator: the waveform folded to ``[B, 1, N/p, p]``, 2-D convs along time."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False,
                 channel_divisor: int = 1):
        super().__init__()
        self.period = period
        chans = [1] + [c // channel_divisor for c in (32, 128, 512, 1024, 1024)]
        pad = (get_padding(kernel_size, 1), 0)
        self.convs = nn.ModuleList()
        for i in range(5):
            s = stride if i < 4 else 1
            self.convs.append(_norm(nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (s, 1), padding=pad),
                                    use_spectral_norm))
        self.conv_post = _norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)), use_spectral_norm)
        self.use_spectral_norm = use_spectral_norm
        # on the CPU, run as 1-D convs over [B·p, C, N/p] (same values; see _folded); False: always 2-D
        self.fold = period <= FOLD_MAX_PERIOD and not use_spectral_norm

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x: [B, 1, N] -> (logits [B, M], feature maps [B, C_i, N_i, p])."""
        b, c, n = x.shape
        if n % self.period != 0:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)  # [B, 1, N/p, p]
        if self.fold and x.device.type == "cpu":
            return self._folded(x)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap

    def _folded(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``forward`` with the period folded into the batch: a ``(k, 1)`` kernel convolves each of the p
        columns along time on its own, which is a 1-D conv over ``[B·p, C, N/p]``. x: ``[B, 1, N/p, p]``;
        the feature maps come back as views of the shapes ``forward`` gives (the logits as a copy).

        Why (CPU only): oneDNN runs the 2-D convs of a narrow fold slowly. On the 2-core AVX2 EPYC, full-size
        discriminators, 4 x 20480 samples, forward + backward, medians of 15 interleaved runs, ms 2-D / folded:
        p=2 792 / 552, p=3 653 / 553, p=5 594 / 579, p=7 599 / 638, p=11 670 / 940 (and at 16 items and in
        one-pass timings p=2 and 3 were always faster folded, p=11 always slower). The rule is fixed
        (``FOLD_MAX_PERIOD``) rather than timed per run so that a run and its resumption compute the same
        gradients: the forward values are identical, the backward's summation order is not."""
        if self.use_spectral_norm:  # spectral_norm sets the weight in a pre-hook that F.conv1d would bypass
            raise RuntimeError("a spectral-norm period discriminator cannot run folded")
        b, c, h, p = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b * p, c, h)  # [B·p, 1, N/p]

        def unfolded(t: Tensor) -> Tensor:  # [B·p, C, H] -> [B, C, H, p] view
            return t.view(b, p, *t.shape[1:]).permute(0, 2, 3, 1)

        def conv1d(conv: nn.Conv2d, t: Tensor) -> Tensor:  # the (k, 1) conv as a 1-D conv over [B·p, C, H]
            return F.conv1d(t, conv.weight.squeeze(-1), conv.bias, conv.stride[0], conv.padding[0])

        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv1d(conv, x), LRELU_SLOPE)
            fmap.append(unfolded(x))
        x = conv1d(self.conv_post, x)
        fmap.append(unfolded(x))
        return torch.flatten(fmap[-1], 1, -1), fmap


class DiscriminatorS(nn.Module):
    """Scale discriminator on the raw waveform with grouped strided 1-D convs."""

    def __init__(self, use_spectral_norm: bool = False, channel_divisor: int = 1):
        super().__init__()
        d = channel_divisor
        # (in, out, kernel, stride, groups, padding) at full size
        specs = [(1, 16, 15, 1, 1, 7), (16, 64, 41, 4, 4, 20), (64, 256, 41, 4, 16, 20),
                 (256, 1024, 41, 4, 64, 20), (1024, 1024, 41, 4, 256, 20), (1024, 1024, 5, 1, 1, 2)]
        self.convs = nn.ModuleList()
        for c_in, c_out, k, s, g, p in specs:
            c_in = c_in if c_in == 1 else c_in // d
            self.convs.append(_norm(nn.Conv1d(c_in, c_out // d, k, s, groups=max(1, g // d), padding=p),
                                    use_spectral_norm))
        self.conv_post = _norm(nn.Conv1d(1024 // d, 1, 3, 1, padding=1), use_spectral_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x: [B, 1, N] -> (logits [B, M], feature maps)."""
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


@dataclass
class DiscriminatorOutput:
    real_logits: list[Tensor]  # one [B, M_i] per sub-discriminator
    fake_logits: list[Tensor]
    real_features: list[list[Tensor]]  # per sub-discriminator, per layer
    fake_features: list[list[Tensor]]


class MultiPeriodDiscriminator(nn.Module):
    """One scale discriminator plus one period discriminator per period (VITS)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), use_spectral_norm: bool = False,
                 channel_divisor: int = 1):
        super().__init__()
        discs: list[nn.Module] = [DiscriminatorS(use_spectral_norm, channel_divisor)]
        discs += [DiscriminatorP(p, use_spectral_norm=use_spectral_norm, channel_divisor=channel_divisor)
                  for p in periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(self, y: Tensor, y_hat: Tensor) -> DiscriminatorOutput:
        """y, y_hat: [B, 1, N] real and generated waveforms, run as one batch of 2B; except when only the
        generated half can need gradients (the generator's step: ``y`` has none and every parameter is
        frozen): then the real half runs apart without a graph, so that backward covers B items, not 2B."""
        if y.shape != y_hat.shape:
            raise ValueError(f"real {tuple(y.shape)} and generated {tuple(y_hat.shape)} waveforms differ in shape")
        if torch.is_grad_enabled() and not y.requires_grad and not any(p.requires_grad for p in self.parameters()):
            with torch.no_grad():
                real = [disc(y) for disc in self.discriminators]
            fake = [disc(y_hat.to(y.dtype)) for disc in self.discriminators]
            return DiscriminatorOutput([r[0] for r in real], [f[0] for f in fake], [r[1] for r in real],
                                       [f[1] for f in fake])
        b = y.size(0)
        both = torch.cat([y, y_hat.to(y.dtype)], dim=0)
        out = DiscriminatorOutput([], [], [], [])
        for disc in self.discriminators:
            logits, fmap = disc(both)
            out.real_logits.append(logits[:b])
            out.fake_logits.append(logits[b:])
            out.real_features.append([f[:b] for f in fmap])
            out.fake_features.append([f[b:] for f in fmap])
        return out
