"""``TTSEngine``: S1 + S2 (+ HuBERT) loaded once; text pieces -> semantic tokens -> waveform.

    engine = TTSEngine.load("logs/s1", "logs/s2", device="cpu")
    ref = load_reference("ref.wav", engine.s2.sample_rate)
    pieces = split_text("第一句。第二句。", "zh")
    tf = engine.generate(pieces, engine.prompt(ref, "参考音频的文字", "zh"), GenerationOptions(...))
    wav = decode_tokens_file(engine.s2, tf, reference_spectrogram(ref.wav, engine.s2), DecodeOptions(seed=...))
    # (decode_tokens_file and DecodeOptions: infer.decoder)

Per piece the S1 input is ``prompt phonemes + piece phonemes`` and the prompt tokens (spec
§6.6, GPT-SoVITS v1), plus, for S1 models with ``bert_dim > 0``, the BERT word features of
the prompt text and the piece (``modules.bert``, concatenated the same way); all pieces are
generated AS A BATCH (``s1.generate`` left-pads them), piece ``i`` sampling with seed
``seed + i`` so its tokens do not depend on the batch. EOS is blocked for ``min_new_tokens``
steps; each piece is capped at ``ceil(max_tokens_per_phoneme * its phonemes)`` new tokens
(failure mode 2). Only the NEW tokens and only the piece's own phonemes go to S2 (failure
mode 4). A piece that comes back without tokens is an error naming it (failure mode 3).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.config import S1InferenceConfig
from infer.decoder import DecodeOptions, generator_dtype
from infer.errors import GenerationError, InferenceError
from infer.loading import LoadedS1, LoadedS2, check_pair, load_s1, load_s2, pick_device, speaker_row
from infer.reference import ReferenceAudio, ReferenceOptions, prompt_tokens
from infer.rules import get_rules, gsv1_prompt_tokens, librosa_style_load
from infer.stream import PieceStreamer, StreamOptions
from infer.text_input import TextPiece, phonemize
from infer.tokens_file import TokensFile
from modules.bert import LoadedBert, bert_features_batch, load_bert_model
from modules.ssl import SSLModel, load_ssl_model
from s1.generate import GenerationResult, LoopDetector, StepTokens, generate_steps, run_to_end
from s1.sampling import PRESETS, SamplingParams

log = logging.getLogger(__name__)


def sampling_params(defaults: S1InferenceConfig, preset: str | None = None, top_k: int | None = None,
                    top_p: float | None = None, temperature: float | None = None,
                    repetition_penalty: float | None = None) -> SamplingParams:
    """The checkpoint's ``inference`` defaults, replaced by ``preset`` if given, then by explicit values."""
    if preset is None:
        params = SamplingParams(top_k=defaults.top_k, top_p=defaults.top_p, temperature=defaults.temperature,
                                repetition_penalty=defaults.repetition_penalty)
    elif preset in PRESETS:
        params = PRESETS[preset]
    else:
        raise InferenceError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    overrides = {k: v for k, v in (("top_k", top_k), ("top_p", top_p), ("temperature", temperature),
                                   ("repetition_penalty", repetition_penalty)) if v is not None}
    try:
        return replace(params, **overrides)
    except ValueError as e:
        raise InferenceError(f"sampling option: {e}") from None


@dataclass(frozen=True)
class GenerationOptions:
    """How S1 samples; ``batch_size`` pieces are generated together; ``rules``: "ours" or "gsv1" (infer/rules.py)."""

    sampling: SamplingParams
    seed: int = 0
    min_new_tokens: int = 11
    max_tokens_per_phoneme: float = 8.0
    loop_detection: bool = True
    batch_size: int = 16
    rules: str = "ours"
    speaker: str | None = None  # speaker name (tts.py --speaker), for models with a speaker table

    def __post_init__(self) -> None:
        get_rules(self.rules)
        if self.min_new_tokens < 0:
            raise InferenceError(f"--min-new-tokens must be >= 0, got {self.min_new_tokens}")
        if self.max_tokens_per_phoneme <= 0:
            raise InferenceError(f"--max-tokens-per-phoneme must be > 0, got {self.max_tokens_per_phoneme}")
        if self.batch_size < 1:
            raise InferenceError(f"--batch-size must be >= 1, got {self.batch_size}")

    def caps(self, pieces: list[TextPiece]) -> list[int]:
        """New-token cap per piece, from its own phoneme count (prompt phonemes not counted)."""
        return [max(self.min_new_tokens + 1, math.ceil(self.max_tokens_per_phoneme * len(p.ids))) for p in pieces]


@dataclass
class Prompt:
    """What S1 continues: the transcript's phoneme ids and the reference tokens (both empty = style only)."""

    text: str | None
    phone_ids: list[int]
    tokens: Tensor  # [P] int64, CPU
    bert: Tensor | None = None  # [bert_dim, len(phone_ids)] BERT features (S1 models with bert_dim > 0)


class TTSEngine:
    """S1, S2, the SSL model and (for S1 models with ``bert_dim > 0``) BERT, loaded once (see the module docstring)."""

    def __init__(self, s1: LoadedS1, s2: LoadedS2, ssl: SSLModel | None, bert: LoadedBert | None = None):
        self.s1, self.s2, self.ssl, self.bert = s1, s2, ssl, bert
        self.warnings = check_pair(s1, s2)
        bert_dim = s1.cfg.model.bert_dim
        if bert_dim > 0 and (bert is None or bert.hidden_size != bert_dim):
            got = "none is loaded" if bert is None else f"{bert.source} has hidden size {bert.hidden_size}"
            raise InferenceError(f"{s1.path} takes BERT features of width {bert_dim}, but {got}; pass the BERT "
                                 "model it was trained with (--bert-model)")

    @classmethod
    def load(cls, s1_ckpt: str | Path, s2_ckpt: str | Path, device: str | torch.device | None = None,
             ssl_model: str | None = None, bert_model: str | None = None) -> TTSEngine:
        """Load both checkpoints, the SSL model (``ssl_model``, default: the S2 config's ``data.ssl_model``)
        and, for an S1 model with ``bert_dim > 0``, BERT (``bert_model``, default: the S1 config's
        ``data.bert_model``)."""
        dev = device if isinstance(device, torch.device) else pick_device(device)
        s2 = load_s2(s2_ckpt, dev)
        s1 = load_s1(s1_ckpt, dev)
        ssl = load_ssl_model(ssl_model or s2.cfg.data.ssl_model, dev)
        bert = load_bert_model(bert_model or s1.cfg.data.bert_model, dev) if s1.cfg.model.bert_dim > 0 else None
        return cls(s1, s2, ssl, bert)

    def speaker_rows(self, name: str | None) -> tuple[int | None, int | None]:
        """(S1 row, S2 row) of speaker ``name``; ``InferenceError`` (one line, listing the known speakers) for
        an unknown name, a missing name when a model has speakers, or a name when neither has any."""
        rows = speaker_row(self.s1, name), speaker_row(self.s2, name)
        if name is not None and rows == (None, None):
            raise InferenceError(f"--speaker {name!r} given, but neither {self.s1.path} nor {self.s2.path} was "
                                 "trained with speakers (model.n_speakers = 0)")
        return rows

    def bert_features(self, pieces: list[TextPiece]) -> list[Tensor] | None:
        """BERT features ``[bert_dim, L_i]`` of each piece (batched), or None for an S1 model without them."""
        if self.bert is None:
            return None
        if any(p.g2p is None for p in pieces):
            raise InferenceError("BERT features need the text frontend's result of every piece (TextPiece.g2p)")
        return bert_features_batch(self.bert, [p.g2p for p in pieces])

    def _bert_rows(self, prompt: Prompt, chunk: list[TextPiece]) -> list[Tensor] | None:
        """Per piece, S1's BERT input ``[P + L_i, bert_dim]``: the prompt's features, then the piece's."""
        feats = self.bert_features(chunk)
        if feats is None:
            return None
        head = prompt.bert
        if head is None:
            if prompt.phone_ids:
                raise InferenceError("the prompt has phonemes but no BERT features (make it with TTSEngine.prompt)")
            head = feats[0].new_zeros(feats[0].shape[0], 0)
        return [torch.cat([head.to(f.device), f], dim=1).T for f in feats]

    def prompt(self, ref: ReferenceAudio, ref_text: str | None, lang: str,
               silence_seconds: float = ReferenceOptions.silence_seconds, rules: str = "ours") -> Prompt:
        """Prompt phonemes + tokens, or an empty prompt when the reference is for style only.

        ``rules="gsv1"``: v1 final punctuation of the transcript and v1 prompt audio (infer/rules.py).
        """
        rule = get_rules(rules)
        empty = Prompt(text=None, phone_ids=[], tokens=torch.zeros(0, dtype=torch.long))
        if ref_text is None or not ref_text.strip():
            log.info("no --ref-text: the reference gives the voice style only (no text/audio prompt)")
            return empty
        if ref.style_only:
            return empty
        piece = phonemize(ref_text, lang, f"reference text {ref_text!r}", rule.final_marks)
        if self.ssl is None:
            raise InferenceError("a text/audio prompt needs the SSL model, but none is loaded")
        if rule.v1_prompt_audio:
            wav16k = librosa_style_load(ref.path)  # the whole file; a cut window is style-only (no prompt)
            tokens = gsv1_prompt_tokens(wav16k, self.ssl, self.s2)
        else:
            tokens = prompt_tokens(ref, self.ssl, self.s2, silence_seconds)
        if tokens.numel() == 0:
            raise InferenceError(f"{ref.path}: the reference gave no prompt tokens")
        feats = self.bert_features([piece])
        return Prompt(text=piece.text, phone_ids=piece.ids, tokens=tokens, bert=None if feats is None else feats[0])

    def generate(self, pieces: list[TextPiece], prompt: Prompt, opts: GenerationOptions) -> TokensFile:
        """New tokens of every piece (batched S1 generation) as a ``TokensFile`` with metadata."""
        if not pieces:
            raise InferenceError("no text pieces to synthesize")
        caps = opts.caps(pieces)
        tokens: list[Tensor] = []
        reasons: list[str] = []
        for start in range(0, len(pieces), opts.batch_size):
            chunk = pieces[start:start + opts.batch_size]
            result = run_to_end(self._s1_steps(chunk, start, prompt, opts, caps[start:start + len(chunk)]))
            tokens += result.tokens
            reasons += result.stop_reasons
        rate = self.s2.token_rate
        for i, (t, r) in enumerate(zip(tokens, reasons)):
            self._report_piece(i, pieces, t, r, caps[i])
        meta = {
            "s1_checkpoint": str(self.s1.path), "s1_step": self.s1.step,
            "s2_checkpoint": str(self.s2.path), "s2_step": self.s2.step,
            "seed": opts.seed, "sampling": asdict(opts.sampling), "min_new_tokens": opts.min_new_tokens,
            "max_tokens_per_phoneme": opts.max_tokens_per_phoneme, "loop_detection": opts.loop_detection,
            "batch_size": opts.batch_size, "rules": opts.rules, "token_rate": rate,
            "codebook_size": self.s2.codebook_size,
            "sample_rate": self.s2.sample_rate, "prompt_text": prompt.text, "prompt_tokens": int(prompt.tokens.numel()),
            "pieces": [p.text for p in pieces], "stop_reasons": reasons, "speaker": opts.speaker,
        }
        return TokensFile(tokens=[t.numpy() for t in tokens], phones=[np.array(p.ids, dtype=np.int64) for p in pieces],
                          meta=meta)

    def _s1_steps(self, chunk: list[TextPiece], start: int, prompt: Prompt, opts: GenerationOptions,
                  caps: list[int]) -> Generator[StepTokens, None, GenerationResult]:
        """S1 generation of ``chunk`` (pieces ``start``, ``start + 1``, ... ; piece ``i`` samples with seed
        ``opts.seed + i``), step by step (``s1.generate.generate_steps``)."""
        phones = [torch.tensor(prompt.phone_ids + p.ids, dtype=torch.long) for p in chunk]
        row = self.speaker_rows(opts.speaker)[0]
        return generate_steps(
            self.s1.model, phones, [prompt.tokens] * len(chunk), opts.sampling, bert=self._bert_rows(prompt, chunk),
            max_new_tokens=caps, max_tokens_per_phoneme=None, min_new_tokens=opts.min_new_tokens,
            seed=[opts.seed + start + i for i in range(len(chunk))],
            loop_detector=LoopDetector() if opts.loop_detection else None,
            drop_first_token=get_rules(opts.rules).drop_first_token,
            speakers=None if row is None else torch.full((len(chunk),), row, device=self.s1.device))

    def _report_piece(self, i: int, pieces: list[TextPiece], tokens: Tensor, reason: str, cap: int) -> None:
        """Log piece ``i``'s outcome; an empty piece is a ``GenerationError``."""
        p = pieces[i]
        if tokens.numel() == 0:
            raise GenerationError(f"text piece {i + 1} {p.text!r}: S1 generated no tokens (it stopped at once); "
                                  "try another --seed or --preset, or a higher --min-new-tokens")
        log.info("piece %d/%d: %d tokens (%.2f s), stop: %s — %s", i + 1, len(pieces), tokens.numel(),
                 tokens.numel() / self.s2.token_rate, reason, p.text)
        if reason == "length":
            log.warning("warning: piece %d reached its cap of %d tokens without ending; the audio may run on "
                        "(try --preset stable or another --seed)", i + 1, cap)
        elif reason == "loop":
            log.warning("warning: piece %d started repeating itself and was cut", i + 1)

    def stream(self, pieces: list[TextPiece], prompt: Prompt, opts: GenerationOptions, ref_spec: Tensor | None,
               decode: DecodeOptions, stream: StreamOptions | None = None) -> Iterator[np.ndarray]:
        """Audio of the pieces in chunks (float32 [n] at the S2 rate) while S1 is still generating.

        Piece ``i`` is generated alone with seed ``opts.seed + i`` (the tokens ``generate`` gives it)
        and decoded by an ``infer.stream.PieceStreamer`` with noise seed ``decode.seed + i``;
        ``decode.pause_seconds`` of silence between pieces (a chunk of its own). ref_spec: [1, F, T_ref]
        or None. Joined, the chunks approximate ``decode_tokens_file(generate(...))`` (``infer.stream``).
        """
        if not pieces:
            raise InferenceError("no text pieces to synthesize")
        stream = stream or StreamOptions()
        row = self.speaker_rows(opts.speaker)[1]
        speakers = None if row is None else torch.tensor([row], device=self.s2.device)
        ge = self.s2.generator.style(None if ref_spec is None else ref_spec.to(self.s2.device), None, speakers)
        caps = opts.caps(pieces)
        pause = np.zeros(int(round(decode.pause_seconds * self.s2.sample_rate)), dtype=np.float32)
        for i, piece in enumerate(pieces):
            if i and len(pause):
                yield pause
            streamer = PieceStreamer(self.s2, torch.tensor(piece.ids), ge, decode.seed + i, decode.noise_scale, stream,
                                     generator_dtype(decode.precision, self.s2.device))
            steps = self._s1_steps([piece], i, prompt, opts, [caps[i]])
            while True:
                try:
                    step = next(steps)
                except StopIteration as stop:
                    result: GenerationResult = stop.value
                    break
                chunk = streamer.push(step.tokens(0))
                if len(chunk):
                    yield chunk
            self._report_piece(i, pieces, result.tokens[0], result.stop_reasons[0], caps[i])
            chunk = streamer.push(result.tokens[0], final=True)
            if len(chunk):
                yield chunk

