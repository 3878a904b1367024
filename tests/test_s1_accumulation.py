"""Gradient accumulation in S1 training: k micro-batches (different lengths and padding) give the
gradient and the AdamW update of one batch holding every item, in one process and under 2-rank
DDP (gloo). fp32, dropout 0; equal within float tolerance (the summation order differs)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from s1.data import collate_s1
from s1.model import Text2Semantic
from s1.trainer import StepStats, accumulate_step, make_optimizer
from tests.pipeline import run_script
from tests.s1_accum_ddp_worker import CODEBOOK, RANK_MICRO, TRAIN, make_items, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

MICRO = ((0, 1), (2, 3, 4), (5,), (6, 7))  # every item once, in micro-batches of 2, 3, 1 and 2 items
TOL = {"rtol": 1e-4, "atol": 1e-6}


def grads(model: Text2Semantic) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def without_key_bias(name: str, t: torch.Tensor) -> torch.Tensor:
    """``t`` without the key part of a packed q/k/v bias.

    The key bias adds ``q . b_k`` to every logit of a query row, which the softmax cancels: its
    true gradient is 0 and what backward returns is rounding noise (checked below). AdamW divides
    the gradient by its own magnitude, so it turns that noise into steps of about the learning rate
    whose sign depends on the summation order. Nothing else in the model is like that.
    """
    if name.endswith("self_attn.in_proj.bias"):
        d = t.shape[0] // 3
        return torch.cat([t[:d], t[2 * d:]])
    return t


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(without_key_bias(k, a[k]), without_key_bias(k, b[k]), **TOL,
                                   msg=lambda m, k=k: f"{k}: {m}")


def union_grads(model: Text2Semantic) -> tuple[dict[str, torch.Tensor], float]:
    """Gradients of the token-mean loss of one batch holding every item (the reference), and that loss."""
    items = make_items()
    model.zero_grad(set_to_none=True)
    b = collate_s1(items, CODEBOOK)
    out = model(b.phones, b.phone_lens, b.tokens, b.token_lens)
    out.loss.backward()
    return grads(model), float(out.loss.detach())


def test_micro_batches_give_the_gradient_of_the_union_batch() -> None:
    items = make_items()
    model = tiny_model()
    reference, ref_loss = union_grads(model)

    micro = [collate_s1([items[i] for i in idx], CODEBOOK) for idx in MICRO]
    assert len({m.tokens.shape[1] for m in micro}) > 1  # really different paddings
    model.zero_grad(set_to_none=True)
    stats = accumulate_step(model, micro)
    assert isinstance(stats, StepStats)
    assert_close(grads(model), reference)
    key_bias = [g[g.shape[0] // 3: 2 * g.shape[0] // 3] for k, g in reference.items() if k.endswith("in_proj.bias")]
    assert key_bias and all(float(g.abs().max()) < 1e-5 for g in key_bias)  # see without_key_bias
    n_tokens = sum(len(it.tokens) + 1 for it in items)
    assert float(stats.n_tokens) == n_tokens
    assert float(stats.n_scored) == sum(len(it.tokens) for it in items)
    assert float(stats.loss_sum) / n_tokens == pytest.approx(ref_loss, rel=1e-5)

    # the check has teeth: averaging the micro-batch means (no token weighting) is a different gradient
    model.zero_grad(set_to_none=True)
    for m in micro:
        (model(m.phones, m.phone_lens, m.tokens, m.token_lens).loss / len(micro)).backward()
    naive = grads(model)
    assert any(not torch.allclose(naive[k], reference[k], **TOL) for k in reference)


def test_micro_batches_give_the_adamw_update_of_the_union_batch() -> None:
    items = make_items()
    a, b = tiny_model(), tiny_model()
    opt_a, opt_b = make_optimizer(a, TRAIN), make_optimizer(b, TRAIN)
    union = [collate_s1(items, CODEBOOK)]
    micro = [collate_s1([items[i] for i in idx], CODEBOOK) for idx in MICRO]
    for _ in range(3):  # several steps: the moments must agree too
        for model, opt, batches in ((a, opt_a, union), (b, opt_b, micro)):
            opt.zero_grad(set_to_none=True)
            accumulate_step(model, batches)
            opt.step()
    assert_close(dict(a.named_parameters()), dict(b.named_parameters()))
    before = dict(tiny_model().named_parameters())
    assert any(not torch.allclose(before[k], p) for k, p in a.named_parameters())  # the steps did something


def test_ddp_two_ranks_match_one_process(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    run_script("tests/s1_accum_ddp_worker.py", out, torchrun_nproc=2, timeout=180)
    got = torch.load(out, weights_only=True)

    used = sorted(i for rank in RANK_MICRO for idx in rank for i in idx)
    assert used == list(range(len(make_items())))  # the ranks together hold every item once
    model = tiny_model()
    reference, _ = union_grads(model)
    assert_close(got["grads"], reference)

    ref_model = copy.deepcopy(tiny_model())
    opt = make_optimizer(ref_model, TRAIN)
    opt.zero_grad(set_to_none=True)
    accumulate_step(ref_model, [collate_s1(make_items(), CODEBOOK)])
    opt.step()
    assert_close(got["params"], {n: p.detach() for n, p in ref_model.named_parameters()})
