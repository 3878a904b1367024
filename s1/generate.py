"""Autoregressive S1 generation with a preallocated KV cache (spec §6).

Per row ``i`` the prefix is ``[phones_i ; prompt_tokens_i]`` (phoneme positions
``0..L_i-1``, token positions ``0..P_i-1``); the token sampled at step ``t`` is fed at
token position ``P_i + t``, exactly where it sits after the prompt. Rows of different
lengths are LEFT-padded to a common prefix length ``S0`` and a key mask hides each row's
padding, so every row computes what it would compute alone. All rows share cache slots:
the token of step ``t`` goes to slot ``S0 + t``.

Cached path: one prefill over the whole prefix, then one ``decode_one_token`` per step,
both through the same model weights. ``use_cache=False`` re-runs the full forward every
step (reference path for tests and benchmarks). Finished rows are dropped from the batch
(and from every cache) as soon as they finish.

Stopping, per row: a sampled EOS, or (``stop_on_argmax_eos``, GPT-SoVITS behaviour) EOS
being the argmax of the penalised logits; the row's length cap; the optional loop
detector (``s1.loops``). EOS is blocked (logit -inf) for the first ``min_new_tokens`` steps. Returned
tokens are exactly the newly generated ones: no prompt, no EOS; with ``drop_first_token``
(GPT-SoVITS v1 rule, ``infer/rules.py``) the first generated token is sampled and fed back
as usual but left out of the result (and of the length cap).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from s1.compiled import trusted_repeat
from s1.loops import LoopDetector
from s1.model import Text2Semantic, prefix_lm_mask
from s1.sampling import SamplingParams, apply_repetition_penalty_, pick_tokens, token_presence
from s1.weights import decode_threads
from s1.weights import refresh as refresh_decode_weights

DEFAULT_TOKENS_PER_PHONEME = 10.0  # 25 Hz tokens; speech runs ~3-25 phonemes/s, so < 8.3 tokens/phoneme


@dataclass
class GenerationResult:
    """tokens: per row, the new tokens (CPU LongTensor, no EOS; may be empty).
    stop_reasons: per row, "eos", "length" (cap reached) or "loop" (loop detector).
    prefill_s: wall time up to the first sampled token (prefix forward + first sample);
    decode_s: wall time of the remaining steps; decode_steps: their number.
    (Every step reads the sampled tokens on the host, so the times are exact on GPUs too.)"""

    tokens: list[Tensor]
    stop_reasons: list[str]
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0


@dataclass
class Prefix:
    """The batch's prefixes ``[phones_i ; prompt_i]``, LEFT-padded to a common length ``S0``.

    x: embeddings ``[B, S0, D]`` (zeros on padding); key_valid ``[B, S0]``: False on padding;
    is_phone ``[B, S0]``: True on phoneme slots; next_positions ``[B]``: token position of the
    first generated token (= prompt length ``P_i``); phone_lens ``[B]``: ``L_i``; seq_positions
    ``[B, S0]``: RoPE positions (phonemes ``0..L_i-1``, prompt ``L_i..L_i+P_i-1``, 0 on padding).
    """

    x: Tensor
    key_valid: Tensor
    is_phone: Tensor
    next_positions: Tensor
    phone_lens: Tensor
    seq_positions: Tensor


def left_padded_prefix(
    model: Text2Semantic, phones: Sequence[Tensor], prompts: Sequence[Tensor], bert: Sequence[Tensor] | None = None,
    speakers: Tensor | None = None,
) -> Prefix:
    """Embed each row at its own positions (phonemes ``0..L_i-1``, tokens ``0..P_i-1``), then left-pad.

    speakers ``[B]``: speaker ids (models with ``n_speakers > 0``) or None."""
    device = next(model.parameters()).device
    n_rows = len(phones)
    lens = [ph.numel() + pr.numel() for ph, pr in zip(phones, prompts)]
    s0 = max(lens)
    key_valid = torch.zeros(n_rows, s0, dtype=torch.bool, device=device)
    is_phone = torch.zeros(n_rows, s0, dtype=torch.bool, device=device)
    seq_positions = torch.zeros(n_rows, s0, dtype=torch.long, device=device)
    rows = []
    for i, (ph, pr) in enumerate(zip(phones, prompts)):
        ph, pr = ph.to(device), pr.to(device)
        feats = None if bert is None else bert[i].to(device)[None]
        spk = None if speakers is None else speakers[i : i + 1].to(device)
        rows.append(torch.cat([model.embed_phones(ph[None], feats, spk), model.embed_tokens(pr[None])], dim=1)[0])
        pad = s0 - lens[i]
        key_valid[i, pad:] = True
        is_phone[i, pad : pad + ph.numel()] = True
        seq_positions[i, pad:] = torch.arange(lens[i], device=device)
    x = rows[0].new_zeros(n_rows, s0, rows[0].shape[-1])
    for i, e in enumerate(rows):
        x[i, s0 - lens[i] :] = e
    next_positions = torch.tensor([pr.numel() for pr in prompts], dtype=torch.long, device=device)
    phone_lens = torch.tensor([ph.numel() for ph in phones], dtype=torch.long, device=device)
    return Prefix(x=x, key_valid=key_valid, is_phone=is_phone, next_positions=next_positions,
                  phone_lens=phone_lens, seq_positions=seq_positions)


def _check_inputs(
    model: Text2Semantic, phones: Sequence[Tensor], prompts: Sequence[Tensor], bert: Sequence[Tensor] | None
) -> None:
    if len(phones) == 0:
        raise ValueError("generate needs at least one row of phonemes")
    if len(prompts) != len(phones):
        raise ValueError(f"{len(phones)} phoneme rows but {len(prompts)} prompt rows")
    if bert is not None and len(bert) != len(phones):
        raise ValueError(f"{len(phones)} phoneme rows but {len(bert)} bert rows")
    for i, (ph, pr) in enumerate(zip(phones, prompts)):
        if ph.dim() != 1 or ph.numel() == 0:
            raise ValueError(f"row {i}: phones must be a non-empty 1-D tensor, got shape {tuple(ph.shape)}")
        if pr.dim() != 1:
            raise ValueError(f"row {i}: prompt tokens must be 1-D, got shape {tuple(pr.shape)}")
        if pr.numel() and (int(pr.min()) < 0 or int(pr.max()) >= model.codebook_size):
            raise ValueError(f"row {i}: prompt tokens must lie in [0, {model.codebook_size}), got {pr.tolist()}")


def _row_caps(
    phones: Sequence[Tensor], max_new_tokens: int | Sequence[int] | None, max_tokens_per_phoneme: float | None
) -> list[int]:
    n = len(phones)
    if max_new_tokens is None and max_tokens_per_phoneme is None:
        raise ValueError("give max_new_tokens and/or max_tokens_per_phoneme to bound generation")
    caps = [math.inf] * n
    if max_new_tokens is not None:
        fixed = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(fixed) != n:
            raise ValueError(f"max_new_tokens has {len(fixed)} entries for {n} rows")
        caps = [min(c, f) for c, f in zip(caps, fixed)]
    if max_tokens_per_phoneme is not None:
        if max_tokens_per_phoneme <= 0:
            raise ValueError(f"max_tokens_per_phoneme must be > 0, got {max_tokens_per_phoneme}")
        caps = [min(c, math.ceil(max_tokens_per_phoneme * ph.numel())) for c, ph in zip(caps, phones)]
    return [max(1, int(c)) for c in caps]


@dataclass
class StepTokens:
    """What ``generate_steps`` yields after each step: the rows' tokens so far (live lists, no copy).

    ``tokens(i)``: row ``i``'s new tokens so far (as the result will hold them); ``finished(i)``:
    whether row ``i`` has stopped. The loop detector may shorten a row's list when it cuts a loop.
    """

    out: list[list[int]]
    reasons: list[str]
    drop: int
    step: int

    def tokens(self, row: int) -> list[int]:
        return self.out[row][self.drop:]

    def finished(self, row: int) -> bool:
        return bool(self.reasons[row])


@torch.inference_mode()
def generate_steps(
    model: Text2Semantic,
    phones: Sequence[Tensor],
    prompt_tokens: Sequence[Tensor] | None,
    params: SamplingParams,
    *,
    max_new_tokens: int | Sequence[int] | None = None,
    max_tokens_per_phoneme: float | None = DEFAULT_TOKENS_PER_PHONEME,
    min_new_tokens: int = 11,
    seed: int | Sequence[int] = 0,
    bert: Sequence[Tensor] | None = None,
    use_cache: bool = True,
    stop_on_argmax_eos: bool = True,
    loop_detector: LoopDetector | None = None,
    drop_first_token: bool = False,
    speakers: Tensor | None = None,
) -> Generator[StepTokens, None, GenerationResult]:
    """Generate semantic tokens for a batch of rows, yielding ``StepTokens`` after every step (for
    streaming) and returning the ``GenerationResult``; see ``generate`` for the arguments."""
    n_rows = len(phones)
    prompts = list(prompt_tokens) if prompt_tokens is not None else [torch.zeros(0, dtype=torch.long)] * n_rows
    _check_inputs(model, phones, prompts, bert)
    caps = _row_caps(phones, max_new_tokens, max_tokens_per_phoneme)
    seeds = [seed + i for i in range(n_rows)] if isinstance(seed, int) else list(seed)
    if len(seeds) != n_rows:
        raise ValueError(f"{len(seeds)} seeds for {n_rows} rows")

    device = next(model.parameters()).device
    eos = model.eos_id
    drop = int(drop_first_token)
    t_start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        if use_cache:
            refresh_decode_weights(model)  # the weight format's packed linears (s1.weights), repacked if stale
        prefix = left_padded_prefix(model, phones, prompts, bert, speakers)
        x0, key_valid, is_phone, positions = prefix.x, prefix.key_valid, prefix.is_phone, prefix.next_positions
        phone_lens, seq_pos = prefix.phone_lens, prefix.seq_positions
        s0 = x0.shape[1]
        model.token_position.reserve(int(positions.max()) + max(caps) + 1)
        seen = torch.stack([token_presence(pr.to(device)[None], None, model.vocab_size)[0] for pr in prompts])
        gens = []
        for s in seeds:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(s))
            gens.append(gen)

        # ---- prefill ------------------------------------------------------------------
        max_len = s0 + max(caps)
        if use_cache:
            model.transformer.setup_cache(n_rows, max_len, device=device)
            dec_mask = torch.ones(n_rows, 1, 1, max_len, dtype=torch.bool, device=device)
            dec_mask[:, 0, 0, :s0] = key_valid
            padded = not bool(key_valid.all())
            h = model.hidden(x0, prefix_lm_mask(key_valid, is_phone), input_pos=0, positions=seq_pos)
        else:
            seq = x0
            h = model.hidden(seq, prefix_lm_mask(key_valid, is_phone), positions=seq_pos)
        logits = model.head(h[:, -1])  # [B, V]

        # ---- decode loop --------------------------------------------------------------
        alive = list(range(n_rows))  # global row index of each live batch row
        out: list[list[int]] = [[] for _ in range(n_rows)]
        reasons = [""] * n_rows
        step = 0
        last_kind = None  # (batch rows, padded, threads) of the previous decode step
        while True:
            logits = logits.float()
            if step < min_new_tokens:
                logits[:, eos] = float("-inf")
            apply_repetition_penalty_(logits, seen, params.repetition_penalty)
            tok = pick_tokens(logits, params, [gens[g] for g in alive])  # [B]
            stop = tok == eos
            if stop_on_argmax_eos and step >= min_new_tokens:
                stop |= logits.argmax(dim=-1) == eos
            keep: list[int] = []
            tok_list, stop_list = tok.tolist(), stop.tolist()  # host sync
            if step == 0:
                t_first = time.perf_counter()
            for r, (g, t, s) in enumerate(zip(alive, tok_list, stop_list)):
                if s:
                    reasons[g] = "eos"
                    continue
                out[g].append(t)
                if loop_detector is not None:
                    n_keep = loop_detector.check(out[g])
                    if n_keep is not None:
                        del out[g][n_keep:]
                        reasons[g] = "loop"
                        continue
                if len(out[g]) - drop >= caps[g]:
                    reasons[g] = "length"
                    continue
                keep.append(r)
            yield StepTokens(out, reasons, drop, step)
            if not keep:
                break
            seen.scatter_(1, tok[:, None], True)
            if len(keep) < len(alive):
                rows = torch.tensor(keep, dtype=torch.long, device=device)
                alive = [alive[r] for r in keep]
                tok, positions, seen, phone_lens = tok[rows], positions[rows], seen[rows], phone_lens[rows]
                if use_cache:
                    model.transformer.keep_rows(rows)
                    dec_mask = dec_mask[rows]
                    padded = not bool(dec_mask[:, 0, 0, :s0].all())
                else:
                    seq, key_valid, is_phone, seq_pos = seq[rows], key_valid[rows], is_phone[rows], seq_pos[rows]
            if use_cache:
                cur = s0 + step  # cache slot of this step's token
                mask = dec_mask[:, :, :, : cur + 1] if padded else None
                with decode_threads(model):  # the thread count timed fastest for this step (s1.weights)
                    kind = (len(alive), padded, torch.get_num_threads())  # a compiled step's guards run when it changes
                    with trusted_repeat(model, kind == last_kind):  # (s1.compiled)
                        logits = model.decode_one_token(tok, positions, cur, mask, phone_lens)
                last_kind = kind
            else:
                seq = torch.cat([seq, model.embed_tokens(tok[:, None], positions[:, None])], dim=1)
                key_valid = torch.cat([key_valid, key_valid.new_ones(len(alive), 1)], dim=1)
                is_phone = torch.cat([is_phone, is_phone.new_zeros(len(alive), 1)], dim=1)
                seq_pos = torch.cat([seq_pos, (phone_lens + positions)[:, None]], dim=1)
                logits = model.head(model.hidden(seq, prefix_lm_mask(key_valid, is_phone), positions=seq_pos)[:, -1])
            positions = positions + 1
            step += 1
        t_end = time.perf_counter()
    finally:
        model.transformer.reset_cache()
        model.train(was_training)
    return GenerationResult(
        tokens=[torch.tensor(o[drop:], dtype=torch.long) for o in out],
        stop_reasons=reasons,
        prefill_s=t_first - t_start,
        decode_s=t_end - t_first,
        decode_steps=step,
    )


def generate_detailed(model: Text2Semantic, phones: Sequence[Tensor], prompt_tokens: Sequence[Tensor] | None,
                      params: SamplingParams, **options: Any) -> GenerationResult:
    """``generate_steps`` run to the end (``options``: its keyword arguments): the ``GenerationResult``."""
    return run_to_end(generate_steps(model, phones, prompt_tokens, params, **options))


def run_to_end(steps: Generator[StepTokens, None, GenerationResult]) -> GenerationResult:
    """Drive a ``generate_steps`` generator to its end and return its ``GenerationResult``."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def generate(
    model: Text2Semantic,
    phones: Sequence[Tensor],
    prompt_tokens: Sequence[Tensor] | None,
    params: SamplingParams,
    *,
    max_new_tokens: int | Sequence[int] | None = None,
    max_tokens_per_phoneme: float | None = DEFAULT_TOKENS_PER_PHONEME,
    min_new_tokens: int = 11,
    seed: int | Sequence[int] = 0,
    bert: Sequence[Tensor] | None = None,
    use_cache: bool = True,
    stop_on_argmax_eos: bool = True,
    loop_detector: LoopDetector | None = None,
    drop_first_token: bool = False,
    speakers: Tensor | None = None,
) -> list[Tensor]:
    """Continue each row's prompt tokens; return ONLY the new tokens per row (CPU LongTensors).

    Args:
        model: a ``Text2Semantic`` (put in eval mode for the call, restored afterwards).
        phones: per row, phoneme ids ``[L_i]`` (prompt text + target text), non-empty.
        prompt_tokens: per row, prompt semantic tokens ``[P_i]`` (may be empty), or None.
        params: sampling settings (``s1.sampling``).
        max_new_tokens: fixed cap on new tokens (an int, or one per row).
        max_tokens_per_phoneme: cap per row of ``ceil(ratio * L_i)`` new tokens; with both
            caps the smaller one wins (at least one must be given).
        min_new_tokens: EOS is impossible during the first ``min_new_tokens`` steps.
        seed: row ``i`` samples from a generator seeded ``seed + i`` (or ``seed[i]``), so a
            row's sample does not depend on the other rows in the batch.
        bert: per row, features ``[L_i, bert_dim]`` when the model has ``bert_dim > 0``.
        use_cache: False re-runs the whole sequence each step (slow reference path).
        stop_on_argmax_eos: also stop when EOS is the argmax of the penalised logits.
        loop_detector: optional ``LoopDetector`` that stops (and trims) a looping row.
        drop_first_token: leave each row's first generated token out of the result (it is
            still fed back and penalised); the caps count the returned tokens. For S1 models
            trained with v1 alignment, which never learned to predict the first token.
        speakers: ``[B]`` speaker ids for models with ``n_speakers > 0`` (else None).

    A row can come back empty (EOS right after ``min_new_tokens = 0`` steps); this function
    does not raise for it — the caller decides (tts treats it as an error).
    """
    return generate_detailed(
        model,
        phones,
        prompt_tokens,
        params,
        max_new_tokens=max_new_tokens,
        max_tokens_per_phoneme=max_tokens_per_phoneme,
        min_new_tokens=min_new_tokens,
        seed=seed,
        bert=bert,
        use_cache=use_cache,
        stop_on_argmax_eos=stop_on_argmax_eos,
        loop_detector=loop_detector,
        drop_first_token=drop_first_token,
        speakers=speakers,
    ).tokens
