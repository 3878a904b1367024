"""The extra prior-mean target (``train.c_prior_mean``, ``modules.losses.prior_mean_loss``).

Without it the demo's S2 collapses its prior mean to a constant within 200 steps and the
prior path (what inference uses) stays flat for hundreds of steps (README, "Learning").
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.config import ConfigError, S2Config, from_dict
from modules.losses import kl_loss, prior_mean_loss
from tests.pipeline import S2Dump, read_scalars, run_train_s2, write_config
from tests.test_s2_model import _batch, _tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def _stats(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    m_p, target = (torch.randn(2, 3, 7, generator=g) for _ in range(2))
    mask = torch.ones(2, 1, 7)
    mask[1, :, 5:] = 0
    return m_p, target, mask


def test_value_and_gradients_are_the_prior_means_only():
    m_p, target, mask = _stats()
    m_p.requires_grad_(True)
    target.requires_grad_(True)
    loss = prior_mean_loss(m_p, target, mask)
    expected = (0.5 * (m_p - target).pow(2) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    torch.testing.assert_close(m_p.grad, ((m_p - target) * mask / mask.sum()).detach())
    assert target.grad is None  # only the prior mean learns from it
    assert prior_mean_loss(target, target, mask).item() == 0.0


def test_gradient_is_the_unit_variance_kls_gradient_averaged_over_the_posterior_noise():
    """With an identity flow and a unit-variance prior, KL(q||p)'s gradient for m_p averaged over many
    posterior samples ``z = m_q + σ_q ε`` equals this loss's gradient with ``target = m_q``."""
    m_p, m_q, mask = _stats(1)
    logs_p = torch.zeros_like(m_p)
    logs_q = torch.full_like(m_q, -0.2)
    n = 20_000
    m_p_many = m_p.repeat(n, 1, 1).requires_grad_(True)
    eps = torch.randn(n * 2, 3, 7, generator=torch.Generator().manual_seed(2))
    z_p = (m_q.repeat(n, 1, 1) + eps * logs_q.exp().repeat(n, 1, 1))
    kl_loss(z_p, logs_q.repeat(n, 1, 1), m_p_many, logs_p.repeat(n, 1, 1), mask.repeat(n, 1, 1)).backward()
    kl_grad = m_p_many.grad.view(n, 2, 3, 7).sum(0) / 3  # KL sums channels, the mean over frames of n copies
    m_p.requires_grad_(True)
    (prior_mean_loss(m_p, m_q, mask) / 3).backward()
    torch.testing.assert_close(kl_grad, m_p.grad, atol=0.02, rtol=0.05)


def test_wide_prior_channels_are_not_down_weighted():
    """The same error costs the same in every channel, whatever the prior's width: a channel with a wide
    prior (the content-carrying channels of a young S2) is not divided by its variance as in the KL."""
    m_p = torch.zeros(1, 2, 5)
    target = torch.ones(1, 2, 5)
    mask = torch.ones(1, 1, 5)
    m_p.requires_grad_(True)
    prior_mean_loss(m_p, target, mask).backward()
    torch.testing.assert_close(m_p.grad[0, 0], m_p.grad[0, 1])
    logs_p = torch.tensor([0.0, 1.2]).view(1, 2, 1).expand(1, 2, 5)
    m_kl = torch.zeros(1, 2, 5, requires_grad=True)
    kl_loss(target, torch.zeros(1, 2, 5), m_kl, logs_p, mask).backward()
    assert m_kl.grad[0, 1].abs().sum() < 0.1 * m_kl.grad[0, 0].abs().sum()  # the KL's weighting, for contrast


def test_the_model_returns_the_posterior_mean_through_the_flow_without_gradient():
    model = _tiny().eval()
    ssl, spec, y_lengths, text, text_lengths = _batch()
    assert model(ssl, spec, y_lengths, text, text_lengths).z_p_mean is None  # off by default: no extra flow pass
    out = model(ssl, spec, y_lengths, text, text_lengths, prior_target=True)
    with torch.no_grad():
        ge = model.ref_enc(spec * out.y_mask, out.y_mask)
        expected = model.flow(out.m_q, out.y_mask, g=ge)
    torch.testing.assert_close(out.z_p_mean, expected)
    assert not out.z_p_mean.requires_grad and out.m_q.requires_grad


def test_a_negative_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="c_prior_mean"):
        from_dict(S2Config, {"train": {"c_prior_mean": -1.0}})


def test_training_logs_the_target_only_when_it_is_on(s2_dump: S2Dump, s2_run: Path, tmp_path: Path) -> None:
    off = read_scalars(s2_run)["loss/g/prior_mean"]  # the shared run: c_prior_mean 0
    assert off and all(v == 0.0 for _, v in off)
    config = write_config(tmp_path / "s2.json", train={"c_prior_mean": 1.0, "log_interval": 2, "eval_interval": 100})
    run_train_s2(s2_dump, tmp_path / "run", 6, config=config)
    on = [v for _, v in read_scalars(tmp_path / "run")["loss/g/prior_mean"]]
    assert len(on) == 3 and all(v > 0 for v in on) and all(v == v for v in on)
