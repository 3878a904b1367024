"""modules/train_linear.py: the oneDNN training linear equals F.linear (+ ReLU) in values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from modules import train_linear as tl

pytestmark = pytest.mark.skipif(not tl._HAS_ONEDNN, reason="PyTorch built without oneDNN")


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_train_linear_matches_f_linear(relu, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 16, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True) if bias else None
    y = tl.onednn_train_linear(x, w, b, relu)
    refs = [t.detach().clone().requires_grad_() for t in (x, w)] + ([b.detach().clone().requires_grad_()] if bias
                                                                   else [])
    ref = F.linear(refs[0], refs[1], refs[2] if bias else None)
    ref = F.relu(ref) if relu else ref
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert y.shape == (3, 7, 24)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    ref.backward(gy)
    for ours, theirs in zip([x, w] + ([b] if bias else []), refs):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-4)


def test_used_only_where_it_applies(monkeypatch):
    x, w = torch.zeros(2, 4), torch.zeros(3, 4)
    monkeypatch.setattr(tl, "cpu_vendor", lambda: "AuthenticAMD")
    assert tl.onednn_training_applies(x, w)
    assert not tl.onednn_training_applies(x.double(), w.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not tl.onednn_training_applies(x, w)
    monkeypatch.setattr(tl, "cpu_vendor", lambda: "GenuineIntel")
    assert not tl.onednn_training_applies(x, w)
