"""Period discriminators folded into the batch on the CPU (modules/hifigan.py ``DiscriminatorP._folded``): the
same values and gradients as the 2-D convs; short periods only; spectral norm is never folded."""

from __future__ import annotations

import pytest
import torch

from modules.hifigan import FOLD_MAX_PERIOD, DiscriminatorP, MultiPeriodDiscriminator

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.mark.parametrize("period", [2, 3, 5])
def test_folded_period_discriminator_equals_2d(period: int) -> None:
    torch.manual_seed(period)
    disc = DiscriminatorP(period, channel_divisor=16)
    x = torch.randn(3, 1, 1001, requires_grad=True)  # not a multiple of the period: reflect padding
    grad_out = None
    results = []
    for fold in (False, True):
        disc.fold = fold
        disc.zero_grad(set_to_none=True)
        x.grad = None
        logits, fmap = disc(x)
        if grad_out is None:
            grad_out = [torch.randn_like(t) for t in [logits, *fmap]]
        loss = sum((t * g).sum() for t, g in zip([logits, *fmap], grad_out))
        loss.backward()
        results.append(([logits, *fmap], x.grad.clone(), [p.grad.clone() for p in disc.parameters()]))
    (outs2d, gx2d, gp2d), (outs1d, gx1d, gp1d) = results
    assert [t.shape for t in outs2d] == [t.shape for t in outs1d]
    for a, b in zip(outs2d, outs1d):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gx1d, gx2d, atol=1e-5, rtol=1e-4)
    for a, b in zip(gp2d, gp1d):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_only_short_periods_fold() -> None:
    net_d = MultiPeriodDiscriminator(channel_divisor=16)
    folds = {d.period: d.fold for d in net_d.discriminators[1:]}
    assert folds == {p: p <= FOLD_MAX_PERIOD for p in (2, 3, 5, 7, 11)} and any(folds.values())


def test_spectral_norm_period_discriminators_stay_2d() -> None:
    net_d = MultiPeriodDiscriminator(periods=(2,), use_spectral_norm=True, channel_divisor=16)
    disc = net_d.discriminators[1]
    assert disc.fold is False
    disc.fold = True
    with pytest.raises(RuntimeError, match="spectral-norm period discriminator cannot run folded"):
        disc(torch.randn(1, 1, 512))
