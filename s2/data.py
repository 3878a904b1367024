"""S2 training data: dataset over the S2 lists, even-length collate, length-bucketed DDP sampler.

An example is the 32 kHz wav, its linear spectrogram ``[F, T]`` (T = N // hop), its HuBERT
features ``[D, T]`` (extract_ssl_s2.py already aligned them to T frames) and its phoneme
ids ``[L]``. Batches are padded to an even number of frames (the 25 Hz stride-2 projection
and the x2 upsample then round-trip exactly) with zeros; phonemes are padded with 0 and
masked by their lengths. The list format is ``common.manifest.S2ListItem``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from common.config import S2DataConfig
from common.manifest import PHONEMES_NAME, WAV_DIR, S2ListItem, read_phonemes, read_s2_list
from common.speakers import SpeakerError, SpeakerTable
from modules.spectrogram import Spectrogram
from modules.ssl import SSLError, feature_path, load_features
from text.symbols import phones_to_ids


class S2DataError(ValueError):
    """An S2 list or one of its files is invalid; the message names the file and the reason."""


@dataclass
class S2Example:
    id: str
    wav: Tensor  # [N] float32, N = T * hop
    spec: Tensor  # [F, T]
    ssl: Tensor  # [D, T] float32
    phones: Tensor  # [L] int64
    speaker: int | None = None  # row of the speaker table (models with a speaker embedding)


class S2Dataset(Dataset):
    """Examples of an S2 list, read from ``dump/wav32k``, ``dump/ssl`` and ``dump/phonemes.tsv``.

    ``speakers``: the run's speaker table (``common.speakers``), for a model with a speaker
    embedding: every example then carries its speaker's row (an unknown name is an error here)."""

    def __init__(self, list_path: str | Path, dump: str | Path, data_cfg: S2DataConfig,
                 speakers: SpeakerTable | None = None):
        self.dump = Path(dump)
        self.cfg = data_cfg
        self.items: list[S2ListItem] = read_s2_list(list_path)
        try:
            self.speaker_rows = None if speakers is None else [speakers.index(it.speaker) for it in self.items]
        except SpeakerError as err:
            raise S2DataError(f"{list_path}: {err}") from None
        table = self.dump / PHONEMES_NAME
        phonemes = {e.id: e.phones for e in read_phonemes(table)}
        missing = [it.id for it in self.items if it.id not in phonemes]
        if missing:
            raise S2DataError(f"{list_path}: {len(missing)} id(s) have no row in {table} "
                              f"(first: {missing[0]}); rerun gen_filelist_s2.py")
        self.phones = {it.id: phonemes[it.id] for it in self.items}
        self.spectrogram = Spectrogram(data_cfg.filter_length, data_cfg.hop_length, data_cfg.win_length)

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        """Spectrogram frames of every item, from the list (for the bucket sampler)."""
        return [it.n_frames for it in self.items]

    def __getitem__(self, index: int) -> S2Example:
        item = self.items[index]
        hop = self.cfg.hop_length
        wav_path = self.dump / WAV_DIR / f"{item.id}.wav"
        try:
            wav, sr = sf.read(wav_path, dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise S2DataError(f"{wav_path}: cannot read ({e})") from None
        if sr != self.cfg.sampling_rate or wav.ndim != 1:
            raise S2DataError(f"{wav_path}: expected mono {self.cfg.sampling_rate} Hz, got {sr} Hz, shape {wav.shape}")
        n_frames = len(wav) // hop
        wav_t = torch.from_numpy(wav[: n_frames * hop].copy())  # [T * hop]
        spec = self.spectrogram(wav_t.unsqueeze(0))[0]  # [F, T]
        ssl_path = feature_path(self.dump, item.id)
        try:
            ssl = load_features(ssl_path)  # [D, T'] fp16
        except SSLError as e:
            raise S2DataError(f"{e} (rerun extract_ssl_s2.py)") from None
        if ssl.size(0) != self.cfg.ssl_dim:
            raise S2DataError(f"{ssl_path}: features have dimension {ssl.size(0)}, but data.ssl_dim is "
                              f"{self.cfg.ssl_dim}; extract them with the SSL model of this config")
        if ssl.size(1) != n_frames:
            raise S2DataError(f"{ssl_path}: {ssl.size(1)} SSL frames but {wav_path} has {n_frames} frames; "
                              "rerun extract_ssl_s2.py --overwrite")
        bad = int((~torch.isfinite(ssl)).sum())
        if bad:  # one NaN frame in a training forward would turn the EMA codebook into NaN for good
            raise S2DataError(f"{ssl_path}: non-finite features ({bad} NaN/inf values); "
                              "rerun extract_ssl_s2.py --overwrite")
        try:
            phones = torch.tensor(phones_to_ids(self.phones[item.id]), dtype=torch.long)
        except (KeyError, ValueError) as e:
            raise S2DataError(f"{self.dump / PHONEMES_NAME}: item {item.id}: {e}") from None
        return S2Example(item.id, wav_t, spec, ssl.float(), phones,
                         None if self.speaker_rows is None else self.speaker_rows[index])


@dataclass
class S2Batch:
    ids: list[str]
    ssl: Tensor  # [B, D, T] T even
    spec: Tensor  # [B, F, T]
    spec_lengths: Tensor  # [B]
    wav: Tensor  # [B, 1, T * hop]
    text: Tensor  # [B, L]
    text_lengths: Tensor  # [B]
    speakers: Tensor | None = None  # [B] speaker rows, or None (no speaker embedding)

    def to(self, device: torch.device) -> S2Batch:
        return S2Batch(self.ids, self.ssl.to(device, non_blocking=True), self.spec.to(device, non_blocking=True),
                       self.spec_lengths.to(device), self.wav.to(device, non_blocking=True),
                       self.text.to(device), self.text_lengths.to(device),
                       None if self.speakers is None else self.speakers.to(device))


def collate_s2(examples: list[S2Example]) -> S2Batch:
    """Zero-pad to the longest example, frames rounded up to an even count; phonemes padded with 0."""
    if not examples:
        raise ValueError("collate_s2: empty batch")
    frames = [ex.spec.size(1) for ex in examples]
    if min(frames) < 1:
        raise ValueError(f"collate_s2: example {examples[frames.index(min(frames))].id} has no frames")
    hop = examples[0].wav.numel() // frames[0]
    t_max = max(frames)
    t_pad = t_max + (t_max % 2)
    l_max = max(ex.phones.numel() for ex in examples)
    b = len(examples)
    ssl = torch.zeros(b, examples[0].ssl.size(0), t_pad)
    spec = torch.zeros(b, examples[0].spec.size(0), t_pad)
    wav = torch.zeros(b, 1, t_pad * hop)
    text = torch.zeros(b, l_max, dtype=torch.long)
    for i, ex in enumerate(examples):
        t = frames[i]
        if ex.wav.numel() != t * hop or ex.ssl.size(1) != t:
            raise ValueError(f"collate_s2: example {ex.id} has {ex.wav.numel()} samples and {ex.ssl.size(1)} SSL "
                             f"frames for {t} spectrogram frames (hop {hop})")
        ssl[i, :, :t] = ex.ssl
        spec[i, :, :t] = ex.spec
        wav[i, 0, : t * hop] = ex.wav
        text[i, : ex.phones.numel()] = ex.phones
    speakers = None if examples[0].speaker is None else torch.tensor([ex.speaker for ex in examples])
    return S2Batch([ex.id for ex in examples], ssl, spec, torch.tensor(frames, dtype=torch.long), wav, text,
                   torch.tensor([ex.phones.numel() for ex in examples], dtype=torch.long), speakers)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, the same number of batches on every rank.

    Items are grouped into buckets ``(boundaries[i], boundaries[i+1]]`` (frames); items outside
    ``(boundaries[0], boundaries[-1]]`` are excluded (``excluded`` lists their indices; the
    training script reports them). Each epoch (``set_epoch``) every bucket is shuffled with
    ``seed + epoch`` and cut into batches of at most ``batch_size``, and the batch order is
    shuffled. Rank r takes batches r, r + W, ...; when the batch count is not a multiple of
    the world size W, the last round is completed by repeating batches from the start of the
    epoch's order. So every item is used once per epoch, ranks never share a batch except in
    that padded round, and the order depends only on the seed and the epoch (not on W).
    """

    def __init__(self, lengths: list[int], batch_size: int, boundaries: list[int], rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: batch_size {batch_size}, rank {rank}, world_size {world_size}")
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
        """Select the epoch's batch order; ``start`` skips that many of this rank's batches (mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def epoch_batches(self) -> list[list[int]]:
        """Every batch of the epoch in order, before the split across ranks (padded to a multiple of W)."""
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
        return batches + [batches[i % len(batches)] for i in range(n_total - len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.epoch_batches()[self.rank:: self.world][self.start:])

    def __len__(self) -> int:
        """Batches per epoch on each rank (a mid-epoch ``start`` does not change it)."""
        n = sum(math.ceil(len(b) / self.batch_size) for b in self.buckets)
        return math.ceil(n / self.world)
