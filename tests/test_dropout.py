"""modules/dropout.py: CPU keep masks at the right rate, dropout and attention with dropout equal to their
written-out definitions (values and gradients), the same as F.dropout / SDPA when nothing is dropped."""

import math

import pytest
import torch
import torch.nn.functional as F

from modules import dropout as drop


def test_keep_mask_rate_shape_and_seeding():
    torch.manual_seed(0)
    keep = drop.keep_mask((1000, 1001), 0.1)
    assert keep.dtype == torch.bool and keep.shape == (1000, 1001)
    rate = 1 - keep.float().mean().item()
    assert abs(rate - 0.1) < 0.002  # 1M draws: sd of the rate 3e-4
    for p in (0.0, 0.5, 0.9):
        assert abs(1 - drop.keep_mask((200_000,), p).float().mean().item() - p) < 0.01
    assert drop.keep_mask((200_000,), 1 - 1e-7).float().mean().item() < 1e-3  # no wrap-around near p = 1
    assert drop.keep_mask((200_000,), 1e-7).all()  # p rounds to 0
    torch.manual_seed(3)
    a = drop.keep_mask((7, 9), 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, drop.keep_mask((7, 9), 0.3))  # the default generator's state decides


def test_dropout_is_mask_times_scale_and_off_in_eval():
    x = torch.randn(4, 33, 16, requires_grad=True)
    torch.manual_seed(1)
    y = drop.dropout(x, 0.2)
    torch.manual_seed(1)
    keep = drop.keep_mask(x.shape, 0.2)
    torch.testing.assert_close(y, x * keep / 0.8)
    (y * torch.arange(16.0)).sum().backward()
    torch.testing.assert_close(x.grad, (keep / 0.8) * torch.arange(16.0).expand_as(x))
    assert drop.dropout(x, 0.2, training=False) is x
    assert drop.dropout(x, 0.0) is x


def reference_attention(q, k, v, mask, keep, p):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) * keep / (1 - p)) @ v


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_attention_dropout_matches_its_definition_with_gradients(p):
    g = torch.Generator().manual_seed(0)
    b, h, s, d = 2, 3, 11, 8
    q, k, v = (torch.randn(b, h, s, d, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.ones(s, s, dtype=torch.bool).tril()[None, None].repeat(b, 1, 1, 1)
    mask[:, :, :, :3] = True  # a prefix every row sees
    mask[1, :, :, 9:] = False  # key padding in item 1
    torch.manual_seed(5)
    out = drop.attention_dropout(q, k, v, mask, p)
    torch.manual_seed(5)
    keep = drop.keep_mask((b, h, s, s), p)
    ref_inputs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    ref = reference_attention(*ref_inputs, mask, keep, p)
    torch.testing.assert_close(out, ref)
    w = torch.randn(out.shape, generator=g)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    for ours, theirs in zip((q, k, v), ref_inputs):
        torch.testing.assert_close(ours.grad, theirs.grad)


def test_attention_dropout_keeping_everything_is_sdpa_over_keep_rate(monkeypatch):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 9, 16, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 9, 9, generator=g) > 0.3
    mask[..., 0] = True
    monkeypatch.setattr(drop, "keep_mask", lambda shape, p, device="cpu": torch.ones(shape, dtype=torch.bool))
    out = drop.attention_dropout(q, k, v, mask, 0.25)
    torch.testing.assert_close(out * 0.75, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
