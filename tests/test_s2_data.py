"""S2 training data: the even-length collate, the bucketed DDP sampler, and dataset errors that name the file."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from common.audio import save_wav
from common.config import S2Config, load_config
from common.manifest import (
    ManifestError,
    PhonemeEntry,
    S2ListItem,
    read_s2_list,
    write_phonemes,
    write_s2_list,
)
from s2.data import BucketBatchSampler, S2DataError, S2Dataset, S2Example, collate_s2
from tests.pipeline import TINY_S2, S2Dump

HOP = 640


def example(uid: str, frames: int, n_phones: int, dim: int = 4, bins: int = 3) -> S2Example:
    g = torch.Generator().manual_seed(frames * 31 + n_phones)
    return S2Example(uid, torch.rand(frames * HOP, generator=g) - 0.5, torch.rand(bins, frames, generator=g) + 0.1,
                     torch.randn(dim, frames, generator=g), torch.randint(1, 300, (n_phones,), generator=g))


def test_collate_pads_to_an_even_frame_count() -> None:
    items = [example("a", 7, 5), example("b", 4, 9), example("c", 6, 2)]
    batch = collate_s2(items)
    assert batch.ids == ["a", "b", "c"]
    assert batch.ssl.shape == (3, 4, 8) and batch.spec.shape == (3, 3, 8) and batch.wav.shape == (3, 1, 8 * HOP)
    assert batch.spec_lengths.tolist() == [7, 4, 6] and batch.text_lengths.tolist() == [5, 9, 2]
    assert batch.text.shape == (3, 9) and batch.text.dtype == torch.long
    for i, ex in enumerate(items):
        t, n = ex.spec.size(1), ex.phones.numel()
        assert torch.equal(batch.ssl[i, :, :t], ex.ssl) and not batch.ssl[i, :, t:].any()
        assert torch.equal(batch.spec[i, :, :t], ex.spec) and not batch.spec[i, :, t:].any()
        assert torch.equal(batch.wav[i, 0, : t * HOP], ex.wav) and not batch.wav[i, 0, t * HOP:].any()
        assert torch.equal(batch.text[i, :n], ex.phones) and not batch.text[i, n:].any()
    assert collate_s2([example("d", 6, 3)]).spec.size(2) == 6  # already even: no extra frame
    assert collate_s2([example("e", 1, 1)]).spec.size(2) == 2


def test_collate_rejects_misaligned_examples() -> None:
    bad = example("x", 5, 3)
    bad.ssl = bad.ssl[:, :4]
    with pytest.raises(ValueError, match="example x has .* 4 SSL frames for 5 spectrogram frames"):
        collate_s2([example("a", 6, 2), bad])


def sampler_lengths() -> list[int]:
    rng = random.Random(0)
    return [rng.randint(21, 200) for _ in range(97)] + [10, 20, 201, 500]  # the last four are out of range


def test_bucket_sampler_splits_an_epoch_across_ranks() -> None:
    lengths, boundaries, batch_size, world = sampler_lengths(), [20, 50, 100, 200], 6, 3
    samplers = [BucketBatchSampler(lengths, batch_size, boundaries, rank=r, world_size=world, seed=5)
                for r in range(world)]
    reference = BucketBatchSampler(lengths, batch_size, boundaries, seed=5)  # one process, same seed
    assert sorted(samplers[0].excluded) == [97, 98, 99, 100]  # 10 and 20 are below (20, ...], 201 and 500 above
    for epoch in (0, 1):
        per_rank = []
        for s in samplers:
            s.set_epoch(epoch)
            per_rank.append(list(s))
        reference.set_epoch(epoch)
        order = list(reference)
        assert {len(b) for b in per_rank} == {len(samplers[0])} == {-(-len(order) // world)}  # equal counts
        # round k is order[k*W : (k+1)*W]: rank r takes its r-th batch; the last round is padded from the start
        interleaved = [b for rnd in zip(*per_rank) for b in rnd]
        n_pad = len(interleaved) - len(order)
        assert interleaved[: len(order)] == order and interleaved[len(order):] == order[:n_pad]
        counts = Counter(i for b in order for i in b)
        assert set(counts) == set(range(97)) and set(counts.values()) == {1}  # each used item exactly once
        for b in order:  # one bucket per batch, at most batch_size items
            assert 1 <= len(b) <= batch_size
            assert len({next(k for k in range(3) if boundaries[k] < lengths[i] <= boundaries[k + 1]) for i in b}) == 1
        if epoch == 0:
            first = order
    assert order != first  # another epoch, another order
    reference.set_epoch(0)
    assert list(reference) == first  # and the same epoch gives the same order


def test_bucket_sampler_start_skips_batches_of_this_rank() -> None:
    lengths = sampler_lengths()
    s = BucketBatchSampler(lengths, 4, [20, 100, 200], rank=1, world_size=2, seed=1)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start=5)
    assert list(s) == full[5:] and len(s) == len(full)
    s.set_epoch(3, start=len(full))
    assert list(s) == []


def test_bucket_sampler_with_nothing_in_range_is_an_error() -> None:
    with pytest.raises(S2DataError, match=r"no item has a length in \(32, 100\] frames"):
        BucketBatchSampler([5, 10, 300], 2, [32, 100])


def make_dump(dump: Path, frames: dict[str, int], dim: int) -> Path:
    """wavs, phonemes and fp16 features of ``frames`` (id -> frames); returns the list path."""
    g = torch.Generator().manual_seed(0)
    entries = []
    for uid, n in frames.items():
        save_wav(dump / "wav32k" / f"{uid}.wav", 0.1 * np.sin(np.arange(n * HOP) / 7.0, dtype=np.float32), 32000)
        (dump / "ssl").mkdir(parents=True, exist_ok=True)
        torch.save(torch.randn(dim, n, generator=g).half(), dump / "ssl" / f"{uid}.pt")
        entries.append(PhonemeEntry(uid, ["n", "i3", "h", "ao3"], [2, 2], "你好"))
    write_phonemes(dump / "phonemes.tsv", entries)
    write_s2_list(dump / "s2_train.list", [S2ListItem(uid, "spk", "zh", n) for uid, n in frames.items()])
    return dump / "s2_train.list"


def test_dataset_reads_examples_and_names_bad_files(tmp_path: Path) -> None:
    cfg = load_config(TINY_S2, S2Config).data
    dump = tmp_path / "dump"
    list_path = make_dump(dump, {"a": 40, "b": 33, "c": 30, "d": 31, "e": 35}, cfg.ssl_dim)
    ds = S2Dataset(list_path, dump, cfg)
    ex = ds[0]
    assert ex.id == "a" and ex.wav.shape == (40 * HOP,) and ex.spec.shape == (cfg.spec_channels, 40)
    assert ex.ssl.shape == (cfg.ssl_dim, 40) and ex.ssl.dtype == torch.float32
    assert ex.phones.tolist() and ds.lengths() == [40, 33, 30, 31, 35]

    (dump / "ssl" / "b.pt").unlink()
    torch.save(torch.zeros(cfg.ssl_dim + 1, 30).half(), dump / "ssl" / "c.pt")
    torch.save(torch.zeros(cfg.ssl_dim, 29).half(), dump / "ssl" / "d.pt")
    (dump / "ssl" / "e.pt").write_bytes(b"not a tensor file")
    with pytest.raises(S2DataError, match=r"ssl/b\.pt: features file not found"):
        ds[1]
    with pytest.raises(S2DataError, match=rf"ssl/c\.pt: features have dimension {cfg.ssl_dim + 1}, but data.ssl_dim"):
        ds[2]
    with pytest.raises(S2DataError, match=r"ssl/d\.pt: 29 SSL frames but .*wav32k/d\.wav has 31 frames"):
        ds[3]
    with pytest.raises(S2DataError, match=r"ssl/e\.pt: cannot read features"):
        ds[4]
    (dump / "wav32k" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(S2DataError, match=r"wav32k/a\.wav: cannot read"):
        ds[0]


def test_dataset_list_errors_name_the_file(tmp_path: Path) -> None:
    cfg = load_config(TINY_S2, S2Config).data
    dump = tmp_path / "dump"
    make_dump(dump, {"a": 40}, cfg.ssl_dim)
    with pytest.raises(ManifestError, match=r"s2_val\.list: list file not found \(run gen_filelist_s2\.py\)"):
        S2Dataset(dump / "s2_val.list", dump, cfg)
    (dump / "empty.list").write_text("\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"empty\.list: the list is empty"):
        S2Dataset(dump / "empty.list", dump, cfg)
    write_s2_list(dump / "other.list", [S2ListItem("a", "spk", "zh", 40), S2ListItem("zz", "spk", "zh", 40)])
    with pytest.raises(S2DataError, match=r"other\.list: 1 id\(s\) have no row in .*phonemes\.tsv \(first: zz\)"):
        S2Dataset(dump / "other.list", dump, cfg)


def test_s2_list_round_trip(tmp_path: Path) -> None:
    items = [S2ListItem("b_1", "spk b", "en", 7), S2ListItem("a_2", "spk", "zh", 12)]
    write_s2_list(tmp_path / "x.list", items)
    assert read_s2_list(tmp_path / "x.list") == items
    (tmp_path / "bad.list").write_text("a|s|zh|12\nb|s|zh\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"bad\.list:2: expected id\|speaker\|lang\|n_frames"):
        read_s2_list(tmp_path / "bad.list")


def test_the_pipeline_dump_loads(s2_dump: S2Dump) -> None:
    """Items the pipeline scripts listed load, with features aligned to their spectrogram frames."""
    cfg = load_config(s2_dump.config, S2Config).data
    for name, every in (("s2_train.list", 8), ("s2_val.list", 1)):
        ds = S2Dataset(s2_dump.dump / name, s2_dump.dump, cfg)
        for i in range(0, len(ds), every):
            item, ex = ds.items[i], ds[i]
            assert ex.spec.size(1) == ex.ssl.size(1) == item.n_frames == ex.wav.numel() // HOP, item.id
            assert ex.phones.numel() > 0 and torch.isfinite(ex.ssl).all()
