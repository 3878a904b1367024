"""S1 with RoPE (model.position = "rope") and with a speaker embedding (model.n_speakers > 0):
cached == uncached, batched left-padded == one by one, positions really matter, speakers change
the output, both options survive save/load (cached steps == the training forward: test_s1_generate)."""

from __future__ import annotations

import pytest
import torch

from common.config import S1Config, from_dict, to_dict
from modules.rope import RotaryEmbedding, apply_rotary
from s1.generate import generate, generate_detailed, left_padded_prefix
from s1.model import Text2Semantic, build_model, prefix_lm_mask
from s1.sampling import SamplingParams
from tests.test_s1_generate import (
    CODEBOOK,
    GREEDY,
    N_PHONES,
    SAMPLED,
    rows,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def tiny_model(seed: int = 0, position: str = "rope", n_speakers: int = 0) -> Text2Semantic:
    torch.manual_seed(seed)
    return Text2Semantic(codebook_size=CODEBOOK, phoneme_vocab_size=N_PHONES, dim=32, n_layer=2, n_head=4,
                         ffn_dim=64, dropout=0.1, pos_dropout=0.1, position=position, n_speakers=n_speakers)


def test_rotary_scores_depend_only_on_the_offset() -> None:
    rope = RotaryEmbedding(8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(m: int, n: int) -> float:
        cq, sq = rope(torch.tensor([[m]]))
        ck, sk = rope(torch.tensor([[n]]))
        return float((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum())

    assert score(3, 1) == pytest.approx(score(13, 11), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    c0, s0 = rope(torch.zeros(1, 1, dtype=torch.long))
    torch.testing.assert_close(apply_rotary(q, c0, s0), q)  # position 0 is the identity


def test_rope_model_has_no_added_encodings_and_positions_matter() -> None:
    model = tiny_model().eval()
    assert not any("alpha" in n for n, _ in model.named_parameters())
    phones = torch.tensor([[1, 2, 3, 4, 5]])
    tokens = torch.tensor([[7, 8, 9]])
    with torch.no_grad():
        a = model(phones, torch.tensor([5]), tokens, torch.tensor([3])).logits
        b = model(phones.flip(1), torch.tensor([5]), tokens, torch.tensor([3])).logits
    # phonemes attend bidirectionally: without positions a permutation of them could not change the tokens' rows
    assert (a[0, 1:] - b[0, 1:]).abs().max() > 1e-3


def test_rope_left_padded_prefix_equals_each_row_alone() -> None:
    model = tiny_model().eval()
    phones, prompts = rows(4)
    with torch.inference_mode():
        p = left_padded_prefix(model, phones, prompts)
        h = model.hidden(p.x, prefix_lm_mask(p.key_valid, p.is_phone), positions=p.seq_positions)
        for i in range(3):
            q = left_padded_prefix(model, phones[i : i + 1], prompts[i : i + 1])
            alone = model.hidden(q.x, prefix_lm_mask(q.key_valid, q.is_phone), positions=q.seq_positions)
            torch.testing.assert_close(h[i, -1], alone[0, -1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_rope_batched_equals_single_and_cached_equals_uncached(params: SamplingParams) -> None:
    model = tiny_model(3)
    phones, prompts = rows(2)
    caps = [15, 9, 22]
    batched = generate_detailed(model, phones, prompts, params, max_new_tokens=caps, min_new_tokens=3, seed=7)
    assert sum(len(t) for t in batched.tokens) > 10
    for i in range(3):
        alone = generate_detailed(model, phones[i : i + 1], prompts[i : i + 1], params, max_new_tokens=caps[i],
                                  min_new_tokens=3, seed=7 + i)
        assert batched.tokens[i].tolist() == alone.tokens[0].tolist(), f"row {i}"
    uncached = generate(model, phones, prompts, params, max_new_tokens=caps, min_new_tokens=3, seed=7, use_cache=False)
    assert [t.tolist() for t in uncached] == [t.tolist() for t in batched.tokens]


def test_speaker_embedding_changes_generation_and_is_required() -> None:
    model = tiny_model(5, position="sinusoid", n_speakers=3)
    with torch.no_grad():
        model.speaker_embedding.weight.mul_(5)  # a trained table separates speakers; make that visible here
    phones, prompts = rows(6)
    kw = dict(max_new_tokens=20, min_new_tokens=20, seed=1)
    out = {s: generate(model, phones, prompts, GREEDY, speakers=torch.tensor([s] * 3), **kw) for s in (0, 1)}
    assert [t.tolist() for t in out[0]] != [t.tolist() for t in out[1]]
    mixed = generate(model, phones, prompts, GREEDY, speakers=torch.tensor([0, 1, 0]), **kw)
    assert [mixed[0].tolist(), mixed[1].tolist()] == [out[0][0].tolist(), out[1][1].tolist()]
    with pytest.raises(ValueError, match="n_speakers=3; pass speakers"):
        generate(model, phones, prompts, GREEDY, **kw)
    with pytest.raises(ValueError, match="outside"):
        generate(model, phones, prompts, GREEDY, speakers=torch.tensor([0, 3, 0]), **kw)
    with pytest.raises(ValueError, match="n_speakers=0"):
        generate(tiny_model(), phones, prompts, GREEDY, speakers=torch.tensor([0, 0, 0]), **kw)


def test_options_round_trip_through_config_and_state_dict() -> None:
    cfg = from_dict(S1Config, {"model": {"codebook_size": CODEBOOK, "embedding_dim": 32, "n_layer": 1, "n_head": 4,
                                         "ffn_dim": 64, "position": "rope", "n_speakers": 2},
                               "data": {"concat_max_seconds": 12.0, "concat_pause_tokens": 4}})
    again = from_dict(S1Config, to_dict(cfg))
    assert again == cfg and again.model.position == "rope" and again.data.concat_max_seconds == 12.0
    old = to_dict(S1Config())
    del old["model"]["position"], old["model"]["n_speakers"]  # a config saved before these options
    assert from_dict(S1Config, old).model.position == "sinusoid"
    torch.manual_seed(0)
    a = build_model(cfg).eval()
    b = build_model(again).eval()
    b.load_state_dict(a.state_dict())
    assert "speaker_embedding.weight" in a.state_dict()
    phones, prompts = rows(1)
    kw = dict(max_new_tokens=12, min_new_tokens=12, speakers=torch.tensor([1, 0, 1]))
    assert [t.tolist() for t in generate(a, phones, prompts, GREEDY, **kw)] == \
           [t.tolist() for t in generate(b, phones, prompts, GREEDY, **kw)]
