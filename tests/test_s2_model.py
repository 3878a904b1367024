"""S2 generator assembly: full-size parameter counts and key layout, tiny-size training
forward, token extraction, decode, quantizer freezing, weight-norm folding, build from config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from common.config import S2Config, load_config
from modules.hifigan import MultiPeriodDiscriminator
from s2.model import SynthesizerTrn, build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_parameter_counts_and_keys():
    with torch.device("meta"):  # shapes only, no memory or init cost
        g = SynthesizerTrn(n_symbols=322)
        d = MultiPeriodDiscriminator()
    counts = {name: _n_params(getattr(g, name))
              for name in ("enc_p", "dec", "enc_q", "flow", "ref_enc", "ssl_proj", "quantizer")}
    assert counts == {"enc_p": 14_067_328, "dec": 14_662_144, "enc_q": 10_494_336, "flow": 10_260_096,
                      "ref_enc": 608_128, "ssl_proj": 1_180_416, "quantizer": 0}
    assert _n_params(g) == 51_272_448
    assert _n_params(d) == 46_747_132
    # ARCHITECTURE.md §2.14 says 1,574,913 buffer elements, but its own buffer list (§2.4, §9.1:
    # inited [1], cluster_size [1024], embed and embed_avg [1024, 768]) sums to 1,573,889.
    assert sum(b.numel() for b in g.quantizer.buffers()) == 1 + 1024 + 2 * 1024 * 768 == 1_573_889
    sd_g, sd_d = g.state_dict(), d.state_dict()
    assert len(sd_g) == 776 and len(sd_d) == 111
    expected_shapes = {
        "ssl_proj.weight": (768, 768, 2),
        "enc_p.text_embedding.weight": (322, 192),
        "enc_p.encoder_ssl.attn_layers.2.emb_rel_k": (1, 9, 96),
        "enc_p.encoder_text.ffn_layers.5.conv_1.weight": (768, 192, 3),
        "enc_p.encoder2.norm_layers_2.0.gamma": (192,),
        "enc_p.mrte.cross_attention.conv_q.weight": (512, 512, 1),
        "ref_enc.spectral.0.fc.weight": (128, 1025),
        "ref_enc.temporal.1.conv1.conv.weight": (256, 128, 5),
        "ref_enc.slf_attn.w_qs.weight": (128, 128),
        "ref_enc.fc.fc.weight": (512, 128),
        "enc_q.enc.cond_layer.parametrizations.weight.original0": (6144, 1, 1),
        "enc_q.enc.res_skip_layers.15.parametrizations.weight.original1": (192, 192, 1),
        "flow.flows.6.post.weight": (96, 192, 1),
        "dec.ups.0.parametrizations.weight.original0": (512, 1, 1),
        "dec.ups.0.parametrizations.weight.original1": (512, 256, 16),
        "dec.resblocks.14.convs1.2.parametrizations.weight.original1": (16, 16, 11),
        "dec.conv_post.weight": (1, 16, 7),
        "quantizer.embed": (1024, 768),
    }
    for key, shape in expected_shapes.items():
        assert tuple(sd_g[key].shape) == shape, key
    assert "dec.conv_post.bias" not in sd_g
    assert tuple(sd_d["discriminators.0.convs.1.parametrizations.weight.original1"].shape) == (64, 4, 41)
    assert tuple(sd_d["discriminators.5.conv_post.parametrizations.weight.original1"].shape) == (1, 1024, 3, 1)


TINY = dict(n_symbols=20, spec_channels=33, segment_frames=8, ssl_dim=16, inter_channels=8, hidden_channels=8,
            filter_channels=16, n_heads=2, n_layers=2, kernel_size=3, p_dropout=0.1, resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]], upsample_rates=[4, 4], upsample_initial_channel=16,
            upsample_kernel_sizes=[8, 8], gin_channels=8, codebook_size=16, kmeans_iters=3, ref_hidden=8,
            ref_heads=2, ref_kernel_size=5, mrte_hidden=8, mrte_heads=2, posterior_layers=2,
            posterior_kernel_size=5, flow_layers=2, flow_kernel_size=5, n_flows=2)
HOP = 16


def _tiny(seed: int = 0, **overrides) -> SynthesizerTrn:
    torch.manual_seed(seed)
    return SynthesizerTrn(**{**TINY, **overrides})


def _batch(t: int = 20, lengths: tuple[int, ...] = (20, 15, 11), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    y_lengths = torch.tensor(lengths)
    mask = (torch.arange(t).unsqueeze(0) < y_lengths.unsqueeze(1)).float().unsqueeze(1)
    ssl = torch.randn(b, 16, t, generator=g) * mask
    spec = torch.rand(b, 33, t, generator=g) * mask
    text_lengths = torch.tensor([7, 4, 2][:b] + [3] * max(0, b - 3))
    text = torch.randint(0, 20, (b, 7), generator=g)
    return ssl, spec, y_lengths, text, text_lengths


def test_training_forward_shapes_and_inputs_untouched():
    model = _tiny().train()
    ssl, spec, y_lengths, text, text_lengths = _batch()
    copies = [t.clone() for t in (ssl, spec, y_lengths, text, text_lengths)]
    out = model(ssl, spec, y_lengths, text, text_lengths)
    assert out.y_hat.shape == (3, 1, 8 * HOP)
    for name in ("z", "z_p", "m_p", "logs_p", "m_q", "logs_q"):
        assert getattr(out, name).shape == (3, 8, 20), name
    assert out.y_mask.shape == (3, 1, 20)
    assert out.codes.shape == (3, 10) and out.codes.dtype == torch.long
    assert out.ids_slice.shape == (3,) and bool((out.ids_slice + 8 <= y_lengths).all())
    assert out.commit_loss.dim() == 0 and out.commit_loss.item() > 0
    assert out.m_p[2, :, 11:].abs().max().item() == 0.0
    for a, b in zip(copies, (ssl, spec, y_lengths, text, text_lengths)):
        assert torch.equal(a, b)
    loss = out.y_hat.abs().mean() + out.commit_loss + (out.z_p - out.m_p).pow(2).mean()
    loss.backward()
    assert model.ssl_proj.weight.grad is not None and model.ssl_proj.weight.grad.abs().sum() > 0
    assert model.quantizer.inited.item() == 1.0


def test_style_vector_is_detached_only_for_the_posterior():
    model = _tiny().train()
    ssl, spec, y_lengths, text, text_lengths = _batch()
    out = model(ssl, spec, y_lengths, text, text_lengths)
    ref_w = model.ref_enc.fc.fc.weight
    (out.m_q.sum() + out.logs_q.sum()).backward(retain_graph=True)
    assert ref_w.grad is None or ref_w.grad.abs().sum() == 0
    out.y_hat.sum().backward()
    assert ref_w.grad.abs().sum() > 0


def test_odd_frame_count_and_50hz_mode():
    model = _tiny().train()
    ssl, spec, y_lengths, text, text_lengths = _batch(t=21, lengths=(21, 16, 9))
    out = model(ssl, spec, y_lengths, text, text_lengths)
    assert out.codes.shape == (3, 10) and out.z.shape == (3, 8, 21)
    model50 = _tiny(semantic_frame_rate="50hz").train()
    assert tuple(model50.ssl_proj.weight.shape) == (16, 16, 1)
    out50 = model50(ssl, spec, y_lengths, text, text_lengths)
    assert out50.codes.shape == (3, 21) and out50.y_hat.shape == (3, 1, 8 * HOP)
    model50.eval()
    wav = model50.decode(out50.codes, text, text_lengths, spec)
    assert wav.shape == (3, 1, 21 * HOP)


def test_extract_codes_matches_forward_and_has_no_side_effects():
    model = _tiny().train()
    ssl, spec, y_lengths, text, text_lengths = _batch()
    model(ssl, spec, y_lengths, text, text_lengths)  # k-means init
    model.eval()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    codes = model.extract_codes(ssl, y_lengths)
    assert codes.shape == (3, 10)
    assert torch.equal(codes, model(ssl, spec, y_lengths, text, text_lengths).codes)
    model.train()
    model.extract_codes(ssl)
    for k, v in model.quantizer.state_dict().items():
        assert torch.equal(v, before[k]), k
    valid = model.token_lengths(y_lengths)
    junk = ssl.clone()
    junk[1, :, 15:] = 100.0
    codes_junk = model.extract_codes(junk, y_lengths)
    assert torch.equal(codes_junk[1, :valid[1]], codes[1, :valid[1]])


def test_decode_lengths_masks_and_determinism():
    model = _tiny().eval()
    _, spec, y_lengths, text, text_lengths = _batch()
    codes = torch.randint(0, 16, (3, 9))
    code_lengths = torch.tensor([9, 6, 4])
    padded = codes.clone()
    padded[1, 6:] = 1024  # e.g. EOS/pad ids beyond the length are ignored
    gen = torch.Generator().manual_seed(3)
    wav = model.decode(padded, text, text_lengths, spec, refer_lengths=y_lengths, code_lengths=code_lengths,
                       generator=gen)
    assert wav.shape == (3, 1, 2 * 9 * HOP)
    assert wav[1, :, 2 * 6 * HOP:].abs().max().item() == 0.0
    assert wav[1, :, :2 * 6 * HOP].abs().max().item() > 0.0
    again = model.decode(padded, text, text_lengths, spec, refer_lengths=y_lengths, code_lengths=code_lengths,
                         generator=torch.Generator().manual_seed(3))
    assert torch.equal(wav, again)
    single = model.decode(codes[:1], text[:1], text_lengths[:1], spec[:1], noise_scale=0.0)
    assert single.shape == (1, 1, 2 * 9 * HOP)
    no_ref = model.decode(codes[:1], text[:1], text_lengths[:1], None, noise_scale=0.0)
    assert no_ref.shape == single.shape and not torch.allclose(no_ref, single)


def test_freeze_quantizer_stops_codebook_and_projection():
    model = _tiny(freeze_quantizer=True).train()
    ssl, spec, y_lengths, text, text_lengths = _batch()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    proj_before = model.ssl_proj.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for mode in ("train", "eval", "train"):
        getattr(model, mode)()
        out = model(ssl, spec, y_lengths, text, text_lengths)
        assert out.commit_loss.item() == 0.0
        if mode == "train":
            opt.zero_grad()
            (out.y_hat.abs().mean() + out.m_p.pow(2).mean()).backward()
            opt.step()
            assert model.ssl_proj.weight.grad is None
    assert not model.ssl_proj.weight.requires_grad
    for k, v in model.quantizer.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(model.ssl_proj.weight, proj_before)


def test_fold_weight_norm_keeps_decode_output():
    model = _tiny().eval()
    _, spec, _, text, text_lengths = _batch()
    codes = torch.randint(0, 16, (3, 9))
    before = model.decode(codes, text, text_lengths, spec, noise_scale=0.0)
    folded = model.fold_weight_norm()
    assert folded > 0
    assert not any("parametrizations" in k for k in model.state_dict())
    after = model.decode(codes, text, text_lengths, spec, noise_scale=0.0)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_constructor_rejects_inconsistent_sizes():
    with pytest.raises(ValueError, match="mrte_hidden"):
        _tiny(gin_channels=12)
    with pytest.raises(ValueError, match="semantic_frame_rate"):
        _tiny(semantic_frame_rate="12.5hz")
    model = _tiny()
    ssl, spec, y_lengths, text, text_lengths = _batch()
    with pytest.raises(ValueError, match="length-matched"):
        model(ssl[:, :, :-1], spec, y_lengths, text, text_lengths)


def test_build_model_from_tiny_config():
    cfg = load_config(REPO / "configs" / "tiny" / "s2.json", S2Config)
    torch.manual_seed(0)
    g, d = build_model(cfg)
    from text.symbols import SYMBOLS

    assert g.enc_p.text_embedding.num_embeddings == len(SYMBOLS)
    assert g.hop_length == cfg.data.hop_length
    assert g.segment_frames == cfg.train.segment_frames
    assert len(d.discriminators) == 1 + len(cfg.model.disc_periods)
    assert g.quantizer.codebook_size == cfg.model.codebook_size
    assert g.quantizer_frozen == cfg.model.freeze_quantizer
    t = cfg.train.segment_frames + 4
    lengths = torch.tensor([t, t - 3])
    ssl = torch.randn(2, cfg.data.ssl_dim, t)
    spec = torch.rand(2, cfg.data.spec_channels, t)
    text = torch.randint(0, len(SYMBOLS), (2, 5))
    out = g(ssl, spec, lengths, text, torch.tensor([5, 3]))
    assert out.y_hat.shape == (2, 1, cfg.train.segment_size)
    dout = d(out.y_hat.detach(), out.y_hat)
    assert len(dout.fake_logits) == len(d.discriminators)
    assert math.isfinite(out.commit_loss.item())
