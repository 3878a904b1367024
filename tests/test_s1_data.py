"""S1 data: semantic artefacts, list parsing and validation, collate padding, token-budget sampler."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from s1.data import (
    S1Batch,
    S1DataError,
    S1Dataset,
    S1ListRow,
    SemanticMeta,
    TokenBucketSampler,
    collate_s1,
    load_semantic_meta,
    read_semantic_tsv,
    save_semantic_meta,
    write_s1_list,
    write_semantic_tsv,
)
from text.symbols import SYMBOL_TO_ID, SYMBOLS_MD5


def make_meta(codebook_size: int = 64, token_rate: float = 25.0, symbols_md5: str = SYMBOLS_MD5) -> SemanticMeta:
    return SemanticMeta(token_rate=token_rate, codebook_size=codebook_size, eos_id=codebook_size,
                        semantic_frame_rate="25hz", ssl_dim=64, s2_checkpoint="logs/s2/ckpt_00000010.pt",
                        s2_step=10, s2_sha256="0" * 64, symbols_md5=symbols_md5, n_items=3)


ROWS = [
    S1ListRow("b", ["n", "i2", "h", "ao3"], [1, 2, 3, 4, 5]),
    S1ListRow("a", ["SP", "AH0"], [63, 0]),
    S1ListRow("c", ["m", "a1", ",", "sh", "i4", "."], [7, 7, 7]),
]


def test_semantic_io_round_trip(tmp_path: Path) -> None:
    entries = {"z": [3, 1], "a": [0, 63, 5]}
    write_semantic_tsv(tmp_path / "semantic.tsv", entries)
    assert (tmp_path / "semantic.tsv").read_text(encoding="utf-8") == "id\ttokens\na\t0 63 5\nz\t3 1\n"
    assert read_semantic_tsv(tmp_path / "semantic.tsv") == entries
    meta = make_meta()
    save_semantic_meta(meta, tmp_path / "semantic.json")
    assert load_semantic_meta(tmp_path / "semantic.json") == meta
    (tmp_path / "bad.tsv").write_text("id\ttokens\na\t1 x 2\n", encoding="utf-8")
    with pytest.raises(S1DataError, match=r"bad.tsv:2"):
        read_semantic_tsv(tmp_path / "bad.tsv")
    (tmp_path / "bad.json").write_text('{"token_rate": 25.0}', encoding="utf-8")
    with pytest.raises(S1DataError, match="missing key"):
        load_semantic_meta(tmp_path / "bad.json")


def test_dataset_items_and_collate(tmp_path: Path) -> None:
    write_s1_list(tmp_path / "list.tsv", ROWS)
    lines = (tmp_path / "list.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tphones\ttokens" and lines[1] == "a\tSP AH0\t63 0"
    ds = S1Dataset(tmp_path / "list.tsv", make_meta())
    assert len(ds) == 3 and ds.ids == ["a", "b", "c"]
    assert ds.lengths == [4, 9, 9]
    item = ds[1]
    assert item.id == "b"
    assert item.phones.tolist() == [SYMBOL_TO_ID[p] for p in ["n", "i2", "h", "ao3"]]
    assert item.tokens.dtype == torch.long and item.tokens.tolist() == [1, 2, 3, 4, 5]

    batch = ds.collate([ds[0], ds[1], ds[2]])
    assert isinstance(batch, S1Batch) and batch.ids == ["a", "b", "c"]
    assert batch.phones.shape == (3, 6) and batch.tokens.shape == (3, 5)
    assert batch.phone_lens.tolist() == [2, 4, 6] and batch.token_lens.tolist() == [2, 5, 3]
    assert batch.tokens[0].tolist() == [63, 0, 64, 64, 64]  # right-padded with EOS = codebook_size
    assert batch.tokens[2].tolist() == [7, 7, 7, 64, 64]
    assert batch.phones[0, 2:].tolist() == [0, 0, 0, 0]  # right-padded with 0
    assert batch.phones[0, :2].tolist() == [SYMBOL_TO_ID["SP"], SYMBOL_TO_ID["AH0"]]
    assert collate_s1([ds[1]], eos_id=99).tokens.tolist() == [[1, 2, 3, 4, 5]]

    sampler = TokenBucketSampler(ds.lengths, max_batch_tokens=18, max_batch_size=4, shuffle=False)
    loaded = list(DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate))
    assert [b.ids for b in loaded] == [["a", "b"], ["c"]]  # 2 * 9 <= 18; adding c would make 3 * 9


def test_dataset_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.tsv"
    path.write_text("id\tphones\ttokens\na\tSP AH0\t1 2\nb\tn i2\t3 64 1\n", encoding="utf-8")
    with pytest.raises(S1DataError, match=r"list.tsv:3.*token 64 outside the codebook \[0, 64\)"):
        S1Dataset(path, make_meta(codebook_size=64))
    S1Dataset(path, make_meta(codebook_size=65))  # the same file is valid for a larger codebook

    path.write_text("id\tphones\ttokens\na\tSP QQ\t1 2\n", encoding="utf-8")
    with pytest.raises(S1DataError, match=r"list.tsv:2.*unknown phone 'QQ'"):
        S1Dataset(path, make_meta())
    path.write_text("id\tphones\ttokens\na\tSP\t\n", encoding="utf-8")
    with pytest.raises(S1DataError, match="no tokens"):
        S1Dataset(path, make_meta())
    path.write_text("id\tphones\ttokens\n", encoding="utf-8")
    with pytest.raises(S1DataError, match="no items"):
        S1Dataset(path, make_meta())
    path.write_text("id\tphones\na\tSP\n", encoding="utf-8")
    with pytest.raises(S1DataError, match="expected header"):
        S1Dataset(path, make_meta())
    write_s1_list(path, ROWS)
    with pytest.raises(S1DataError, match="different phone symbol table"):
        S1Dataset(path, make_meta(symbols_md5="f" * 32))


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 120) for _ in range(n)]


def test_sampler_budget_coverage_and_sorting() -> None:
    lengths = _lengths(300)
    s = TokenBucketSampler(lengths, max_batch_tokens=400, max_batch_size=8, shuffle=True, seed=3)
    batches = list(s)
    assert len(batches) == len(s) == s.n_batches
    for b in batches:
        assert 1 <= len(b) <= 8
        assert len(b) * max(lengths[i] for i in b) <= 400
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(300))  # every item exactly once on one rank
    # greedy packing: no batch could have taken the next item of the sorted order
    unshuffled = TokenBucketSampler(lengths, 400, 8, shuffle=False).batches()
    for cur, nxt in zip(unshuffled, unshuffled[1:]):
        n = lengths[nxt[0]]
        assert max(lengths[i] for i in cur) <= n
        assert len(cur) == 8 or (len(cur) + 1) * n > 400


def test_sampler_seeded_and_epoch_dependent() -> None:
    lengths = _lengths(200, seed=1)
    a = TokenBucketSampler(lengths, 300, 6, shuffle=True, seed=11)
    b = TokenBucketSampler(lengths, 300, 6, shuffle=True, seed=11)
    assert list(a) == list(b)
    epoch0 = list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != epoch0 and len(epoch1) == len(epoch0)
    assert sorted(i for x in epoch1 for i in x) == list(range(200))
    c = TokenBucketSampler(lengths, 300, 6, shuffle=True, seed=12)
    assert list(c) != epoch0


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ranks_disjoint_equal_counts(drop_last: bool) -> None:
    lengths = _lengths(157, seed=2)
    world = 3
    samplers = [TokenBucketSampler(lengths, 250, 5, shuffle=True, seed=5, rank=r, world_size=world,
                                   drop_last=drop_last) for r in range(world)]
    for s in samplers:
        s.set_epoch(4)
    per_rank = [list(s) for s in samplers]
    n_batches = samplers[0].n_batches
    assert n_batches % world != 0  # the padding / dropping path is exercised
    assert all(len(p) == len(samplers[0]) for p in per_rank)
    expect = n_batches // world if drop_last else -(-n_batches // world)
    assert len(samplers[0]) == expect
    all_batches = [tuple(b) for p in per_rank for b in p]
    full = [tuple(b) for b in samplers[0].batches()]
    if drop_last:
        assert len(set(all_batches)) == len(all_batches)  # fully disjoint
        assert set(all_batches) < set(full)
    else:
        assert set(all_batches) == set(full)  # every item is seen
        assert len(all_batches) - len(set(all_batches)) == world * expect - n_batches  # only padding repeats
    if drop_last:
        items = [i for b in all_batches for i in b]
        assert len(items) == len(set(items))


def test_sampler_rejects_item_over_budget() -> None:
    with pytest.raises(ValueError, match=r"item 1 with 500 phones\+tokens"):
        TokenBucketSampler([10, 500, 20], max_batch_tokens=400, max_batch_size=4)
    one = TokenBucketSampler([400], max_batch_tokens=400, max_batch_size=4, rank=1, world_size=2)
    assert list(one) == [[0]]  # a single batch is repeated so that rank 1 also gets one
