"""S2 training data: dataset over the S2 lists, even-length collate, length-bucketed DDP sampler.

An item is the 32 kHz wav, its linear spectrogram ``[F, T]`` (T = N // hop), its HuBERT
features ``[D, T]`` (extract_ssl_s2.py already aligned them to T frames) and its phoneme
ids ``[L]``. Batches are padded to an even number of frames (the 25 Hz stride-2 projection
and the x2 upsample then round-trip exactly) with zeros; phonemes are padded with 0 and
masked by their lengths.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from common.config import S2DataConfig
from common.manifest import read_phonemes
from modules.spectrogram import Spectrogram
from text.symbols import phones_to_ids


class S2DataError(ValueError):
    """An S2 list or one of its files is invalid; the message names the file and the reason."""


@dataclass(frozen=True)
class S2ListItem:
    id: str
    speaker: str
    lang: str
    n_frames: int


def read_s2_list(path: str | Path) -> list[S2ListItem]:
    """Read ``id|speaker|lang|n_frames`` lines (written by gen_filelist_s2.py)."""
    path = Path(path)
    if not path.is_file():
        raise S2DataError(f"{path}: list file not found (run gen_filelist_s2.py first)")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 4 or not parts[3].isdigit():
            raise S2DataError(f"{path}:{n}: expected 'id|speaker|lang|n_frames', got {line!r}")
        items.append(S2ListItem(parts[0], parts[1], parts[2], int(parts[3])))
    if not items:
        raise S2DataError(f"{path}: the list is empty")
    return items


@dataclass
class S2Item:
    id: str
    wav: Tensor  # [N] float32, N = T * hop
    spec: Tensor  # [F, T]
    ssl: Tensor  # [D, T] float32
    phones: Tensor  # [L] int64


class S2Dataset(Dataset):
    """Items of an S2 list, read from ``dump/wav32k``, ``dump/ssl`` and ``dump/phonemes.tsv``."""

    def __init__(self, list_path: str | Path, dump: str | Path, data_cfg: S2DataConfig):
        self.dump = Path(dump)
        self.cfg = data_cfg
        self.items = read_s2_list(list_path)
        phonemes = {e.id: e.phones for e in read_phonemes(self.dump / "phonemes.tsv")}
        missing = [it.id for it in self.items if it.id not in phonemes]
        if missing:
            raise S2DataError(f"{list_path}: {len(missing)} id(s) have no row in {self.dump / 'phonemes.tsv'} "
                              f"(first: {missing[0]}); rerun gen_filelist_s2.py")
        self.phones = {it.id: phonemes[it.id] for it in self.items}
        self.spectrogram = Spectrogram(data_cfg.filter_length, data_cfg.hop_length, data_cfg.win_length)

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        return [it.n_frames for it in self.items]

    def __getitem__(self, index: int) -> S2Item:
        item = self.items[index]
        hop = self.cfg.hop_length
        wav_path = self.dump / "wav32k" / f"{item.id}.wav"
        try:
            wav, sr = sf.read(wav_path, dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise S2DataError(f"{wav_path}: cannot read ({e})") from None
        if sr != self.cfg.sampling_rate or wav.ndim != 1:
            raise S2DataError(f"{wav_path}: expected mono {self.cfg.sampling_rate} Hz, got {sr} Hz, shape {wav.shape}")
        n_frames = len(wav) // hop
        wav_t = torch.from_numpy(wav[: n_frames * hop].copy())
        spec = self.spectrogram(wav_t.unsqueeze(0))[0]
        ssl_path = self.dump / "ssl" / f"{item.id}.pt"
        try:
            ssl = torch.load(ssl_path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated files
            raise S2DataError(f"{ssl_path}: cannot read SSL features ({type(e).__name__}: {e})") from None
        if ssl.dim() != 2 or ssl.size(0) != self.cfg.ssl_dim:
            raise S2DataError(f"{ssl_path}: expected features [{self.cfg.ssl_dim}, T], got {tuple(ssl.shape)}")
        if ssl.size(1) != n_frames:
            raise S2DataError(f"{ssl_path}: {ssl.size(1)} SSL frames but the wav has {n_frames} frames; "
                              "rerun extract_ssl_s2.py --overwrite")
        try:
            phones = torch.tensor(phones_to_ids(self.phones[item.id]), dtype=torch.long)
        except (KeyError, ValueError) as e:
            raise S2DataError(f"{self.dump / 'phonemes.tsv'}: item {item.id}: {e}") from None
        return S2Item(item.id, wav_t, spec, ssl.float(), phones)


@dataclass
class S2Batch:
    ids: list[str]
    ssl: Tensor  # [B, D, T] T even
    spec: Tensor  # [B, F, T]
    spec_lengths: Tensor  # [B]
    wav: Tensor  # [B, 1, T * hop]
    text: Tensor  # [B, L]
    text_lengths: Tensor  # [B]

    def to(self, device: torch.device) -> S2Batch:
        return S2Batch(self.ids, self.ssl.to(device, non_blocking=True), self.spec.to(device, non_blocking=True),
                       self.spec_lengths.to(device), self.wav.to(device, non_blocking=True),
                       self.text.to(device), self.text_lengths.to(device))


def collate_s2(items: list[S2Item]) -> S2Batch:
    """Zero-pad to the longest item, frames rounded up to an even count."""
    t_max = max(it.spec.size(1) for it in items)
    t_pad = t_max + (t_max % 2)
    hop = items[0].wav.numel() // max(items[0].spec.size(1), 1)
    l_max = max(it.phones.numel() for it in items)
    b = len(items)
    ssl = torch.zeros(b, items[0].ssl.size(0), t_pad)
    spec = torch.zeros(b, items[0].spec.size(0), t_pad)
    wav = torch.zeros(b, 1, t_pad * hop)
    text = torch.zeros(b, l_max, dtype=torch.long)
    for i, it in enumerate(items):
        t = it.spec.size(1)
        ssl[i, :, :t] = it.ssl
        spec[i, :, :t] = it.spec
        wav[i, 0, : it.wav.numel()] = it.wav
        text[i, : it.phones.numel()] = it.phones
    return S2Batch([it.id for it in items], ssl, spec,
                   torch.tensor([it.spec.size(1) for it in items], dtype=torch.long), wav, text,
                   torch.tensor([it.phones.numel() for it in items], dtype=torch.long))


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, disjoint across ranks, the same number of batches on every rank.

    Items are grouped into buckets ``(boundaries[i], boundaries[i+1]]`` (frames); items outside
    ``(boundaries[0], boundaries[-1]]`` are excluded (``excluded`` lists them, the training
    script reports them). Each epoch (``set_epoch``) buckets are shuffled with ``seed + epoch``,
    split into batches, and the batch order is shuffled; the batch list is padded by repetition
    to a multiple of the world size and rank r takes batches r, r + W, ...
    """

    def __init__(self, lengths: list[int], batch_size: int, boundaries: list[int], rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True):
        self.batch_size, self.rank, self.world, self.seed, self.shuffle = batch_size, rank, world_size, seed, shuffle
        self.epoch, self.start = 0, 0
        self.buckets: list[list[int]] = [[] for _ in range(len(boundaries) - 1)]
        self.excluded: list[int] = []
        for i, n in enumerate(lengths):
            b = next((k for k in range(len(boundaries) - 1) if boundaries[k] < n <= boundaries[k + 1]), None)
            (self.excluded if b is None else self.buckets[b]).append(i)
        self.buckets = [b for b in self.buckets if b]
        if not self.buckets:
            raise S2DataError(f"no item has a length in ({boundaries[0]}, {boundaries[-1]}] frames; "
                              "adjust train.bucket_boundaries")

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's batch order; ``start`` skips that many batches (mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        batches = []
        for bucket in self.buckets:
            order = list(bucket)
            if self.shuffle:
                rng.shuffle(order)
            batches += [order[i: i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        n_total = math.ceil(len(batches) / self.world) * self.world
        batches += [batches[i % len(batches)] for i in range(n_total - len(batches))]
        return batches[self.rank:: self.world]

    def __iter__(self):
        return iter(self._batches()[self.start:])

    def __len__(self) -> int:
        n = sum(math.ceil(len(b) / self.batch_size) for b in self.buckets)
        return math.ceil(n / self.world)
