"""S1 text-to-semantic model: a prefix LM over ``[phonemes ; semantic tokens]``.

Layout (spec §5): phonemes attend to each other bidirectionally; semantic tokens attend
to every phoneme and causally to earlier tokens (and themselves). Vocabulary of the
token side: ``codebook_size`` codes + EOS (``eos_id = codebook_size``).

Positions (``position``): ``"sinusoid"`` (default, as the original): phoneme and token
positions both start at 0, two separate scaled sinusoidal encodings added to the
embeddings. ``"rope"``: no added encodings; queries and keys are rotated (``modules.rope``)
by one position axis that keeps the prefix-LM layout: phonemes ``0..L-1``, then tokens
``L..L+T-1`` (per row, so padding never shifts a row's positions).

Speakers (``n_speakers > 0``): a learned speaker embedding is added to every phoneme
embedding; every call then takes ``speakers [B]`` (indices into the run's speaker table).

Training alignment (GS-HEAD style, with consistent right padding): the first token
``y_0`` is predicted from the row of the item's *last real phoneme*, every next token
from the previous token's row, and one EOS after the last real token. Padded positions
(phoneme padding, token padding, anything after the EOS) are ignored by the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.dropout import dropout
from modules.train_linear import onednn_train_linear, onednn_training_applies
from modules.transformer import TransformerDecoder

if TYPE_CHECKING:
    from common.config import S1Config

IGNORE_INDEX = -100


def sinusoid_table(n_pos: int, dim: int) -> Tensor:
    """``[n_pos, dim]``: ``pe[p, 2i] = sin(p / 10000^(2i/dim))``, ``pe[p, 2i+1] = cos(same)``."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n_pos, dim)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)
    return pe


class ScaledPositionalEncoding(nn.Module):
    """``x + alpha * pe[pos]`` then dropout; ``alpha`` is a learnable scalar (init 1.0).

    The table is a non-persistent buffer (not saved), grown on demand.
    """

    def __init__(self, dim: int, dropout: float, n_pos: int = 4000) -> None:
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoid_table(n_pos, dim), persistent=False)

    def _grow(self, n_pos: int) -> None:
        if n_pos > self.pe.shape[0]:
            self.pe = sinusoid_table(max(n_pos, 2 * self.pe.shape[0]), self.dim).to(self.pe.device)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """x ``[B, T, D]``; positions ``[B, T]`` (LongTensor) or None for ``0..T-1``."""
        if positions is None:
            self._grow(x.shape[1])
            pe = self.pe[: x.shape[1]]
        else:
            pe = self.pe[positions]  # callers size the table with ``reserve``
        return dropout(x + self.alpha * pe.to(x.dtype), self.dropout.p, self.training)

    def reserve(self, n_pos: int) -> None:
        """Make positions ``0..n_pos-1`` available (call before indexing by explicit positions)."""
        self._grow(n_pos)


class PositionDropout(nn.Module):
    """The ``ScaledPositionalEncoding`` interface without an encoding (RoPE models): dropout only."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        return dropout(x, self.dropout.p, self.training)

    def reserve(self, n_pos: int) -> None:
        """Nothing to grow (kept so that callers need not know the position scheme)."""


POSITIONS = ("sinusoid", "rope")


@dataclass
class S1Output:
    """Result of a training forward.

    loss: mean cross-entropy per supervised position (tokens + one EOS per item), fp32 scalar.
        ``loss * n_tokens`` is the summed loss, e.g. for token-weighted accumulation.
    logits: ``[B, Y+1, V]``, row j predicts target j (target Y_b of item b is EOS).
    targets: ``[B, Y+1]`` labels, ``IGNORE_INDEX`` (-100) on padding.
    acc: top-1 accuracy over supervised non-EOS targets (as GS logs it, EOS excluded).
    topk_acc: top-k accuracy over the same positions.
    n_tokens: number of supervised positions (int tensor).
    """

    loss: Tensor
    logits: Tensor
    targets: Tensor
    acc: Tensor
    topk_acc: Tensor
    n_tokens: Tensor


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[B]`` -> bool ``[B, max_len]``, True on the first ``lengths[b]`` positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def prefix_lm_mask(key_valid: Tensor, is_phone: Tensor) -> Tensor:
    """Attention mask of the prefix LM, bool ``[B, 1, S, S]``, True = may attend.

    key_valid ``[B, S]``: False on padding; is_phone ``[B, S]`` (or ``[S]``): True on phoneme
    slots. Query q may attend key k iff k is valid and (k is a phoneme or k <= q). Phonemes
    precede tokens in every row, so a phoneme query sees exactly the real phonemes and a
    token query sees the real phonemes and the real tokens up to itself. Padded query rows
    still see the real phonemes (no NaN), provided every row has at least one phoneme.
    """
    s = key_valid.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=key_valid.device).tril()
    if is_phone.dim() == 1:
        is_phone = is_phone[None]
    allowed = key_valid[:, None, :] & (is_phone[:, None, :] | causal[None])
    return allowed[:, None]


class Text2Semantic(nn.Module):
    """Decoder-only text-to-semantic transformer.

    Args:
        codebook_size: number of semantic codes; EOS = codebook_size, vocab = codebook_size + 1.
        phoneme_vocab_size: rows of the phoneme embedding (512; only symbol ids are used).
        dim: model width.
        n_layer, n_head, ffn_dim: transformer shape.
        dropout: attention and residual dropouts inside the transformer.
        pos_dropout: dropout after adding positional encodings.
        bert_dim: width of optional per-phoneme features (0 = no feature input).
        position: "sinusoid" (scaled sinusoids added to the embeddings) or "rope" (see the module docstring).
        n_speakers: rows of the speaker embedding (0 = no speaker input).
    """

    def __init__(
        self,
        codebook_size: int,
        phoneme_vocab_size: int = 512,
        dim: int = 512,
        n_layer: int = 12,
        n_head: int = 16,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        pos_dropout: float = 0.1,
        bert_dim: int = 0,
        position: str = "sinusoid",
        n_speakers: int = 0,
    ) -> None:
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        self.codebook_size = codebook_size
        self.eos_id = codebook_size
        self.vocab_size = codebook_size + 1
        self.dim = dim
        self.bert_dim = bert_dim
        self.phone_embedding = nn.Embedding(phoneme_vocab_size, dim)
        self.bert_proj = nn.Linear(bert_dim, dim) if bert_dim > 0 else None
        self.position = position
        self.rope = position == "rope"
        positional = PositionDropout if self.rope else ScaledPositionalEncoding
        self.phone_position = positional(pos_dropout) if self.rope else positional(dim, pos_dropout)
        self.token_embedding = nn.Embedding(self.vocab_size, dim)
        self.token_position = positional(pos_dropout) if self.rope else positional(dim, pos_dropout)
        self.n_speakers = n_speakers
        self.speaker_embedding = nn.Embedding(n_speakers, dim) if n_speakers > 0 else None
        self.transformer = TransformerDecoder(dim, n_head, n_layer, ffn_dim, dropout, rope=self.rope)
        self.head = nn.Linear(dim, self.vocab_size, bias=False)

    # ---- embeddings -------------------------------------------------------------------
    def embed_phones(self, phones: Tensor, bert: Tensor | None = None, speakers: Tensor | None = None) -> Tensor:
        """phones ``[B, L]``, bert ``[B, L, bert_dim]``, speakers ``[B]`` -> ``[B, L, D]`` at positions ``0..L-1``."""
        x = self.phone_embedding(phones)
        if self.speaker_embedding is not None:
            if speakers is None or speakers.shape != phones.shape[:1]:
                raise ValueError(f"model has n_speakers={self.n_speakers}; pass speakers [B] = [{phones.shape[0]}] "
                                 f"(got {None if speakers is None else list(speakers.shape)})")
            if bool((speakers < 0).any() | (speakers >= self.n_speakers).any()):
                raise ValueError(f"speaker ids {speakers.tolist()} outside [0, {self.n_speakers})")
            x = x + self.speaker_embedding(speakers)[:, None, :]
        elif speakers is not None:
            raise ValueError("speakers given but the model has n_speakers=0")
        if self.bert_proj is not None:
            if bert is None:
                raise ValueError(f"model has bert_dim={self.bert_dim}; pass bert features [B, L, {self.bert_dim}]")
            if bert.shape[:2] != phones.shape or bert.shape[2] != self.bert_dim:
                raise ValueError(
                    f"bert features have shape {tuple(bert.shape)}, expected "
                    f"[{phones.shape[0]}, {phones.shape[1]}, {self.bert_dim}]"
                )
            x = x + self.bert_proj(bert.to(x.dtype))
        elif bert is not None:
            raise ValueError("bert features given but the model has bert_dim=0")
        return self.phone_position(x)

    def embed_tokens(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """tokens ``[B, T]`` -> ``[B, T, D]``; positions ``[B, T]`` or None for ``0..T-1``."""
        return self.token_position(self.token_embedding(tokens), positions)

    def sequence_positions(self, phone_lens: Tensor, n_phone_slots: int, n_token_slots: int) -> Tensor | None:
        """RoPE positions ``[B, X+Y]`` of right-padded ``[phones ; tokens]``: phonemes ``0..``, tokens from
        ``phone_lens[b]`` (padding slots get any value: they are masked); None for sinusoid models."""
        if not self.rope:
            return None
        device = phone_lens.device
        ph = torch.arange(n_phone_slots, device=device).expand(phone_lens.shape[0], -1)
        tok = phone_lens[:, None] + torch.arange(n_token_slots, device=device)
        return torch.cat([ph, tok], dim=1)

    def hidden_states(
        self, phones: Tensor, phone_lens: Tensor, tokens: Tensor, token_lens: Tensor, bert: Tensor | None = None,
        speakers: Tensor | None = None,
    ) -> Tensor:
        """Transformer outputs ``[B, X+Y, D]`` of the training layout ``[phones ; tokens]`` (see ``forward``)."""
        x_len, y_len = phones.shape[1], tokens.shape[1]
        if bool((phone_lens < 1).any()):
            raise ValueError(f"every item needs at least one phoneme, got phone_lens={phone_lens.tolist()}")
        key_valid = torch.cat([lengths_to_mask(phone_lens, x_len), lengths_to_mask(token_lens, y_len)], dim=1)
        is_phone = torch.arange(x_len + y_len, device=phones.device) < x_len
        x = torch.cat([self.embed_phones(phones, bert, speakers), self.embed_tokens(tokens)], dim=1)  # [B, X+Y, D]
        positions = self.sequence_positions(phone_lens, x_len, y_len)
        return self.transformer(x, prefix_lm_mask(key_valid, is_phone), positions=positions)

    # ---- training ---------------------------------------------------------------------
    def forward(
        self,
        phones: Tensor,
        phone_lens: Tensor,
        tokens: Tensor,
        token_lens: Tensor,
        bert: Tensor | None = None,
        top_k: int = 3,
        speakers: Tensor | None = None,
    ) -> S1Output:
        """Teacher-forced training forward.

        phones ``[B, X]`` right-padded (any pad id), phone_lens ``[B]`` (each >= 1);
        tokens ``[B, Y]`` right-padded with any valid id (e.g. EOS), token_lens ``[B]`` (>= 0);
        bert ``[B, X, bert_dim]`` or None; speakers ``[B]`` (models with ``n_speakers > 0``) or None.

        Sequence = ``[x_0..x_{X-1}, y_0..y_{Y-1}]`` with the §5.4 prefix-LM mask and key
        padding. Targets: ``y_0`` from the last real phoneme's row ``L_b - 1``, ``y_j`` from
        the row of ``y_{j-1}``, EOS from the row of the last real token. The loss is the
        mean cross-entropy over these ``T_b + 1`` positions per item; padding contributes
        nothing, EOS is supervised exactly once per item.
        """
        b, x_len = phones.shape
        y_len = tokens.shape[1]
        device = phones.device
        h = self.hidden_states(phones, phone_lens, tokens, token_lens, bert, speakers)  # [B, X+Y, D]

        # Rows that predict targets 0..Y: last real phoneme, then each token position.
        rows = torch.cat(
            [(phone_lens - 1)[:, None], torch.arange(x_len, x_len + y_len, device=device).expand(b, y_len)], dim=1
        )  # [B, Y+1]
        h = h.gather(1, rows[:, :, None].expand(-1, -1, h.shape[-1]))
        linear = onednn_train_linear if self.training and onednn_training_applies(h, self.head.weight) else None
        logits = linear(h, self.head.weight, None) if linear is not None else self.head(h)  # [B, Y+1, V]

        token_valid = lengths_to_mask(token_lens, y_len)
        targets = torch.full((b, y_len + 1), IGNORE_INDEX, dtype=torch.long, device=device)
        targets[:, :y_len] = torch.where(token_valid, tokens, IGNORE_INDEX)
        targets.scatter_(1, token_lens[:, None].long(), self.eos_id)

        supervised = targets != IGNORE_INDEX
        n_tokens = supervised.sum()
        loss = F.cross_entropy(
            logits.float().reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        with torch.no_grad():
            scored = supervised & (targets != self.eos_id)
            n_scored = scored.sum().clamp(min=1)
            topk = logits.topk(min(top_k, self.vocab_size), dim=-1).indices  # [B, Y+1, k]
            hit = topk == targets[:, :, None]
            acc = (hit[:, :, 0] & scored).sum() / n_scored
            topk_acc = (hit.any(-1) & scored).sum() / n_scored
        return S1Output(loss=loss, logits=logits, targets=targets, acc=acc, topk_acc=topk_acc, n_tokens=n_tokens)

    # ---- inference --------------------------------------------------------------------
    def hidden(self, x: Tensor, mask: Tensor | None, input_pos: int | None = None,
               positions: Tensor | None = None) -> Tensor:
        """Transformer over embedded inputs: ``[B, S, D]`` -> ``[B, S, D]`` (see TransformerDecoder).

        positions ``[B, S]``: RoPE positions (phonemes from 0, tokens from the row's phoneme count);
        needed by RoPE models, ignored otherwise.
        """
        return self.transformer(x, mask, input_pos, positions if self.rope else None)

    def decode_one_token(
        self, tokens: Tensor, positions: Tensor, input_pos: int, mask: Tensor | None = None,
        phone_lens: Tensor | None = None,
    ) -> Tensor:
        """One cached step: tokens ``[B]`` at token positions ``[B]``, cache slot ``input_pos``.

        mask: bool ``[B, 1, 1, input_pos+1]`` (or None: every filled slot is visible).
        phone_lens ``[B]``: each row's phoneme count (RoPE models: the token's position is
        ``phone_lens + positions``). Returns logits ``[B, V]`` for the next token.
        """
        x = self.embed_tokens(tokens[:, None], positions[:, None])  # [B, 1, D]
        rope_pos = None
        if self.rope:
            if phone_lens is None:
                raise ValueError("a RoPE model needs phone_lens [B] to place a decoded token")
            rope_pos = (phone_lens + positions)[:, None]
        h = self.transformer(x, mask, input_pos, rope_pos)[:, -1]  # [B, D]
        return self.transformer.cached_linear()(h, self.head.weight, None, False)


def build_model(cfg: S1Config) -> Text2Semantic:
    """Build ``Text2Semantic`` from ``cfg.model`` (see configs/s1.json)."""
    m = cfg.model
    return Text2Semantic(
        codebook_size=m.codebook_size,
        phoneme_vocab_size=m.phoneme_vocab_size,
        dim=m.embedding_dim,
        n_layer=m.n_layer,
        n_head=m.n_head,
        ffn_dim=m.ffn_dim,
        dropout=m.dropout,
        pos_dropout=m.pos_dropout,
        bert_dim=m.bert_dim,
        position=m.position,
        n_speakers=m.n_speakers,
    )
