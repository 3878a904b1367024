"""MultiPeriodDiscriminator in the generator's step (frozen, real waveform without grad): the real half runs
without a graph, outputs and the generated half's gradients equal those of the one-batch path."""

import torch

from modules.hifigan import MultiPeriodDiscriminator


def test_frozen_discriminator_runs_real_half_without_graph_same_values_and_grads():
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator([2, 3], channel_divisor=16)
    y = torch.randn(2, 1, 1200)
    y_hat = torch.randn(2, 1, 1200, requires_grad=True)
    both = mpd(y, y_hat)  # trainable parameters: the one-batch path
    weights = torch.randn(sum(f.numel() for feats in both.fake_features for f in feats))

    def fake_loss(out):
        flat = torch.cat([f.flatten() for feats in out.fake_features for f in feats])
        return (flat * weights).sum() + sum(l.sum() for l in out.fake_logits)

    fake_loss(both).backward()
    grad_both = y_hat.grad.clone()
    y_hat.grad = None
    for p in mpd.parameters():
        p.requires_grad_(False)
    split = mpd(y, y_hat)
    assert all(f.grad_fn is None for feats in split.real_features for f in feats)
    assert all(f.grad_fn is not None for feats in split.fake_features for f in feats)
    for a, b in zip([*both.real_logits, *both.fake_logits], [*split.real_logits, *split.fake_logits]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for fa, fb in zip(both.real_features + both.fake_features, split.real_features + split.fake_features):
        for a, b in zip(fa, fb):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    fake_loss(split).backward()
    torch.testing.assert_close(y_hat.grad, grad_both, rtol=1e-4, atol=1e-5)
