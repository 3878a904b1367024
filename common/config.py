"""Stage configs: dataclasses loaded from JSON, validated, with derived values.

A config file has the sections ``data``, ``model`` and ``train`` (S1 also ``inference``).
Every key must be a field of its section: an unknown key is an error that names it, so a
typo never silently falls back to a default. Types are checked (ints are accepted where a
float is expected), invariants are checked in ``__post_init__`` and derived values
(spectrogram channels, token rate, segment frames, EOS id) are computed there and never
written in the JSON. ``save_config`` writes the resolved config (derived values left out)
so that ``load_config(save_config(cfg)) == cfg``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the file and the key."""


INFERENCE_RULES = ("ours", "gsv1")  # S1 inference rules, see infer/rules.py
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 on CUDA if supported, else fp32


def _derived(default: Any = None) -> Any:
    """A field computed in ``__post_init__``; not accepted from JSON, not saved."""
    return field(default=default, init=False, metadata={"derived": True})


# ----------------------------------------------------------------------------- S2


@dataclass
class S2DataConfig:
    sampling_rate: int = 32000
    filter_length: int = 2048
    hop_length: int = 640
    win_length: int = 2048
    n_mel_channels: int = 128
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    ssl_model: str = "TencentGameMate/chinese-hubert-base"  # hub id or local save_pretrained directory
    ssl_dim: int = 768
    min_seconds: float = 0.6
    max_seconds: float = 20.0
    val_items: int = 8
    spec_channels: int = _derived()

    def __post_init__(self) -> None:
        self.spec_channels = self.filter_length // 2 + 1
        _check(self.win_length <= self.filter_length, "data.win_length must be <= data.filter_length")
        _check(0 < self.min_seconds < self.max_seconds, "data.min_seconds must be in (0, max_seconds)")


@dataclass
class S2ModelConfig:
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    resblock: str = "1"
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    upsample_rates: list[int] = field(default_factory=lambda: [10, 8, 2, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 8, 2, 2])
    gin_channels: int = 512
    semantic_frame_rate: str = "25hz"
    freeze_quantizer: bool = False
    codebook_size: int = 1024
    codebook_decay: float = 0.99
    kmeans_iters: int = 50
    dead_code_threshold: float = 2.0
    ref_hidden: int = 128
    ref_heads: int = 2
    ref_kernel_size: int = 5
    mrte_hidden: int = 512
    mrte_heads: int = 4
    posterior_layers: int = 16
    posterior_kernel_size: int = 5
    flow_layers: int = 4
    flow_kernel_size: int = 5
    n_flows: int = 4
    use_spectral_norm: bool = False
    disc_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    disc_channel_divisor: int = 1
    n_speakers: int = 0  # > 0: a learned speaker embedding added to the reference encoder's style vector

    def __post_init__(self) -> None:
        _check(self.n_speakers >= 0, "model.n_speakers must be >= 0 (0 = off)")
        _check(self.disc_channel_divisor in (1, 2, 4, 8, 16), "model.disc_channel_divisor must be 1, 2, 4, 8 or 16")
        _check(self.semantic_frame_rate in ("25hz", "50hz"),
               f"model.semantic_frame_rate must be '25hz' or '50hz', got {self.semantic_frame_rate!r}")
        _check(self.resblock in ("1",), f"model.resblock must be '1', got {self.resblock!r}")
        _check(len(self.upsample_rates) == len(self.upsample_kernel_sizes),
               "model.upsample_rates and model.upsample_kernel_sizes must have the same length")
        _check(len(self.resblock_kernel_sizes) == len(self.resblock_dilation_sizes),
               "model.resblock_kernel_sizes and model.resblock_dilation_sizes must have the same length")
        _check(self.hidden_channels % self.n_heads == 0, "model.hidden_channels must be divisible by n_heads")
        _check(self.mrte_hidden % self.mrte_heads == 0, "model.mrte_hidden must be divisible by mrte_heads")
        _check(self.inter_channels % 2 == 0, "model.inter_channels must be even (the flow splits it in halves)")


@dataclass
class S2TrainConfig:
    seed: int = 1234
    epochs: int = 100
    max_steps: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    eps: float = 1e-9
    weight_decay: float = 0.01
    lr_decay: float = 0.999875
    segment_size: int = 20480
    c_mel: float = 45.0
    c_kl: float = 1.0
    kl_warmup_steps: int = 0  # c_kl ramps linearly from 0 over this many steps (0: full weight from the start)
    c_commit: float = 1.0
    c_fm: float = 1.0
    c_gen: float = 1.0
    c_prior_mean: float = 0.0  # weight of the extra prior-mean target (modules.losses.prior_mean_loss; 0: off)
    c_dc: float = 0.0  # weight of the sub-audio (offset/drift) loss, modules.losses.dc_loss (0: off)
    disc_start_step: int = 0  # the discriminator and adversarial losses start at this step (0: from the start)
    text_low_lr_rate: float = 1.0
    precision: str = "auto"
    grad_clip: float = 0.0
    log_interval: int = 100
    eval_interval: int = 1000
    keep_ckpts: int = 3
    num_workers: int = 2
    bucket_boundaries: list[int] = field(default_factory=lambda: [32, 300, 400, 500, 600, 700, 800, 900, 1000])
    max_nonfinite_steps: int = 20
    segment_frames: int = _derived()

    def __post_init__(self) -> None:
        _check(self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(len(self.betas) == 2, "train.betas must have two values")
        _check(self.batch_size >= 1, "train.batch_size must be >= 1")
        _check(self.kl_warmup_steps >= 0, "train.kl_warmup_steps must be >= 0")
        _check(self.c_prior_mean >= 0, "train.c_prior_mean must be >= 0")
        _check(self.c_dc >= 0, "train.c_dc must be >= 0")
        _check(self.disc_start_step >= 0, "train.disc_start_step must be >= 0")
        _check(self.bucket_boundaries == sorted(self.bucket_boundaries) and len(self.bucket_boundaries) >= 2,
               "train.bucket_boundaries must be an increasing list of at least two frame counts")


@dataclass
class S2Config:
    data: S2DataConfig = field(default_factory=S2DataConfig)
    model: S2ModelConfig = field(default_factory=S2ModelConfig)
    train: S2TrainConfig = field(default_factory=S2TrainConfig)
    token_rate: float = _derived()

    def __post_init__(self) -> None:
        hop, sr = self.data.hop_length, self.data.sampling_rate
        prod = 1
        for r in self.model.upsample_rates:
            prod *= r
        _check(prod == hop, f"product of model.upsample_rates ({prod}) must equal data.hop_length ({hop})")
        _check(self.train.segment_size % hop == 0,
               f"train.segment_size ({self.train.segment_size}) must be a multiple of data.hop_length ({hop})")
        self.train.segment_frames = self.train.segment_size // hop
        frames_per_token = 2 if self.model.semantic_frame_rate == "25hz" else 1
        self.token_rate = sr / hop / frames_per_token
        min_frames = self.train.bucket_boundaries[0]
        _check(self.train.segment_frames <= min_frames,
               f"train.segment_size is {self.train.segment_frames} frames but the shortest bucket starts at "
               f"{min_frames} frames: training slices would not fit")


# ----------------------------------------------------------------------------- S1


@dataclass
class S1DataConfig:
    max_seconds: float = 54.0
    min_phones_per_second: float = 3.0
    max_phones_per_second: float = 25.0
    max_phones: int = 540
    min_tokens: int = 2
    val_items: int = 8
    bert_model: str = "hfl/chinese-roberta-wwm-ext-large"  # masked-LM hub id or local folder (if bert_dim > 0)
    concat_max_seconds: float = 0.0  # > 0: gen_filelist_s1.py joins a speaker's consecutive utterances up to this
    concat_pause_tokens: int = 5  # pause between joined utterances: this many silence tokens (and one SP phone)

    def __post_init__(self) -> None:
        _check(self.max_seconds > 0, "data.max_seconds must be > 0")
        _check(self.concat_max_seconds >= 0, "data.concat_max_seconds must be >= 0 (0 = off)")
        _check(self.concat_pause_tokens >= 0, "data.concat_pause_tokens must be >= 0")
        _check(0 <= self.min_phones_per_second < self.max_phones_per_second,
               "data.min_phones_per_second must be below data.max_phones_per_second")


@dataclass
class S1ModelConfig:
    codebook_size: int = 1024
    phoneme_vocab_size: int = 512
    embedding_dim: int = 512
    n_layer: int = 12
    n_head: int = 16
    ffn_dim: int = 2048
    dropout: float = 0.1
    pos_dropout: float = 0.1
    bert_dim: int = 0
    position: str = "sinusoid"  # "sinusoid" (scaled sinusoids, as the original) | "rope" (rotary, s1/model.py)
    n_speakers: int = 0  # > 0: a learned speaker embedding with this many rows (speaker table from the manifest)
    eos_id: int = _derived()
    vocab_size: int = _derived()

    def __post_init__(self) -> None:
        _check(self.embedding_dim % self.n_head == 0, "model.embedding_dim must be divisible by model.n_head")
        _check(self.bert_dim >= 0, "model.bert_dim must be >= 0 (0 = off)")
        _check(self.position in ("sinusoid", "rope"),
               f"model.position must be 'sinusoid' or 'rope', got {self.position!r}")
        _check(self.position != "rope" or (self.embedding_dim // self.n_head) % 2 == 0,
               "model.position 'rope' needs an even head width (embedding_dim / n_head)")
        _check(self.n_speakers >= 0, "model.n_speakers must be >= 0 (0 = off)")
        self.eos_id = self.codebook_size
        self.vocab_size = self.codebook_size + 1


@dataclass
class S1TrainConfig:
    seed: int = 1234
    epochs: int = 100
    max_steps: int = 0
    max_batch_tokens: int = 20000
    max_batch_size: int = 32
    learning_rate: float = 4e-4
    lr_init: float = 1e-6
    lr_end: float = 4e-5
    warmup_steps: int = 2000
    decay_steps: int = 40000
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_accum: int = 1
    grad_clip: float = 1.0
    precision: str = "auto"
    log_interval: int = 50
    eval_interval: int = 1000
    keep_ckpts: int = 3
    num_workers: int = 2
    top_k_acc: int = 3
    max_nonfinite_steps: int = 20

    def __post_init__(self) -> None:
        _check(self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(self.grad_accum >= 1, "train.grad_accum must be >= 1")
        _check(self.warmup_steps < self.decay_steps, "train.warmup_steps must be below train.decay_steps")
        _check(self.lr_end <= self.learning_rate, "train.lr_end must not exceed train.learning_rate")


@dataclass
class S1InferenceConfig:
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    min_new_tokens: int = 11
    max_tokens_per_phoneme: float = 8.0
    rules: str = "ours"  # "ours" | "gsv1": the GPT-SoVITS v1 inference rules (infer/rules.py), set for v1 weights

    def __post_init__(self) -> None:
        _check(self.rules in INFERENCE_RULES, f"inference.rules must be one of {INFERENCE_RULES}, got {self.rules!r}")
        _check(0 < self.top_p <= 1, "inference.top_p must be in (0, 1]")
        _check(self.temperature > 0, "inference.temperature must be > 0")
        _check(self.repetition_penalty >= 1, "inference.repetition_penalty must be >= 1")


@dataclass
class S1Config:
    data: S1DataConfig = field(default_factory=S1DataConfig)
    model: S1ModelConfig = field(default_factory=S1ModelConfig)
    train: S1TrainConfig = field(default_factory=S1TrainConfig)
    inference: S1InferenceConfig = field(default_factory=S1InferenceConfig)

    def __post_init__(self) -> None:
        _check(self.model.bert_dim == 0 or bool(self.data.bert_model.strip()),
               f"model.bert_dim is {self.model.bert_dim} but data.bert_model is empty: name the BERT model "
               "(a hub id such as hfl/chinese-roberta-wwm-ext-large, or a local folder), or set model.bert_dim to 0")


# ----------------------------------------------------------------------------- loading

C = TypeVar("C")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):  # JSON NaN / Infinity literals (Python's json reads them), or 1e999
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    raise ConfigError(f"{where}: unsupported config type {tp}")


def from_dict(cls: type[C], data: Any, where: str = "config") -> C:
    """Build the dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                          f"allowed: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """The JSON-serialisable form of a config, derived fields left out."""
    out = {}
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def load_config(path: str | Path, cls: type[C]) -> C:
    """Load and validate a JSON config file into ``cls``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_to_json(cfg: Any) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    text = json.dumps(to_dict(cfg), indent=2, ensure_ascii=False)
    scalar_list = re.compile(r"\[\s*([^\[\]{}]*?)\s*\]", re.S)
    text = scalar_list.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
                           if m.group(1).strip() else "[]", text)
    return text + "\n"


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON (atomically) and return the path."""
    from common.fileio import atomic_write_text

    path = Path(path)
    atomic_write_text(path, config_to_json(cfg))
    return path
