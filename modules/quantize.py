"""Single-codebook vector quantizer with EMA updates, k-means init and dead-code reset.

Interface (encodec / lucidrains style): ``forward(x, mask) -> QuantizedResult``,
``encode(x) -> codes`` (pure, no side effects), ``decode(codes) -> vectors``.
Shapes: ``x [B, D, N]`` (conv side), ``mask [B, 1, N]`` (1 = real frame), ``codes [B, N]``.

Training-mode forward (unless frozen):
* first call: k-means (Lloyd) on up to ``kmeans_max_samples`` real frames initialises the codebook;
* straight-through output, commitment loss ``mse(x, sg(q))`` over real frames;
* EMA of per-code counts and sums over real frames, laplace-smoothed normalisation;
* codes whose EMA count falls below ``dead_code_threshold`` are replaced by real frames.

Distances are always computed in fp32 with autocast off. Under DDP every rank keeps the
same codebook by construction: counts and sums are all-reduced before the EMA update, and
k-means and dead-code replacements are computed on rank 0 and broadcast. All ranks must
therefore call a training-mode forward together (eval/frozen forwards do no collectives).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common.dist import all_reduce_sum_, broadcast_, is_dist, rank


@dataclass
class QuantizedResult:
    quantized: Tensor  # [B, D, N]; straight-through in training
    codes: Tensor  # [B, N] int64
    commit_loss: Tensor  # scalar fp32; 0 in eval or when frozen


def squared_distances(x: Tensor, embed: Tensor) -> Tensor:
    """``|x - e|²`` for rows ``x [M, D]`` and codes ``embed [K, D]`` -> ``[M, K]``, in fp32."""
    x = x.float()
    embed = embed.float()
    return x.pow(2).sum(1, keepdim=True) - 2.0 * (x @ embed.t()) + embed.pow(2).sum(1).unsqueeze(0)


def nearest_code(x: Tensor, embed: Tensor, chunk: int = 16384) -> Tensor:
    """Index of the nearest code for each row of ``x [M, D]`` -> ``[M]`` int64 (fp32, chunked)."""
    return torch.cat([squared_distances(part, embed).argmin(dim=1) for part in x.split(chunk)]) \
        if x.size(0) > 0 else torch.zeros(0, dtype=torch.long, device=x.device)


def sample_rows(x: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` rows of ``x [M, D]``: without replacement when M >= n, else with replacement."""
    m = x.size(0)
    if m >= n:
        idx = torch.randperm(m, device=x.device, generator=generator)[:n]
    else:
        idx = torch.randint(0, m, (n,), device=x.device, generator=generator)
    return x[idx]


def kmeans(x: Tensor, n_clusters: int, n_iters: int,
           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on ``x [M, D]`` (fp32). Returns ``(means [K, D], counts [K])``.

    Initial means are K rows of x; an empty cluster keeps its previous mean.
    """
    x = x.float()
    means = sample_rows(x, n_clusters, generator).clone()
    counts = torch.zeros(n_clusters, device=x.device)
    for _ in range(n_iters):
        assign = nearest_code(x, means)
        counts = torch.bincount(assign, minlength=n_clusters).float()
        sums = torch.zeros_like(means).index_add_(0, assign, x)
        filled = counts > 0
        means = torch.where(filled.unsqueeze(1), sums / counts.clamp(min=1).unsqueeze(1), means)
    return means, counts


class VectorQuantizer(nn.Module):
    """One EMA codebook of ``codebook_size`` vectors of size ``dim`` (no parameters, only buffers).

    Buffers: ``inited [1]`` (0/1), ``cluster_size [K]``, ``embed [K, D]``, ``embed_avg [K, D]``.
    ``freeze()`` stops every update (k-means, EMA, dead-code reset) and the straight-through
    gradient, independently of train/eval mode.
    """

    def __init__(self, dim: int, codebook_size: int = 1024, decay: float = 0.99, kmeans_iters: int = 50,
                 dead_code_threshold: float = 2.0, epsilon: float = 1e-5, commitment_weight: float = 1.0,
                 kmeans_max_samples: int = 10000):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"codebook decay must be in [0, 1), got {decay}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.epsilon = epsilon
        self.commitment_weight = commitment_weight
        self.kmeans_max_samples = kmeans_max_samples
        self.frozen = False
        embed = torch.randn(codebook_size, dim)
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def freeze(self) -> VectorQuantizer:
        """Stop all codebook updates and the straight-through gradient (train or eval)."""
        self.frozen = True
        return self

    def unfreeze(self) -> VectorQuantizer:
        self.frozen = False
        return self

    @property
    def updating(self) -> bool:
        """True when a forward pass updates the codebook (training mode and not frozen)."""
        return self.training and not self.frozen

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x: [B, D, N] -> codes [B, N] int64 (nearest code in fp32; no side effects)."""
        self._check_input(x)
        b, d, n = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.float().transpose(1, 2).reshape(b * n, d)
            return nearest_code(flat, self.embed).view(b, n)

    def decode(self, codes: Tensor) -> Tensor:
        """codes: [B, N] int -> [B, D, N] fp32 codebook vectors."""
        if codes.dim() != 2:
            raise ValueError(f"codes must be [B, N], got shape {tuple(codes.shape)}")
        if codes.numel() > 0 and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got range "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return nn.functional.embedding(codes.long(), self.embed).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> QuantizedResult:
        """x: [B, D, N]; mask: [B, 1, N] (1 = real frame) or None (all real) -> QuantizedResult."""
        self._check_input(x)
        b, d, n = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            flat = xf.transpose(1, 2).reshape(b * n, d)  # [B*N, D], batch-major
            valid = torch.ones(b * n, dtype=torch.bool, device=x.device) if mask is None \
                else (mask.reshape(b * n) > 0)
            if self.updating and not bool(self.inited.item()):
                self._kmeans_init(flat.detach()[valid])
            codes = nearest_code(flat.detach(), self.embed)  # [B*N]
            quantized = nn.functional.embedding(codes, self.embed).view(b, n, d).transpose(1, 2)  # [B, D, N]
            if not self.updating:
                return QuantizedResult(quantized, codes.view(b, n), xf.new_zeros(()))
            frame_w = valid.view(b, 1, n).float()
            n_real = frame_w.sum().clamp(min=1.0) * d
            commit = ((quantized.detach() - xf).pow(2) * frame_w).sum() / n_real
            self._ema_update(flat.detach()[valid], codes[valid])
            quantized = xf + (quantized - xf).detach()
            return QuantizedResult(quantized, codes.view(b, n), commit * self.commitment_weight)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.size(1) != self.dim:
            raise ValueError(f"quantizer input must be [B, {self.dim}, N], got shape {tuple(x.shape)}")

    @torch.no_grad()
    def _kmeans_init(self, real_rows: Tensor) -> None:
        """Initialise the codebook from real frames ``[M, D]`` (rank 0 computes, all ranks receive)."""
        k = self.codebook_size
        means = torch.empty(k, self.dim, device=self.embed.device)
        counts = torch.empty(k, device=self.embed.device)
        if rank() == 0:
            if real_rows.size(0) == 0:
                raise ValueError("k-means initialisation of the codebook needs at least one real frame, "
                                 "but the batch mask marks every frame as padding")
            rows = sample_rows(real_rows, min(self.kmeans_max_samples, real_rows.size(0)))
            means, counts = kmeans(rows, k, self.kmeans_iters)
        if is_dist():
            broadcast_(means)
            broadcast_(counts)
        self.embed.copy_(means)
        self.embed_avg.copy_(means * counts.unsqueeze(1))  # the EMA state of these means: embed = embed_avg / size
        self.cluster_size.copy_(counts)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def _ema_update(self, real_rows: Tensor, real_codes: Tensor) -> None:
        """EMA of counts and sums over real frames (summed over ranks), then dead-code reset."""
        k, d = self.codebook_size, self.dim
        stats = torch.zeros(k, d + 1, device=real_rows.device)
        stats[:, :d].index_add_(0, real_codes, real_rows)
        stats[:, d] = torch.bincount(real_codes, minlength=k).float()
        all_reduce_sum_(stats)
        sums, counts = stats[:, :d], stats[:, d]
        self.cluster_size.lerp_(counts, 1.0 - self.decay)
        self.embed_avg.lerp_(sums, 1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + k * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))
        self._reset_dead_codes(real_rows)

    @torch.no_grad()
    def _reset_dead_codes(self, real_rows: Tensor) -> None:
        """Replace codes with EMA count below the threshold by real frames drawn on rank 0."""
        dead = self.cluster_size < self.dead_code_threshold  # identical on every rank
        n_dead = int(dead.sum().item())
        if n_dead == 0:
            return
        if rank() == 0 and real_rows.size(0) > 0:
            replacement = sample_rows(real_rows, n_dead).float()
        else:  # other ranks receive rank 0's draw; rank 0 without real frames keeps the old codes
            replacement = self.embed[dead].clone()
        broadcast_(replacement)
        self.embed[dead] = replacement
        self.embed_avg[dead] = replacement * self.dead_code_threshold
        self.cluster_size[dead] = self.dead_code_threshold
