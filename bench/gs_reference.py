"""GPT-SoVITS's own code, imported at run time from a checkout the user gives (``--gs-root``).

Nothing of GPT-SoVITS is copied here: ``import_gs`` puts ``<gs-root>/GPT_SoVITS`` on
``sys.path`` and imports its modules; the functions below only build inputs for them, call
them and record what they compute. Stand-ins, each reported by ``GS.notes``:

- ``torchmetrics`` (if missing): ``Text2SemanticDecoder.__init__`` builds a
  ``MulticlassAccuracy`` used only by its training losses; a parameterless module replaces it
  (the real one has no state-dict entries either).
- ``typing`` names in ``torch.nn.functional`` (if missing): GS's ``patched_mha_with_cache.py``
  takes ``Tuple``/``List`` from ``from torch.nn.functional import *``, which newer torch no longer
  re-exports; the typing aliases are added there (annotations only).
- ``get_bert_feature`` / ``get_bert_inf`` are read from ``inference_webui.py`` with ``ast``
  and executed with the tokenizer and model given (that file loads models, gradio and its
  text segmenter at import, so it cannot be imported as a module).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import logging
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]


@dataclass
class GS:
    """Imported GPT-SoVITS modules of one checkout and the stand-ins that made the imports work."""

    root: Path
    t2s: Any  # AR.models.t2s_model
    models: Any | None  # module.models (None when only S1 was imported)
    mel: Any | None  # module.mel_processing
    utils: Any | None  # utils (HParams)
    notes: list[str] = field(default_factory=list)


def _stand_in_torchmetrics(notes: list[str]) -> None:
    try:
        importlib.import_module("torchmetrics.classification")
        return
    except ImportError:
        pass

    class MulticlassAccuracy(torch.nn.Module):
        """Stand-in: GS builds this metric for training only; it holds no weights. Called (GS's training
        forward, as ``(logits [B, C, ...], targets [B, ...])``), it computes what GS asks of it: the
        micro-averaged top-k accuracy over targets other than ``ignore_index``."""

        def __init__(self, *args: Any, top_k: int = 1, ignore_index: int | None = None, **kwargs: Any) -> None:
            super().__init__()
            self.top_k, self.ignore_index = top_k, ignore_index

        def forward(self, preds: Tensor, target: Tensor) -> Tensor:
            hit = (preds.topk(self.top_k, dim=1).indices == target.unsqueeze(1)).any(dim=1)
            keep = torch.ones_like(hit) if self.ignore_index is None else target != self.ignore_index
            return (hit & keep).sum() / keep.sum().clamp(min=1)

    pkg, sub = types.ModuleType("torchmetrics"), types.ModuleType("torchmetrics.classification")
    sub.MulticlassAccuracy = MulticlassAccuracy
    pkg.classification = sub
    sys.modules.update({"torchmetrics": pkg, "torchmetrics.classification": sub})
    notes.append("stand-in torchmetrics.classification.MulticlassAccuracy (a training metric, no weights; "
                 "computes the same micro top-k accuracy when GS's training forward calls it)")


def _typing_names_in_functional(notes: list[str]) -> None:
    added = [name for name in ("Tuple", "List") if not hasattr(F, name)]
    for name in added:
        setattr(F, name, getattr(typing, name))
    if added:
        notes.append(f"typing.{'/'.join(added)} added to torch.nn.functional for GS's `from torch.nn.functional "
                     "import *` in AR/modules/patched_mha_with_cache.py (annotations only)")


def import_gs(gs_root: str | Path, s2: bool = True) -> GS:
    """Import GS's S1 model (and with ``s2`` its S2 models, spectrogram and HParams) from ``gs_root``."""
    root = Path(gs_root).resolve()
    pkg = root / "GPT_SoVITS"
    if not (pkg / "AR" / "models" / "t2s_model.py").is_file():
        raise SystemExit(f"error: {root} is not a GPT-SoVITS checkout (no GPT_SoVITS/AR/models/t2s_model.py)")
    if "AR" in sys.modules:
        raise SystemExit("error: a GPT-SoVITS checkout is already imported; run one checkout per process")
    notes: list[str] = []
    _stand_in_torchmetrics(notes)
    _typing_names_in_functional(notes)
    # GS's top-level packages whose names are also ours (``text``): ours are set aside while GS imports,
    # then GS's copies leave ``sys.modules`` (GS's modules keep the objects they imported).
    ours = {p.stem for p in REPO.iterdir() if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"}
    shared = {p.stem for p in pkg.iterdir()} & ours
    stash = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in shared}
    root_log = logging.getLogger()
    log_state = (root_log.level, list(root_log.handlers))  # GS's utils sets DEBUG logging to stdout (into our JSON)
    sys.path.insert(0, str(pkg))
    try:
        t2s = importlib.import_module("AR.models.t2s_model")
        models = mel = utils = None
        if s2:
            models = importlib.import_module("module.models")
            mel = importlib.import_module("module.mel_processing")
            utils = importlib.import_module("utils")
    except ImportError as err:
        raise SystemExit(f"error: importing GPT-SoVITS from {pkg} needs {err.name!r} ({err}); install it "
                         "(pip install --no-deps ...) or use GPT-SoVITS's requirements") from None
    finally:
        sys.path.remove(str(pkg))
        sys.path.append(str(pkg))  # GS-only modules imported later (feature_extractor) still resolve; ours win
        for k in [k for k in sys.modules if k.split(".")[0] in shared]:
            del sys.modules[k]
        sys.modules.update(stash)
        root_log.setLevel(log_state[0])
        root_log.handlers[:] = log_state[1]
    if shared:
        notes.append(f"GS packages named like ours ({', '.join(sorted(shared))}) were imported for GS and then "
                     "removed from sys.modules")
    return GS(root=root, t2s=t2s, models=models, mel=mel, utils=utils, notes=notes)


def quiet() -> contextlib.ExitStack:
    """Silence GS's prints and tqdm bars."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


# ----------------------------------------------------------------------------- random-weight v1 files


def s1_config(gs: GS, n_layer: int) -> dict:
    """GS's ``configs/s1longer.yaml`` (the config of the v1 pretrained S1) with ``n_layer`` layers."""
    import yaml

    with open(gs.root / "GPT_SoVITS" / "configs" / "s1longer.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["model"]["n_layer"] = n_layer
    return config


def build_s1_file(gs: GS, n_layer: int, seed: int, path: Path) -> None:
    """A v1 S1 file (``{"weight": "model."-prefixed fp16 state dict, "config", "info"}``) of a random
    ``Text2SemanticDecoder`` (GS's class, default init, ``torch.manual_seed(seed)``)."""
    torch.manual_seed(seed)
    config = s1_config(gs, n_layer)
    model = gs.t2s.Text2SemanticDecoder(config=config, top_k=3)
    weight = {f"model.{k}": v.half() for k, v in model.state_dict().items()}
    torch.save({"weight": weight, "config": config, "info": "GPT-e0"}, path)


def s2_hparams(gs: GS) -> Any:
    """GS's ``configs/s2.json`` as its ``utils.HParams``, 25 Hz tokens (as inference_webui sets)."""
    with open(gs.root / "GPT_SoVITS" / "configs" / "s2.json", encoding="utf-8") as f:
        config = json.load(f)
    config["model"]["semantic_frame_rate"] = "25hz"
    return gs.utils.HParams(**config), config


def build_s2_files(gs: GS, seed: int, g_path: Path, d_path: Path) -> None:
    """v1 S2 generator (``s2G488k.pth`` layout, with enc_q) and discriminator (``s2D488k.pth``) files of
    GS's ``SynthesizerTrn`` / ``MultiPeriodDiscriminator`` with default random init. The codebook is
    seeded N(0, 1) and marked initialised, as in a trained file (GS's k-means init would otherwise run
    on the first input it sees)."""
    hps, config = s2_hparams(gs)
    torch.manual_seed(seed)
    net_g = gs.models.SynthesizerTrn(hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                                     n_speakers=hps.data.n_speakers, **hps.model)
    codebook = net_g.quantizer.vq.layers[0]._codebook
    with torch.no_grad():
        codebook.embed.normal_()
        codebook.embed_avg.copy_(codebook.embed)
        codebook.cluster_size.fill_(1.0)
        codebook.inited.fill_(1.0)
    net_d = gs.models.MultiPeriodDiscriminator(hps.model.use_spectral_norm)
    torch.save({"weight": {k: v.half() for k, v in net_g.state_dict().items()}, "config": config,
                "info": "pretrained"}, g_path)
    torch.save({"weight": {k: v.half() for k, v in net_d.state_dict().items()}}, d_path)


# ----------------------------------------------------------------------------- loading as GS does


def load_gs_s1(gs: GS, path: Path) -> torch.nn.Module:
    """``Text2SemanticDecoder`` with the file's weights, as ``inference_webui.change_gpt_weights`` loads
    them (there through its Lightning wrapper, whose only state is this module under ``model.``)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model = gs.t2s.Text2SemanticDecoder(config=raw["config"], top_k=3)
    model.load_state_dict({k.removeprefix("model."): v for k, v in raw["weight"].items()})
    return model.eval()


def load_gs_s2(gs: GS, g_path: Path, d_path: Path) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(vq_model, discriminator, hps) as ``inference_webui.change_sovits_weights`` / ``s2_train`` load them."""
    raw = torch.load(g_path, map_location="cpu", weights_only=True)
    hps = gs.utils.HParams(**raw["config"])
    hps.model.semantic_frame_rate = "25hz"
    vq = gs.models.SynthesizerTrn(hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                                  n_speakers=hps.data.n_speakers, **hps.model)
    vq.eval()
    vq.load_state_dict(raw["weight"], strict=False)
    net_d = gs.models.MultiPeriodDiscriminator(hps.model.use_spectral_norm)
    net_d.load_state_dict(torch.load(d_path, map_location="cpu", weights_only=True)["weight"])
    return vq, net_d.eval(), hps


# ----------------------------------------------------------------------------- running GS


class EosOff:
    """Forward hook on GS's ``ar_predict_layer``: records the logits [1, V] of every step (``record``)
    and sets the EOS logit to -inf, so decoding runs to ``early_stop_num`` (EOS disabled)."""

    def __init__(self, model: torch.nn.Module, record: bool) -> None:
        self.eos = model.EOS
        self.logits: list[Tensor] = []
        self.record = record
        self.handle = model.ar_predict_layer.register_forward_hook(self)

    def __call__(self, module: torch.nn.Module, inputs: Any, out: Tensor) -> Tensor:
        if self.record:
            self.logits.append(out.detach().clone())
        out = out.clone()
        out[..., self.eos] = float("-inf")
        return out

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def gs_s1_decode(model: torch.nn.Module, phones: Tensor, prompt: Tensor, bert: Tensor, n_tokens: int,
                 top_k: int, record: bool = False) -> tuple[Tensor, list[Tensor]]:
    """GS ``infer_panel`` with EOS disabled, stopping by ``early_stop_num`` so that the caller's slice
    (``pred[:, -idx:]``, inference_webui) holds ``n_tokens`` tokens. phones [L], prompt [P], bert [1024, L]
    -> (those tokens [n_tokens], the recorded logits of every step)."""
    hook = EosOff(model, record)
    try:
        with quiet():
            pred, idx = model.infer_panel(phones[None], torch.tensor([phones.numel()]), prompt[None], bert[None],
                                          top_k=top_k, top_p=1, temperature=1, early_stop_num=n_tokens + 1)
    finally:
        hook.remove()
    return pred[0, -idx:].long(), hook.logits


def gs_bert_functions(gs: GS, tokenizer: Any, bert_model: Any) -> tuple[Any, Any]:
    """GS v1's ``get_bert_feature`` and ``get_bert_inf``, read from its inference_webui.py and executed
    with this tokenizer and masked-LM model (fp32, CPU)."""
    source = (gs.root / "GPT_SoVITS" / "inference_webui.py").read_text(encoding="utf-8")
    wanted = {"get_bert_feature", "get_bert_inf"}
    nodes = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    if {n.name for n in nodes} != wanted:
        raise SystemExit(f"error: {gs.root}: inference_webui.py lacks {sorted(wanted)}")
    namespace: dict[str, Any] = {"torch": torch, "tokenizer": tokenizer, "bert_model": bert_model,
                                 "device": "cpu", "is_half": False}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "inference_webui.py", "exec"), namespace)
    return namespace["get_bert_feature"], namespace["get_bert_inf"]


@torch.no_grad()
def gs_prompt_tokens(gs: GS, hubert_dir: Path, vq_model: torch.nn.Module, ref_path: Path) -> Tensor:
    """``get_tts_wav``'s prompt path: librosa.load(ref, sr=16000) + 0.3·32000 zeros -> cnhubert model
    -> ``vq_model.extract_latent`` -> codes[0, 0]."""
    import librosa

    cnhubert = importlib.import_module("feature_extractor.cnhubert")
    cnhubert.cnhubert_base_path = str(hubert_dir)
    with quiet():
        ssl_model = cnhubert.get_model()
    wav16k, _ = librosa.load(ref_path, sr=16000)
    zero_wav = np.zeros(int(32000 * 0.3), dtype=np.float32)
    wav16k = torch.cat([torch.from_numpy(wav16k), torch.from_numpy(zero_wav)])
    ssl_content = ssl_model.model(wav16k.unsqueeze(0))["last_hidden_state"].transpose(1, 2)
    return vq_model.extract_latent(ssl_content)[0, 0].long()


@torch.no_grad()
def gs_reference_spec(gs: GS, hps: Any, wav32k: Tensor) -> Tensor:
    """``get_spepc`` on an already loaded 32 kHz waveform [N] -> [1, 1025, T]."""
    d = hps.data
    return gs.mel.spectrogram_torch(wav32k[None], d.filter_length, d.sampling_rate, d.hop_length, d.win_length,
                                    center=False)
