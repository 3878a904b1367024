"""Decoder-only transformer blocks with a preallocated KV cache (S1).

One implementation serves training and inference:

- training / uncached: ``TransformerDecoder(x, mask)`` runs the full sequence under an
  explicit attention mask;
- cached inference (gpt-fast style): ``setup_cache(batch, max_len)`` allocates one
  ``KVCache`` ``[B, H, S_max, Dh]`` per layer, once per generation call; every call
  ``TransformerDecoder(x, mask, input_pos=p)`` writes the keys/values of the ``S`` new
  positions at cache slots ``p .. p+S-1`` and attends over slots ``0 .. p+S-1`` only
  (a view of the buffer, never the whole preallocated length).

Layers are post-LN (``x = LN1(x + Drop(MHA(x)))``, ``x = LN2(x + Drop(W2 Drop(ReLU(W1 x))))``,
LayerNorm eps 1e-5, no final norm) as ``torch.nn.TransformerEncoderLayer(norm_first=False)``.
The attention uses one packed projection ``in_proj = Linear(d, 3d)`` whose output rows are
q, k, v in that order, so GPT-SoVITS ``self_attn.in_proj_weight``/``in_proj_bias`` load as
``self_attn.in_proj.weight``/``.bias`` unchanged.

Cached calls without grad run their linears through ``decoder.decode_linear`` when it is set
(``s1.weights``: fp32 through ``F.linear`` or oneDNN's fused ``onednn_linear``, whichever is
faster here by measurement, or bf16 / fp16 / int8 weight-only copies), else through ``F.linear``; the
uncached path and training always use ``F.linear`` on the parameters.

In training with dropout, attention and residual dropouts go through ``modules.dropout``
(on CPU: cheaper masks and a written-out attention; elsewhere ``F.dropout`` / SDPA).
In training mode on CPUs whose MKL GEMM is not at its best (not Intel), the uncached
linears run through ``modules.train_linear`` (oneDNN forward and input gradient).

Masks are boolean, ``True`` = "may attend", broadcastable to ``[B, H, S_q, S_k]``
(``S_k`` = ``input_pos + S_q`` with a cache). Every query row must allow at least one key.

With ``rope=True`` the decoder rotates queries and keys (``modules.rope``) by explicit
per-row positions ``[B, S]`` given to ``forward``; keys are rotated before they enter the
cache. Without it (default) the layers see no positions (the caller adds embeddings).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.dropout import attention_dropout, dropout
from modules.rope import RotaryEmbedding, apply_rotary
from modules.train_linear import onednn_train_linear, onednn_training_applies


class KVCache:
    """Keys and values of one attention layer, preallocated as ``[B, H, S_max, Dh]``.

    Not an ``nn.Module``: it holds no parameters and never appears in a state dict.
    ``batch`` is the number of live rows; rows can be dropped with ``keep_rows`` (finished
    sequences), which compacts them to the front of the same buffers.
    """

    def __init__(
        self,
        batch: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        # kv[0] = keys, kv[1] = values: one buffer so that one copy writes both. One slot more than max_len:
        # the filled slots are then never the whole buffer, whose contiguity a compiled decode step would
        # otherwise tell apart from a part's (and compile again for the last slot).
        self.kv = torch.zeros(2, batch, n_head, max_len + 1, head_dim, device=device, dtype=dtype)
        self.batch = batch
        self.max_len = max_len

    def update(self, input_pos: int, kv_new: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``kv_new [2, B, H, S, Dh]`` at slots ``input_pos..input_pos+S-1``.

        Returns views ``(k, v)`` of shape ``[B, H, input_pos+S, Dh]`` over the filled slots.
        """
        end = input_pos + kv_new.shape[3]
        if not torch.compiler.is_compiling():  # compiled: no guard on the Python ints (they would recompile)
            if end > self.max_len:
                raise ValueError(f"KV cache overflow: writing up to slot {end} > max_len {self.max_len}")
            if kv_new.shape[1] != self.batch:
                raise ValueError(f"KV cache holds {self.batch} rows, got a batch of {kv_new.shape[1]}")
        live = self.kv[:, : kv_new.shape[1]]  # the live rows (compacted to the front by keep_rows)
        live[:, :, :, input_pos:end].copy_(kv_new)
        filled = live[:, :, :, :end]
        return filled[0], filled[1]

    def keep_rows(self, rows: Tensor) -> None:
        """Keep only batch rows ``rows`` (LongTensor, indices into the live rows), in that order."""
        kept = self.kv[:, : self.batch].index_select(1, rows)
        self.kv[:, : rows.numel()].copy_(kept)
        self.batch = rows.numel()


Linear = Callable[[Tensor, Tensor, Tensor | None, bool], Tensor]


def reduction_linear(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
    """``plain_linear`` written as a product and a sum over ``K``, for graphs compiled by ``torch.compile``.

    Inductor fuses ``(w * x).sum(-1)`` (+ bias, ReLU, and ``w``'s widening from fp16/bf16 to ``x``'s
    dtype) into one loop over the weight, parallel over output rows: for the single row of a
    decode step it reads ``weight`` once in its stored dtype, near the memory bandwidth, without
    the per-call cost of a BLAS matrix-vector product. Run eagerly it would materialise
    ``[..., N, K]``: outside a compiled graph it is ``F.linear`` on the weight widened to ``x``'s dtype.
    """
    if not torch.compiler.is_compiling():
        return plain_linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), relu)
    y = (weight.to(x.dtype) * x.unsqueeze(-2)).sum(-1)  # [..., N]
    if bias is not None:
        y = y + bias.to(x.dtype)
    return torch.relu(y) if relu else y


def cached_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Attention of the cached path: q ``[B, H, S, Dh]`` over k, v ``[B, H, S_k, Dh]`` -> ``[B, H, S, Dh]``.

    Eager, and for more than one query row: ``F.scaled_dot_product_attention``. One query row inside a
    compiled graph (a decode step): the scores, softmax and weighted sum written as reductions, which
    inductor fuses into loops that read the cache once (the flash-attention CPU kernel makes two small
    matrix products per head per call, which cost more than the arithmetic at one row). k, v may be
    stored in 16 bits (``TransformerDecoder.cache_dtype``): the products widen them to q's dtype.
    """
    if q.shape[-2] != 1 or not torch.compiler.is_compiling():  # a 16-bit cache (``cache_dtype``) widened for SDPA
        return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
    scores = (q * k).sum(-1) * q.shape[-1] ** -0.5  # [B, H, S_k]
    if mask is not None:
        scores = scores.masked_fill(~mask[:, :, 0, :], float("-inf"))  # mask [B or 1, 1, 1, S_k]
    return (scores.softmax(-1).unsqueeze(-1) * v).sum(-2, keepdim=True)  # [B, H, 1, Dh]


def plain_linear(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
    """``F.linear`` (+ ReLU): the path used for training and as the reference."""
    y = F.linear(x, weight, bias)
    return F.relu(y) if relu else y


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
    """Same as ``plain_linear`` through oneDNN (ReLU fused), no autograd.

    On CPU, fp32 matrix-vector products through ``F.linear`` (MKL gemv) run single-threaded
    at about a third of the memory bandwidth; oneDNN's inner-product primitive reads the
    (unchanged, unpacked) weights near the bandwidth bound. Used only for cached decoding
    without grad; tested equal to ``plain_linear`` through cached == uncached generation.
    """
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")


_HAS_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear_usable(weight: Tensor, dtype: torch.dtype | None = None) -> bool:
    """Whether ``onednn_linear`` can run with this weight cast to ``dtype`` (default: its own): fp32, or bf16
    where oneDNN has a bf16 path on this CPU (AVX-512 BW/VL/DQ or AVX-NE-CONVERT; elsewhere its reorder raises)."""
    if not (_HAS_ONEDNN_LINEAR and weight.device.type == "cpu"):
        return False
    dtype = weight.dtype if dtype is None else dtype
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


class SelfAttention(nn.Module):
    """Multi-head self-attention with a packed q,k,v projection and optional KV cache."""

    def __init__(self, dim: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if dim % n_head != 0:
            raise ValueError(f"dim {dim} is not divisible by n_head {n_head}")
        self.n_head = n_head
        self.head_dim = dim // n_head
        self.dropout = dropout
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        cache: KVCache | None = None,
        input_pos: int | None = None,
        linear: Linear = plain_linear,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x ``[B, S, D]`` -> ``[B, S, D]``; with ``cache``, new keys go to slots from ``input_pos``.

        rope: ``(cos, sin)`` ``[B, 1, S, Dh/2]`` of the new positions, or None (no rotation).
        """
        b, s, d = x.shape
        qkv = linear(x, self.in_proj.weight, self.in_proj.bias, False)  # [B, S, 3D]
        qkv = qkv.view(b, s, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # [3, B, H, S, Dh]
        if rope is not None:
            q, k_new = apply_rotary(qkv[0], *rope), apply_rotary(qkv[1], *rope)
            qkv = torch.stack([q, k_new, qkv[2]])
        if cache is None:  # one contiguous copy, and unbind's backward stacks the three gradients in one pass
            q, k, v = qkv.contiguous().unbind(0)  # (indexing qkv would zero-fill a [3, B, H, S, Dh] gradient each)
        else:
            q = qkv[0]
            k, v = cache.update(input_pos, qkv[1:])  # [B, H, input_pos+S, Dh]
        if self.training and self.dropout > 0:  # CPU: modules.dropout's written-out path
            y = attention_dropout(q, k, v, mask, self.dropout)  # [B, H, S, Dh]
        elif cache is not None:
            y = cached_attention(q, k, v, mask)  # [B, H, S, Dh]
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, S, Dh]
        return linear(y.transpose(1, 2).reshape(b, s, d), self.out_proj.weight, self.out_proj.bias, False)


class DecoderLayer(nn.Module):
    """Post-LN transformer layer (attention + ReLU feed-forward), written functionally so that
    a decoding step costs few Python operations; the modules only hold the weights."""

    def __init__(self, dim: int, n_head: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, n_head, dropout)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.dropout = dropout  # attention-branch, feed-forward inner and feed-forward branch dropouts

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        cache: KVCache | None = None,
        input_pos: int | None = None,
        linear: Linear = plain_linear,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x ``[B, S, D]`` -> ``[B, S, D]``; rope: see ``SelfAttention``."""
        a = self.self_attn(x, mask, cache, input_pos, linear, rope)
        if self.training and self.dropout > 0:
            a = dropout(a, self.dropout)
        x = F.layer_norm(x + a, self.norm1.normalized_shape, self.norm1.weight, self.norm1.bias, self.norm1.eps)
        h = linear(x, self.linear1.weight, self.linear1.bias, True)
        if self.training and self.dropout > 0:
            h = dropout(h, self.dropout)
        h = linear(h, self.linear2.weight, self.linear2.bias, False)
        if self.training and self.dropout > 0:
            h = dropout(h, self.dropout)
        return F.layer_norm(x + h, self.norm2.normalized_shape, self.norm2.weight, self.norm2.bias, self.norm2.eps)


class TransformerDecoder(nn.Module):
    """A stack of ``n_layer`` post-LN layers; optional per-layer KV caches for decoding; optional RoPE."""

    def __init__(self, dim: int, n_head: int, n_layer: int, ffn_dim: int, dropout: float,
                 rope: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, n_head, ffn_dim, dropout) for _ in range(n_layer))
        self.rope = RotaryEmbedding(dim // n_head) if rope else None
        self.caches: list[KVCache] | None = None
        self.decode_linear: Linear | None = None  # linears of cached no-grad calls (s1.weights); None = F.linear
        self.cache_dtype: torch.dtype | None = None  # KV cache dtype of setup_cache (s1.weights); None = the weights'

    def setup_cache(
        self,
        batch: int,
        max_len: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Allocate one ``KVCache [B, H, max_len, Dh]`` per layer (replacing any previous ones); ``dtype``
        defaults to ``cache_dtype``, else the weights' dtype."""
        ref = self.layers[0].self_attn.in_proj.weight
        device = ref.device if device is None else device
        dtype = dtype or self.cache_dtype or ref.dtype
        self.caches = [
            KVCache(batch, layer.self_attn.n_head, max_len, layer.self_attn.head_dim, device=device, dtype=dtype)
            for layer in self.layers
        ]

    def reset_cache(self) -> None:
        """Free the caches."""
        self.caches = None

    def keep_rows(self, rows: Tensor) -> None:
        """Drop finished rows from every cache (``rows``: LongTensor of rows to keep)."""
        if self.caches is None:
            raise RuntimeError("keep_rows called without a cache; call setup_cache first")
        for cache in self.caches:
            cache.keep_rows(rows)

    def cached_linear(self) -> Linear:
        """The linear of cached calls: ``decode_linear`` without grad when set, else ``plain_linear``."""
        return self.decode_linear if self.decode_linear is not None and not torch.is_grad_enabled() else plain_linear

    def forward(self, x: Tensor, mask: Tensor | None, input_pos: int | None = None,
                positions: Tensor | None = None) -> Tensor:
        """x ``[B, S, D]`` -> ``[B, S, D]``; positions ``[B, S]``: RoPE positions (needed iff ``rope``).

        Without ``input_pos`` the caches are not used (training, uncached decoding) and
        ``mask`` is ``[B or 1, 1, S, S]``. With ``input_pos`` (requires ``setup_cache``) the
        ``S`` new positions occupy cache slots ``input_pos..input_pos+S-1`` and ``mask`` is
        ``[B or 1, 1, S, input_pos+S]`` or None (attend to every filled slot).
        """
        rope = None
        if self.rope is not None:
            if positions is None or positions.shape != x.shape[:2]:
                raise ValueError(f"a RoPE decoder needs positions [B, S] = {list(x.shape[:2])}, got "
                                 f"{None if positions is None else list(positions.shape)}")
            rope = self.rope(positions, x.dtype)
        if input_pos is None:
            train_onednn = self.training and onednn_training_applies(x, self.layers[0].linear1.weight)
            linear = onednn_train_linear if train_onednn else plain_linear  # modules.train_linear: CPU vendor rule
            for layer in self.layers:
                x = layer(x, mask, linear=linear, rope=rope)
            return x
        if self.caches is None:
            raise RuntimeError("input_pos given but no KV cache; call setup_cache(batch, max_len) first")
        linear = self.cached_linear()
        for layer, cache in zip(self.layers, self.caches):
            x = layer(x, mask, cache, input_pos, linear, rope)
        return x
