"""S1 sampling: penalty semantics, filter order, top-p/top-k, greedy, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from s1.sampling import (
    PRESETS,
    SamplingParams,
    apply_repetition_penalty_,
    filter_logits,
    pick_tokens,
    sample_next,
    token_presence,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def test_penalty_once_per_unique_token() -> None:
    logits = torch.tensor([[2.0, -2.0, 4.0, 1.0, -1.0]])
    prev = torch.tensor([[0, 0, 0, 1, 1, 2]])
    seen = token_presence(prev, None, 5)
    assert seen.tolist() == [[True, True, True, False, False]]
    out = apply_repetition_penalty_(logits.clone(), seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, 1.0, -1.0]]


def test_penalty_ignores_padding_and_covers_prompt() -> None:
    prev = torch.tensor([[3, 1, 0, 0], [2, 2, 2, 2]])
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    seen = token_presence(prev, mask, 4)
    assert seen.tolist() == [[False, True, False, True], [False, False, True, False]]
    assert not token_presence(torch.zeros(2, 0, dtype=torch.long), None, 4).any()


def test_greedy_is_argmax_after_penalty() -> None:
    logits = torch.tensor([[3.0, 2.5, -1.0]])
    params = SamplingParams(greedy=True, repetition_penalty=1.5)
    assert sample_next(logits.clone(), torch.tensor([[1]]), params).tolist() == [0]
    # token 0 was seen: 3.0/1.5 = 2.0 < 2.5
    penalised = logits.clone()
    assert sample_next(penalised, torch.tensor([[0]]), params).tolist() == [1]
    assert penalised.tolist() == [[2.0, 2.5, -1.0]]  # in place, as documented


def test_top_p_keeps_top_token_and_drops_the_tail() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    kept = lambda p: torch.isfinite(filter_logits(logits, SamplingParams(top_k=0, top_p=p)))[0].tolist()  # noqa: E731
    assert kept(0.7) == [True, False, False]  # cumulative 0.8 > 0.7 removes the second token
    assert kept(0.85) == [True, True, False]
    assert kept(1e-6) == [True, False, False]  # the top token always survives
    g = torch.Generator().manual_seed(0)
    picks = {int(pick_tokens(logits.clone(), SamplingParams(top_k=0, top_p=0.01), g)) for _ in range(50)}
    assert picks == {0}


def test_top_p_is_applied_before_temperature() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    cold = filter_logits(logits, SamplingParams(top_k=0, top_p=0.85, temperature=1.0))
    hot = filter_logits(logits, SamplingParams(top_k=0, top_p=0.85, temperature=50.0))
    assert torch.isfinite(cold).tolist() == torch.isfinite(hot).tolist() == [[True, True, False, False]]
    torch.testing.assert_close(hot[:, :2], cold[:, :2] / 50.0)


def test_top_k_count() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    out = filter_logits(logits, SamplingParams(top_k=7, top_p=1.0))
    assert (torch.isfinite(out).sum(-1) == 7).all()
    top7 = logits.topk(7).indices
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        tok = pick_tokens(logits.clone(), SamplingParams(top_k=7), g)
        assert (top7 == tok[:, None]).any(-1).all()


def test_sampling_follows_the_distribution() -> None:
    probs = torch.tensor([0.6, 0.3, 0.1])
    logits = probs.log().expand(4000, 3).clone()
    tok = pick_tokens(logits, SamplingParams(top_k=0), torch.Generator().manual_seed(3))
    freq = torch.bincount(tok, minlength=3).float() / 4000
    assert (freq - probs).abs().max() < 0.03


def test_seeded_reproducibility_and_per_row_generators() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 100)
    params = SamplingParams(top_k=0, temperature=2.0)
    a = [pick_tokens(logits.clone(), params, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    draws = {tuple(pick_tokens(logits.clone(), params, torch.Generator().manual_seed(s)).tolist()) for s in range(8)}
    assert len(draws) > 1
    # one generator per row: a row's sample does not depend on the other rows
    gens = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    batch = pick_tokens(logits.clone(), params, gens)
    for i in range(3):
        alone = pick_tokens(logits[i : i + 1].clone(), params, [torch.Generator().manual_seed(10 + i)])
        assert int(alone) == int(batch[i])
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        pick_tokens(logits.clone(), params, gens[:2])


def test_params_validation_and_presets() -> None:
    for bad in (dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5), dict(temperature=0.0), dict(repetition_penalty=0)):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    assert {"stable", "gshead", "expressive", "greedy", "gsv1"} <= set(PRESETS)
    assert PRESETS["greedy"].greedy
    assert all(math.isclose(p.repetition_penalty, 1.35) for p in PRESETS.values())
