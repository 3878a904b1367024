"""S1 model: mask layout, padding invariance, target alignment, keys, overfitting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from s1.model import IGNORE_INDEX, Text2Semantic, build_model, prefix_lm_mask, sinusoid_table

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

CODEBOOK = 40
N_PHONES = 30


def tiny_model(seed: int = 0, bert_dim: int = 0, dropout: float = 0.0) -> Text2Semantic:
    torch.manual_seed(seed)
    return Text2Semantic(
        codebook_size=CODEBOOK,
        phoneme_vocab_size=N_PHONES,
        dim=32,
        n_layer=2,
        n_head=4,
        ffn_dim=64,
        dropout=dropout,
        pos_dropout=dropout,
        bert_dim=bert_dim,
    ).eval()


def rand_batch(phone_lens: list[int], token_lens: list[int], seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b = len(phone_lens)
    phones = torch.randint(0, N_PHONES, (b, max(phone_lens)), generator=g)
    tokens = torch.randint(0, CODEBOOK, (b, max(token_lens)), generator=g)
    return phones, torch.tensor(phone_lens), tokens, torch.tensor(token_lens)


def test_prefix_lm_mask_layout() -> None:
    # One row: 2 phonemes, 3 tokens, 1 padded token slot at the end.
    key_valid = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    is_phone = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool)
    m = prefix_lm_mask(key_valid, is_phone)[0, 0].int()
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],  # phonemes: all phonemes, no tokens
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],  # tokens: phonemes + causal tokens
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 0],  # padded query: sees valid keys only
        ]
    )
    assert torch.equal(m, expected)


def test_phoneme_outputs_ignore_tokens() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([6], [5])
    with torch.no_grad():
        h1 = model.hidden_states(phones, pl, tokens, tl)
        h2 = model.hidden_states(phones, pl, (tokens + 7) % CODEBOOK, tl)
    torch.testing.assert_close(h1[:, :6], h2[:, :6], rtol=0, atol=1e-6)
    assert not torch.allclose(h1[:, 6:], h2[:, 6:])


def test_token_outputs_are_causal() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([6], [5])
    changed = tokens.clone()
    changed[0, 3] = (changed[0, 3] + 1) % CODEBOOK
    with torch.no_grad():
        h1 = model.hidden_states(phones, pl, tokens, tl)
        h2 = model.hidden_states(phones, pl, changed, tl)
    torch.testing.assert_close(h1[:, : 6 + 3], h2[:, : 6 + 3], rtol=0, atol=1e-6)  # before token 3
    assert not torch.allclose(h1[:, 6 + 3 :], h2[:, 6 + 3 :])


def test_padding_does_not_change_outputs() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([5, 9], [4, 7], seed=3)
    with torch.no_grad():
        batch = model.hidden_states(phones, pl, tokens, tl)  # [2, 9+7, D]
        alone = model.hidden_states(phones[:1, :5], pl[:1], tokens[:1, :4], tl[:1])  # [1, 5+4, D]
        out_b = model(phones, pl, tokens, tl)
        out_a = model(phones[:1, :5], pl[:1], tokens[:1, :4], tl[:1])
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch[0, :5], alone[0, :5], rtol=0, atol=1e-5)  # phonemes
    torch.testing.assert_close(batch[0, 9 : 9 + 4], alone[0, 5:], rtol=0, atol=1e-5)  # tokens
    torch.testing.assert_close(out_b.logits[0, :5], out_a.logits[0], rtol=0, atol=1e-5)  # 4 tokens + EOS
    # padded phoneme ids do not matter either
    phones2 = phones.clone()
    phones2[0, 5:] = (phones2[0, 5:] + 1) % N_PHONES
    with torch.no_grad():
        torch.testing.assert_close(model(phones2, pl, tokens, tl).loss, out_b.loss, rtol=0, atol=1e-6)


def test_targets_alignment_and_masked_loss() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([5, 8], [3, 6], seed=4)
    out = model(phones, pl, tokens, tl)
    eos = model.eos_id
    assert out.targets[0].tolist() == tokens[0, :3].tolist() + [eos] + [IGNORE_INDEX] * 3
    assert out.targets[1].tolist() == tokens[1].tolist() + [eos]
    assert int(out.n_tokens) == (3 + 1) + (6 + 1)
    # y_0 is predicted from the last real phoneme's row.
    with torch.no_grad():
        h = model.hidden_states(phones, pl, tokens, tl)
        torch.testing.assert_close(out.logits[0, 0], model.head(h[0, 4]), rtol=0, atol=1e-6)
        torch.testing.assert_close(out.logits[0, 1], model.head(h[0, 8]), rtol=0, atol=1e-6)
    # mean over supervised positions only
    logp = out.logits.float().log_softmax(-1)
    sup = out.targets != IGNORE_INDEX
    manual = -logp[sup].gather(1, out.targets[sup][:, None]).sum() / sup.sum()
    torch.testing.assert_close(out.loss, manual)
    assert 0.0 <= float(out.acc) <= float(out.topk_acc) <= 1.0


def test_batch_loss_is_token_weighted_mean_of_items() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([5, 8], [3, 6], seed=5)
    with torch.no_grad():
        both = model(phones, pl, tokens, tl)
        a = model(phones[:1, :5], pl[:1], tokens[:1, :3], tl[:1])
        b = model(phones[1:], pl[1:], tokens[1:], tl[1:])
    total = a.loss * a.n_tokens + b.loss * b.n_tokens
    torch.testing.assert_close(both.loss * both.n_tokens, total, rtol=1e-5, atol=1e-5)


def test_empty_token_sequence_supervises_eos_only() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([4, 6], [1, 3], seed=6)
    tl = torch.tensor([0, 3])
    out = model(phones, pl, tokens, tl)
    assert out.targets[0].tolist() == [model.eos_id] + [IGNORE_INDEX] * 3
    assert torch.isfinite(out.loss)


def test_rejects_empty_phonemes() -> None:
    model = tiny_model()
    phones, pl, tokens, tl = rand_batch([4, 6], [2, 3])
    with pytest.raises(ValueError, match="at least one phoneme"):
        model(phones, torch.tensor([0, 6]), tokens, tl)


def test_positions_restart_for_tokens() -> None:
    model = tiny_model()
    tokens = torch.tensor([[3, 4]])
    with torch.no_grad():
        model.token_position.alpha.fill_(0.5)
        e = model.embed_tokens(tokens)
        pe = sinusoid_table(2, 32)
        torch.testing.assert_close(e[0], model.token_embedding.weight[[3, 4]] + 0.5 * pe)
        explicit = model.embed_tokens(tokens, torch.tensor([[7, 8]]))
        torch.testing.assert_close(explicit[0], model.token_embedding.weight[[3, 4]] + 0.5 * sinusoid_table(9, 32)[7:])


def test_bert_features() -> None:
    model = tiny_model(bert_dim=6)
    phones, pl, tokens, tl = rand_batch([5], [3])
    bert = torch.randn(1, 5, 6)
    with torch.no_grad():
        h1 = model.hidden_states(phones, pl, tokens, tl, bert)
        h2 = model.hidden_states(phones, pl, tokens, tl, bert * 2)
    assert not torch.allclose(h1, h2)
    with pytest.raises(ValueError, match="bert_dim=6"):
        model(phones, pl, tokens, tl)
    with pytest.raises(ValueError, match="expected"):
        model(phones, pl, tokens, tl, torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match="bert_dim=0"):
        tiny_model()(phones, pl, tokens, tl, bert)


def test_state_dict_keys_and_shapes() -> None:
    model = Text2Semantic(codebook_size=1024, n_layer=2, bert_dim=1024)
    sd = model.state_dict()
    expected = {
        "phone_embedding.weight": (512, 512),
        "bert_proj.weight": (512, 1024),
        "bert_proj.bias": (512,),
        "phone_position.alpha": (1,),
        "token_embedding.weight": (1025, 512),
        "token_position.alpha": (1,),
        "transformer.layers.1.self_attn.in_proj.weight": (1536, 512),
        "transformer.layers.1.self_attn.in_proj.bias": (1536,),
        "transformer.layers.1.self_attn.out_proj.weight": (512, 512),
        "transformer.layers.1.linear1.weight": (2048, 512),
        "transformer.layers.1.linear2.weight": (512, 2048),
        "transformer.layers.1.norm2.bias": (512,),
        "head.weight": (1025, 512),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "head.bias" not in sd
    assert not any(k.endswith(".pe") for k in sd)
    assert len(sd) == 4 + 2 + 2 * 12 + 1  # embeddings+alphas, bert_proj, 12 tensors per layer, head
    assert float(model.phone_position.alpha.detach()) == 1.0
    assert model.transformer.layers[0].norm1.eps == 1e-5


def test_build_model_reads_config() -> None:
    m = SimpleNamespace(
        codebook_size=64, phoneme_vocab_size=100, embedding_dim=48, n_layer=3, n_head=4, ffn_dim=96,
        dropout=0.0, pos_dropout=0.05, bert_dim=8, position="sinusoid", n_speakers=0,
    )
    model = build_model(SimpleNamespace(model=m))
    assert model.vocab_size == 65 and model.eos_id == 64
    assert model.phone_embedding.weight.shape == (100, 48)
    assert len(model.transformer.layers) == 3
    assert model.transformer.layers[0].linear1.weight.shape == (96, 48)
    assert model.bert_proj.weight.shape == (48, 8)
    assert model.token_position.dropout.p == 0.05


def test_tiny_model_overfits_one_batch() -> None:
    model = tiny_model(seed=2, dropout=0.1).train()
    phones, pl, tokens, tl = rand_batch([7, 10, 5], [12, 9, 15], seed=7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        out = model(phones, pl, tokens, tl)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = float(out.loss.detach()) if first is None else first
    assert first > 3.0  # ~ln(41) at init
    assert float(out.loss.detach()) < 0.1 * first
    assert float(out.topk_acc) > 0.8
