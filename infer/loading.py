"""Checkpoints -> models ready for inference, and the checks that the two stages fit together.

``load_s2`` / ``load_s1`` read a checkpoint file or a run directory (its latest checkpoint),
check the stage and the phoneme symbol table (``common.checkpoint.load_checkpoint``),
rebuild the model from the config stored in the checkpoint, load the weights strictly and
put the model in eval mode on the device (fp32). The S2 generator has its weight norm
folded. ``check_pair`` refuses an S1 model whose token vocabulary (codebook size, token
rate) differs from the S2 model's, and warns when S1's tokens were extracted with another
S2 checkpoint file.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from common import speakers as spk
from common.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_model_state
from common.config import S1Config, S2Config, from_dict
from common.dist import DeviceError
from common.dist import pick_device as common_pick_device
from common.gsv1.files import ENC_Q
from infer.errors import InferenceError
from modules.spectrogram import Spectrogram
from s1.model import Text2Semantic, build_model
from s2.model import SynthesizerTrn, build_generator
from text.symbols import SYMBOLS_MD5

log = logging.getLogger(__name__)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1', 'mps'), or the best available: CUDA, then MPS, then CPU."""
    try:
        return common_pick_device(name, prefer_mps=True)
    except DeviceError as err:
        raise InferenceError(str(err)) from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedS2:
    """The S2 generator (eval, fp32, weight norm folded) with its config and origin."""

    generator: SynthesizerTrn
    cfg: S2Config
    path: Path  # the checkpoint file
    step: int
    device: torch.device
    speakers: spk.SpeakerTable | None = None  # the run's speaker table (models with n_speakers > 0)

    @property
    def sample_rate(self) -> int:
        return self.cfg.data.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.cfg.data.hop_length

    @property
    def token_rate(self) -> float:
        return self.cfg.token_rate

    @property
    def codebook_size(self) -> int:
        return self.cfg.model.codebook_size

    @property
    def samples_per_token(self) -> int:
        """Waveform samples per semantic token (1280 at 25 Hz, 32 kHz)."""
        return self.generator.frames_per_token * self.hop_length

    def spectrogram(self) -> Spectrogram:
        """The linear-spectrogram module of this model's config (on its device)."""
        d = self.cfg.data
        return Spectrogram(d.filter_length, d.hop_length, d.win_length).to(self.device)


@dataclass
class LoadedS1:
    """The S1 model (eval, fp32) with its config, origin and the facts about its training tokens."""

    model: Text2Semantic
    cfg: S1Config
    path: Path
    step: int
    semantic: dict | None  # asdict(SemanticMeta) stored by the trainer, None in foreign checkpoints
    device: torch.device
    speakers: spk.SpeakerTable | None = None  # the run's speaker table (models with n_speakers > 0)


def _load(path: str | Path, stage: str) -> Checkpoint:
    try:
        ckpt = load_checkpoint(path, stage=stage, symbols_md5=SYMBOLS_MD5, map_location="cpu")
    except CheckpointError as e:
        raise CheckpointError(f"{stage.upper()} checkpoint {e}") from None
    assert ckpt.path is not None
    return ckpt


def load_s2(path: str | Path, device: torch.device) -> LoadedS2:
    """The S2 generator of a checkpoint file or run directory; errors name the file."""
    ckpt = _load(path, "s2")
    cfg = from_dict(S2Config, ckpt.config, where=f"{ckpt.path} config")
    state = ckpt.models.get("generator")
    if state is None:
        raise InferenceError(f"{ckpt.path}: no 'generator' weights in this S2 checkpoint")
    if float(state.get("quantizer.inited", torch.ones(1)).flatten()[0]) == 0.0:
        raise InferenceError(f"{ckpt.path}: the S2 codebook was never initialised: this checkpoint has not been "
                             "trained, its tokens and audio would mean nothing")
    generator = build_generator(cfg)
    load_model_state(generator, state, ckpt.path, optional=(ENC_Q,))  # exports carry no posterior encoder
    generator.fold_weight_norm()
    generator.to(device=device, dtype=torch.float32).eval()
    return LoadedS2(generator=generator, cfg=cfg, path=ckpt.path, step=ckpt.step, device=device,
                    speakers=_speakers(ckpt, cfg.model.n_speakers))


def load_s1(path: str | Path, device: torch.device) -> LoadedS1:
    """The S1 model of a checkpoint file or run directory; errors name the file."""
    ckpt = _load(path, "s1")
    cfg = from_dict(S1Config, ckpt.config, where=f"{ckpt.path} config")
    state = ckpt.models.get("model")
    if state is None:
        raise InferenceError(f"{ckpt.path}: no 'model' weights in this S1 checkpoint")
    model = build_model(cfg)
    load_model_state(model, state, ckpt.path)
    model.to(device=device, dtype=torch.float32).eval()
    semantic = ckpt.extra.get("semantic")
    return LoadedS1(model=model, cfg=cfg, path=ckpt.path, step=ckpt.step,
                    semantic=semantic if isinstance(semantic, dict) else None, device=device,
                    speakers=_speakers(ckpt, cfg.model.n_speakers))


def _speakers(ckpt: Checkpoint, n_speakers: int) -> spk.SpeakerTable | None:
    """The speaker table saved with a model that has a speaker embedding (None for one without)."""
    if n_speakers == 0:
        return None
    try:
        table = spk.SpeakerTable.from_checkpoint(ckpt.extra, ckpt.path)
    except spk.SpeakerError as err:
        raise InferenceError(str(err)) from None
    if table is None:
        raise InferenceError(f"{ckpt.path}: the model has a speaker embedding (model.n_speakers = {n_speakers}) "
                             "but the checkpoint holds no speaker table")
    return table


def speaker_row(loaded: LoadedS1 | LoadedS2, name: str | None) -> int | None:
    """The embedding row of speaker ``name`` in a loaded model (None for a model without speakers);
    an unknown name, or no name for a model with speakers, is an ``InferenceError`` listing the known ones."""
    try:
        return spk.speaker_row(loaded.speakers, name, loaded.path)
    except spk.SpeakerError as err:
        raise InferenceError(str(err)) from None


def check_pair(s1: LoadedS1, s2: LoadedS2) -> list[str]:
    """Raise ``InferenceError`` if S1's tokens cannot be S2's; return warnings (also logged)."""
    warnings: list[str] = []
    sem = s1.semantic or {}
    s1_codebook = int(sem.get("codebook_size", s1.cfg.model.codebook_size))
    if s1_codebook != s2.codebook_size or s1.cfg.model.codebook_size != s2.codebook_size:
        raise InferenceError(f"{s1.path} was trained on tokens of a {s1_codebook}-code codebook, but {s2.path} has "
                             f"{s2.codebook_size} codes: these checkpoints do not belong together")
    if "token_rate" in sem and abs(float(sem["token_rate"]) - s2.token_rate) > 1e-6:
        raise InferenceError(f"{s1.path} was trained on {float(sem['token_rate']):g} Hz tokens, but {s2.path} makes "
                             f"{s2.token_rate:g} Hz tokens: these checkpoints do not belong together")
    if not sem:
        warnings.append(f"{s1.path}: no record of the S2 checkpoint its tokens came from; cannot check that "
                        f"{s2.path} is the right one")
    elif sem.get("s2_sha256") and sem["s2_sha256"] != file_sha256(s2.path):
        warnings.append(f"{s1.path} was trained on tokens from {sem.get('s2_checkpoint')} (step "
                        f"{sem.get('s2_step')}), but {s2.path} (step {s2.step}) is a different file; this is fine "
                        "only if that S2 was fine-tuned with a frozen codebook (model.freeze_quantizer)")
    for w in warnings:
        log.warning("warning: %s", w)
    return warnings
