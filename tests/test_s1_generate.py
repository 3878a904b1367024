"""S1 generation: cached == uncached, batched == per-item, stopping rules and bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from modules.transformer import KVCache, onednn_linear, onednn_linear_usable, plain_linear
from s1.generate import GenerationResult, LoopDetector, generate, generate_detailed, left_padded_prefix
from s1.model import Text2Semantic, prefix_lm_mask
from s1.sampling import PRESETS, SamplingParams

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

CODEBOOK = 40
N_PHONES = 30
GREEDY = PRESETS["greedy"]
SAMPLED = SamplingParams(top_k=10, top_p=0.9, temperature=1.2, repetition_penalty=1.35)


def tiny_model(seed: int = 0, bert_dim: int = 0, position: str = "sinusoid") -> Text2Semantic:
    torch.manual_seed(seed)
    return Text2Semantic(
        codebook_size=CODEBOOK, phoneme_vocab_size=N_PHONES, dim=32, n_layer=2, n_head=4, ffn_dim=64,
        dropout=0.1, pos_dropout=0.1, bert_dim=bert_dim, position=position,
    )


def rows(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three rows with different phoneme and prompt lengths (one without a prompt)."""
    g = torch.Generator().manual_seed(seed)
    phones = [torch.randint(0, N_PHONES, (n,), generator=g) for n in (6, 3, 9)]
    prompts = [torch.randint(0, CODEBOOK, (n,), generator=g) for n in (4, 0, 2)]
    return phones, prompts


def constant_hidden(model: Text2Semantic, head_column: torch.Tensor) -> Text2Semantic:
    """Make every hidden state e_0 so that the logits are ``head_column`` at every step."""
    with torch.no_grad():
        last = model.transformer.layers[-1].norm2
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 1.0
        model.head.weight.zero_()
        model.head.weight[:, 0] = head_column
    return model


def test_cached_logits_match_uncached() -> None:
    model = tiny_model().eval()
    phones, prompts = rows()
    g = torch.Generator().manual_seed(1)
    steps = torch.randint(0, CODEBOOK, (3, 6), generator=g)  # teacher-forced continuation
    with torch.inference_mode():
        p = left_padded_prefix(model, phones, prompts)
        s0 = p.x.shape[1]
        model.transformer.setup_cache(3, s0 + steps.shape[1])
        mask = prefix_lm_mask(p.key_valid, p.is_phone)
        cached = [model.head(model.hidden(p.x, mask, input_pos=0)[:, -1])]
        dec_mask = torch.cat([p.key_valid, torch.ones(3, steps.shape[1], dtype=torch.bool)], 1)[:, None, None]
        for t in range(steps.shape[1]):
            pos = p.next_positions + t
            cached.append(model.decode_one_token(steps[:, t], pos, s0 + t, dec_mask[..., : s0 + t + 1]))
        model.transformer.reset_cache()
        for t in range(steps.shape[1] + 1):
            pos = p.next_positions[:, None] + torch.arange(t)
            x = torch.cat([p.x, model.embed_tokens(steps[:, :t], pos)], dim=1)
            valid = torch.cat([p.key_valid, torch.ones(3, t, dtype=torch.bool)], 1)
            is_phone = torch.cat([p.is_phone, torch.zeros(3, t, dtype=torch.bool)], 1)
            full = model.head(model.hidden(x, prefix_lm_mask(valid, is_phone))[:, -1])
            torch.testing.assert_close(cached[t], full, rtol=0, atol=1e-4)


@pytest.mark.parametrize("position", ["sinusoid", "rope"])
def test_cached_step_equals_unpadded_training_forward(position: str) -> None:
    """Row 0 alone through the cache equals the training forward's logits (positions, alignment)."""
    model = tiny_model(position=position).eval()
    phones, prompts = rows()
    cont = torch.tensor([5, 6, 7])
    tokens = torch.cat([prompts[0], cont])
    with torch.inference_mode():
        ref = model(phones[0][None], torch.tensor([6]), tokens[None], torch.tensor([7])).logits[0]  # [8, V]
        p = left_padded_prefix(model, phones[:1], prompts[:1])
        model.transformer.setup_cache(1, 20)
        mask = prefix_lm_mask(p.key_valid, p.is_phone)
        got = [model.head(model.hidden(p.x, mask, input_pos=0, positions=p.seq_positions)[:, -1])]
        for t, tok in enumerate(cont.tolist()):
            got.append(model.decode_one_token(torch.tensor([tok]), p.next_positions + t, p.x.shape[1] + t,
                                              phone_lens=p.phone_lens))
        model.transformer.reset_cache()
    # training row 4 predicts token 4 (= cont[0]) from prompt token 3, etc.
    torch.testing.assert_close(torch.cat(got), ref[4:], rtol=0, atol=1e-4)


def test_greedy_cached_equals_uncached() -> None:
    model = tiny_model()
    phones, prompts = rows(1)
    kw = dict(max_new_tokens=[12, 20, 7], min_new_tokens=2)
    fast = generate(model, phones, prompts, GREEDY, **kw)
    slow = generate(model, phones, prompts, GREEDY, use_cache=False, **kw)
    assert [t.tolist() for t in fast] == [t.tolist() for t in slow]
    assert [len(t) for t in fast] != [0, 0, 0]


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_batched_equals_per_item(params: SamplingParams) -> None:
    model = tiny_model(3)
    phones, prompts = rows(2)
    caps = [15, 9, 22]  # rows finish at different steps (and by EOS): rows are dropped mid-way
    batched = generate_detailed(model, phones, prompts, params, max_new_tokens=caps, min_new_tokens=3, seed=7)
    for i in range(3):
        alone = generate_detailed(
            model, phones[i : i + 1], prompts[i : i + 1], params, max_new_tokens=caps[i], min_new_tokens=3, seed=7 + i
        )
        assert batched.tokens[i].tolist() == alone.tokens[0].tolist(), f"row {i}"
        assert batched.stop_reasons[i] == alone.stop_reasons[0]
    uncached = generate(model, phones, prompts, params, max_new_tokens=caps, min_new_tokens=3, seed=7, use_cache=False)
    assert [t.tolist() for t in uncached] == [t.tolist() for t in batched.tokens]


def test_seeded_sampling_is_reproducible() -> None:
    model = tiny_model(4)
    phones, prompts = rows(3)
    a = generate(model, phones, prompts, SAMPLED, max_new_tokens=15, min_new_tokens=15, seed=11)
    b = generate(model, phones, prompts, SAMPLED, max_new_tokens=15, min_new_tokens=15, seed=11)
    c = generate(model, phones, prompts, SAMPLED, max_new_tokens=15, min_new_tokens=15, seed=12)
    assert [t.tolist() for t in a] == [t.tolist() for t in b]
    assert [t.tolist() for t in a] != [t.tolist() for t in c]


def test_eos_blocked_for_min_new_tokens_and_stripped() -> None:
    column = torch.zeros(CODEBOOK + 1)
    column[CODEBOOK] = 10.0  # EOS dominates whenever it is allowed
    model = constant_hidden(tiny_model(), column)
    phones, prompts = rows()
    res = generate_detailed(model, phones, prompts, SAMPLED, max_new_tokens=50, min_new_tokens=5)
    assert [len(t) for t in res.tokens] == [5, 5, 5]
    assert res.stop_reasons == ["eos"] * 3
    assert all(int(t.max()) < CODEBOOK for t in res.tokens)
    empty = generate_detailed(model, phones, prompts, GREEDY, max_new_tokens=50, min_new_tokens=0)
    assert [t.numel() for t in empty.tokens] == [0, 0, 0]  # returned, not raised: the caller decides
    assert all(t.dtype == torch.long for t in empty.tokens)


def test_length_caps() -> None:
    column = torch.randn(CODEBOOK + 1, generator=torch.Generator().manual_seed(0))
    column[CODEBOOK] = -100.0  # EOS never wins
    model = constant_hidden(tiny_model(), column)
    phones, prompts = rows()  # 6, 3, 9 phonemes
    res = generate_detailed(model, phones, prompts, SAMPLED, max_new_tokens=[3, 8, 5], max_tokens_per_phoneme=None)
    assert [len(t) for t in res.tokens] == [3, 8, 5]
    assert res.stop_reasons == ["length"] * 3
    assert res.decode_steps == 7 and res.prefill_s > 0 and res.decode_s > 0  # 8 tokens: prefill + 7 steps
    ratio = generate(model, phones, prompts, SAMPLED, max_tokens_per_phoneme=1.5, min_new_tokens=0)
    assert [len(t) for t in ratio] == [9, math.ceil(4.5), math.ceil(13.5)]
    both = generate(model, phones, prompts, SAMPLED, max_new_tokens=6, max_tokens_per_phoneme=1.5)
    assert [len(t) for t in both] == [6, 5, 6]


def test_loop_detector_in_generation() -> None:
    """A row that holds one token (a pause, a held vowel) runs to its cap; a looping row is cut (s1.loops)."""
    column = torch.zeros(CODEBOOK + 1)
    column[7] = 5.0
    column[CODEBOOK] = -100.0
    model = constant_hidden(tiny_model(), column)
    phones, prompts = rows()
    no_penalty = SamplingParams(greedy=True, repetition_penalty=1.0)
    res = generate_detailed(model, phones, prompts, no_penalty, max_new_tokens=100, max_tokens_per_phoneme=None,
                            loop_detector=LoopDetector())
    assert [t.tolist() for t in res.tokens] == [[7] * 100] * 3
    assert res.stop_reasons == ["length"] * 3
    cut = generate_detailed(model, phones[:1], prompts[:1], no_penalty, max_new_tokens=100, max_tokens_per_phoneme=None,
                            loop_detector=LoopDetector(min_period=1, min_distinct=2, min_span=10))
    assert cut.tokens[0].tolist() == [7] * 100  # one distinct token: never a loop, whatever the periods


def test_bert_rows_batched_equals_per_item() -> None:
    model = tiny_model(5, bert_dim=6)
    phones, prompts = rows(4)
    g = torch.Generator().manual_seed(2)
    bert = [torch.randn(p.numel(), 6, generator=g) for p in phones]
    batched = generate(model, phones, prompts, GREEDY, bert=bert, max_new_tokens=10, min_new_tokens=10)
    for i in range(3):
        alone = generate(model, phones[i : i + 1], prompts[i : i + 1], GREEDY, bert=bert[i : i + 1], max_new_tokens=10,
                         min_new_tokens=10)
        assert batched[i].tolist() == alone[0].tolist()
    other = generate(model, phones, prompts, GREEDY, bert=[b * 3 for b in bert], max_new_tokens=10, min_new_tokens=10)
    assert [t.tolist() for t in other] != [t.tolist() for t in batched]


def test_generate_restores_mode_and_frees_cache() -> None:
    model = tiny_model().train()
    phones, prompts = rows()
    out = generate(model, phones, None, GREEDY, max_new_tokens=4)  # reference-free: no prompt tokens
    assert isinstance(out, list) and len(out) == 3
    assert model.training
    assert model.transformer.caches is None
    assert isinstance(generate_detailed(model.eval(), phones, prompts, GREEDY, max_new_tokens=2), GenerationResult)
    assert not model.training


def test_input_errors() -> None:
    model = tiny_model()
    phones, prompts = rows()
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, [torch.zeros(0, dtype=torch.long)], None, GREEDY, max_new_tokens=3)
    with pytest.raises(ValueError, match="prompt tokens must lie"):
        generate(model, phones[:1], [torch.tensor([CODEBOOK])], GREEDY, max_new_tokens=3)
    with pytest.raises(ValueError, match="3 phoneme rows but 2 prompt rows"):
        generate(model, phones, prompts[:2], GREEDY, max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens and/or"):
        generate(model, phones, prompts, GREEDY, max_new_tokens=None, max_tokens_per_phoneme=None)


def test_kv_cache_bounds_and_row_dropping() -> None:
    cache = KVCache(3, 2, 5, 4)
    kv = torch.arange(3, dtype=torch.float32)[None, :, None, None, None].expand(2, 3, 2, 2, 4)
    k, v = cache.update(0, kv)
    assert k.shape == (3, 2, 2, 4)
    cache.keep_rows(torch.tensor([2, 0]))
    k, _ = cache.update(2, torch.zeros(2, 2, 2, 1, 4))
    assert k.shape == (2, 2, 3, 4)
    assert k[:, 0, 0, 0].tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="overflow"):
        cache.update(5, torch.zeros(2, 2, 2, 1, 4))
    with pytest.raises(ValueError, match="holds 2 rows"):
        cache.update(3, torch.zeros(2, 3, 2, 1, 4))


def test_repetition_penalty_covers_prompt_and_generated_tokens() -> None:
    column = torch.zeros(CODEBOOK + 1)
    column[3], column[5], column[CODEBOOK] = 2.0, 1.8, -100.0  # 2.0 / 1.35 < 1.8
    model = constant_hidden(tiny_model(), column)
    phones, _ = rows()
    params = SamplingParams(greedy=True, repetition_penalty=1.35)
    with_prompt = generate(model, phones[:1], [torch.tensor([3, 3, 9])], params, max_new_tokens=1)
    no_prompt = generate(model, phones[:1], None, params, max_new_tokens=3)
    assert with_prompt[0].tolist() == [5]
    assert no_prompt[0].tolist() == [3, 5, 3]  # penalised once per id: 2/1.35 > 1.8/1.35


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not built in")
def test_onednn_linear_fast_path_equals_plain() -> None:
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(48, 32, generator=g), torch.randn(48, generator=g)
    with torch.inference_mode():
        for shape in [(1, 32), (3, 1, 32), (2, 5, 32)]:
            x = torch.randn(*shape, generator=g)
            for relu in (False, True):
                torch.testing.assert_close(onednn_linear(x, w, b, relu), plain_linear(x, w, b, relu))
    assert onednn_linear_usable(w) and not onednn_linear_usable(w.double())
