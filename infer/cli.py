"""Argument groups, the shared text -> tokens flow and error handling of tts.py, s1_infer.py, s2_infer.py.

``run_script`` parses the arguments, shows the package's messages on stderr and turns the
errors a user can act on (bad text, reference, checkpoint, files) into one ``error: ...``
line and an exit code (2 for bad input, 1 when generation produced nothing usable) instead
of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.audio import AudioError, audio_info
from common.checkpoint import CheckpointError
from common.config import ConfigError, S1InferenceConfig
from common.fileio import OutputPathError, check_output_path, remove_stale_temps
from common.script import INTERRUPTED, MAX_SEED, RANDOM_SEED, exit_on_interrupt, finite_float, random_seed
from infer.decoder import DEFAULT_BATCH_SIZE, DEFAULT_NOISE_SCALE, DEFAULT_PAUSE_SECONDS, PRECISIONS, DecodeOptions
from infer.engine import GenerationOptions, Prompt, TTSEngine, sampling_params
from infer.errors import InferenceError
from infer.reference import ReferenceAudio, ReferenceOptions, load_reference, reference_meta
from infer.rules import RULES, RULES_HELP, get_rules
from infer.text_input import TextPiece, read_text, split_text
from infer.tokens_file import TokensFile
from modules.bert import BertError
from modules.ssl import SSLError
from s1.compiled import compile_decode_step
from s1.sampling import PRESETS
from s1.weights import WEIGHT_FORMATS, use_weight_format
from text.errors import MissingDependencyError, TextFrontendError

log = logging.getLogger("infer")

USER_ERRORS = (InferenceError, CheckpointError, AudioError, ConfigError, SSLError, BertError, TextFrontendError,
               MissingDependencyError)

PRESET_HELP = ("sampling preset: " + "; ".join(
    f"{name} (top_k {p.top_k}" + (", argmax" if p.greedy else f", top_p {p.top_p}, temperature {p.temperature}")
    + f", penalty {p.repetition_penalty})" for name, p in PRESETS.items())
    + ". stable: fewest skipped/repeated words; gshead: GPT-SoVITS HEAD defaults; expressive: livelier, riskier; "
      "greedy: deterministic; gsv1: GPT-SoVITS v1 WebUI defaults. Without --preset the S1 checkpoint's "
      "inference section is used (under --rules gsv1: the gsv1 preset)")


SEED_HELP = f"; {RANDOM_SEED} = a random seed, printed so that the output can be made again"


class _StderrHandler(logging.Handler):
    """Writes records to the current ``sys.stderr`` (so redirected or captured streams work)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def setup_messages() -> None:
    """Show INFO messages of the ``infer`` package on stderr, once."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def run_script(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, check the arguments (``check_arguments``), run ``main``; return 0, or print
    ``error: ...`` and return the error's exit code (130 after Ctrl-C, with one line)."""
    args = parser.parse_args(argv)
    setup_messages()
    try:
        with exit_on_interrupt(parser.prog, lambda: _kept(args)):
            check_arguments(args)
            main(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except SystemExit as stop:
        if stop.code == INTERRUPTED:
            return INTERRUPTED
        raise
    return 0


def _kept(args: argparse.Namespace) -> str:
    out = getattr(args, "output", None)
    if out == "-":
        return "the audio written to stdout so far is all there is"
    return f"{out} was not written (outputs are only put in place when complete)"


def check_arguments(args: argparse.Namespace) -> None:
    """Every check that needs no model, run before anything is loaded (so a typo costs no model load).

    The output path (``-o``: writable, not a directory unless several files are written), the
    sampling, generation, decoding and reference options (the same validators as later, on the
    command line's values over the defaults), ``--seed -1`` replaced by a random seed that is
    printed; temp files of killed earlier runs next to the output are removed (one line).
    """
    out = getattr(args, "output", None)
    if out is not None and out != "-":
        many = len(getattr(args, "tokens", None) or []) > 1
        try:
            path = check_output_path(out, directory=many, what="-o")
        except OutputPathError as err:
            raise InferenceError(str(err)) from None
        remove_stale_temps(path if many else path.parent, report=log.info)
    if hasattr(args, "top_k"):
        generation_options(args, S1InferenceConfig())
    batch_size = getattr(args, "batch_size", None)
    DecodeOptions(seed=0, noise_scale=getattr(args, "noise_scale", DEFAULT_NOISE_SCALE),
                  batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
                  pause_seconds=getattr(args, "pause", DEFAULT_PAUSE_SECONDS))
    if getattr(args, "sample_rate", None) is not None and args.sample_rate < 1:
        raise InferenceError(f"--sample-rate must be >= 1 Hz, got {args.sample_rate}")
    if getattr(args, "first_chunk", 1) < 1:
        raise InferenceError(f"--first-chunk must be >= 1 token, got {args.first_chunk}")
    if hasattr(args, "ref_min_seconds"):
        reference_options(args)
    seed = getattr(args, "seed", None)
    if seed == RANDOM_SEED:
        args.seed = random_seed()
        log.info("seed %d (random; --seed %d gives this output again)", args.seed, args.seed)
    elif seed is not None and not 0 <= seed <= MAX_SEED:
        raise InferenceError(f"--seed must be in 0..{MAX_SEED}, or {RANDOM_SEED} for a random seed; got {seed}")


# ----------------------------------------------------------------------------- argument groups


def add_device_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device")
    g.add_argument("--device", default=None,
                   help="cuda, cuda:N, mps or cpu (default: the best available: CUDA, then MPS, then CPU)")
    g.add_argument("--ssl-model", default=None,
                   help="HuBERT folder or hub id (default: data.ssl_model of the S2 checkpoint's config)")
    g.add_argument("--bert-model", default=None,
                   help="BERT (masked-LM) folder or hub id, for S1 models with BERT features (default: "
                        "data.bert_model of the S1 checkpoint's config)")
    g.add_argument("--weights", choices=WEIGHT_FORMATS, default="fp32",
                   help="S1 decoding weights on CPU: fp32 (default), bf16 (fast on CPUs with AVX-512 BF16/AMX), "
                        "fp16 (fbgemm, any AVX2 CPU; closest to fp32) or int8 (weight-only, fewest bytes); the "
                        "others sample nearly but not exactly the fp32 tokens")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile S1's decode step (s1/compiled.py): on a CPU about twice as fast per token "
                        "(fused loops read the weights near the memory bandwidth), for one compilation of "
                        "~1-2 minutes before the first sentence (a C++ compiler is needed: g++ or clang++); pays "
                        "for long texts and servers, not for one short sentence")


def add_text_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("text")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("--text", default=None, help="the text to synthesize")
    src.add_argument("--text-file", default=None, help="a UTF-8 text file to synthesize (any length)")
    g.add_argument("--lang", default="zh",
                   help="language of the text: zh (also reads English words inside it), en, ja (default: zh)")
    g.add_argument("--max-chars", type=int, default=50,
                   help="long text is split at sentence punctuation, then into pieces of at most this many "
                        "characters (default: 50)")


def add_reference_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("reference")
    g.add_argument("--ref", required=required, default=None,
                   help="reference recording of the voice (any sample rate/channels; 3-10 s works best)")
    g.add_argument("--ref-text", default=None,
                   help="transcript of --ref; without it the reference gives the voice style only")
    g.add_argument("--ref-lang", default=None, help="language of --ref-text (default: --lang)")
    g.add_argument("--ref-min-seconds", type=finite_float, default=None,
                   help="references shorter than this are used for style only (default: 3)")
    g.add_argument("--ref-max-seconds", type=finite_float, default=None,
                   help="longer references are cut to a window of at most this length, for style only (default: 10)")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("S1 sampling")
    g.add_argument("--rules", choices=sorted(RULES), default=None, help=RULES_HELP)
    g.add_argument("--preset", choices=sorted(PRESETS), default=None, help=PRESET_HELP)
    g.add_argument("--top-k", type=int, default=None,
                   help="keep the k most likely tokens (overrides the preset); 0 = off (no top-k filter)")
    g.add_argument("--top-p", type=finite_float, default=None, help="nucleus sampling threshold in (0, 1]")
    g.add_argument("--temperature", type=finite_float, default=None, help="sampling temperature (> 0)")
    g.add_argument("--repetition-penalty", type=finite_float, default=None,
                   help="penalty on tokens already present (prompt included); 1 = off")
    g.add_argument("--min-new-tokens", type=int, default=None,
                   help="EOS is blocked for this many tokens (default: the checkpoint's inference.min_new_tokens; "
                        "1 under --rules gsv1)")
    g.add_argument("--max-tokens-per-phoneme", type=finite_float, default=None,
                   help="cap on new tokens per phoneme of a piece (default: inference.max_tokens_per_phoneme)")
    g.add_argument("--speaker", default=None,
                   help="speaker name, for checkpoints trained with speakers (model.n_speakers > 0); the names "
                        "come from the training manifest (an unknown name lists the known ones)")
    g.add_argument("--no-loop-detector", action="store_true",
                   help="do not stop pieces that say the same syllable or phrase again and again (s1/loops.py; "
                        "pauses and held sounds are never stopped)")


def add_decode_args(p: argparse.ArgumentParser, seed_help: str) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--seed", type=int, default=None, help=seed_help + SEED_HELP)
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"pieces generated/decoded together (default: {DEFAULT_BATCH_SIZE}); keep it equal "
                        "between tts.py and s1_infer.py + s2_infer.py for identical audio")
    g.add_argument("--noise-scale", type=finite_float, default=DEFAULT_NOISE_SCALE,
                   help=f"S2 prior noise scale (default: {DEFAULT_NOISE_SCALE})")
    g.add_argument("--pause", type=finite_float, default=DEFAULT_PAUSE_SECONDS,
                   help=f"seconds of silence between pieces (default: {DEFAULT_PAUSE_SECONDS})")
    g.add_argument("--sample-rate", type=int, default=None,
                   help="sample rate of the output wav (default: the S2 rate, 32000)")
    g.add_argument("--s2-precision", choices=PRECISIONS, default="fp32",
                   help="S2 decoding: fp32 (default), bf16 autocast, or auto (bf16 on CPUs with native bf16 and "
                        "CUDA); bf16 audio differs from fp32 by rounding (bench/s2.py reports the SNR)")


# ----------------------------------------------------------------------------- options from args


def reference_options(args: argparse.Namespace, base: dict | None = None) -> ReferenceOptions:
    """``ReferenceOptions`` from ``base`` (e.g. a tokens file's) with the CLI's explicit values on top."""
    values = dict(base or {})
    if getattr(args, "ref_min_seconds", None) is not None:
        values["min_seconds"] = args.ref_min_seconds
        values["shortest_seconds"] = min(ReferenceOptions.shortest_seconds, args.ref_min_seconds)
    if getattr(args, "ref_max_seconds", None) is not None:
        values["max_seconds"] = args.ref_max_seconds
    try:
        return ReferenceOptions(**values)
    except TypeError as e:
        raise InferenceError(f"reference options {values}: {e}") from None


def inference_rules(args: argparse.Namespace, defaults: S1InferenceConfig) -> str:
    """``--rules``, else the S1 checkpoint's ``inference.rules``."""
    return getattr(args, "rules", None) or defaults.rules


def generation_options(args: argparse.Namespace, defaults: S1InferenceConfig) -> GenerationOptions:
    """Options from the CLI over the checkpoint's ``inference`` section, with the rule set's own defaults
    (gsv1: preset gsv1, EOS blocked at the first step only) between the two."""
    rules = get_rules(inference_rules(args, defaults))
    params = sampling_params(defaults, args.preset or rules.preset, args.top_k, args.top_p, args.temperature,
                             args.repetition_penalty)
    min_new = rules.min_new_tokens if rules.min_new_tokens is not None else defaults.min_new_tokens
    return GenerationOptions(
        sampling=params, seed=args.seed if args.seed is not None else 0,
        min_new_tokens=min_new if args.min_new_tokens is None else args.min_new_tokens,
        max_tokens_per_phoneme=(defaults.max_tokens_per_phoneme if args.max_tokens_per_phoneme is None
                                else args.max_tokens_per_phoneme),
        loop_detection=not args.no_loop_detector, batch_size=args.batch_size, rules=rules.name,
        speaker=args.speaker)


def decode_options(args: argparse.Namespace, seed: int) -> DecodeOptions:
    return DecodeOptions(seed=seed, noise_scale=args.noise_scale, batch_size=args.batch_size,
                         pause_seconds=args.pause, precision=args.s2_precision)


def check_reference_file(path: str | Path) -> None:
    """Fail fast (before loading models) on a missing or unreadable reference."""
    audio_info(path)


@dataclass
class Prepared:
    """Everything S1 needs, from the arguments: models, reference, text pieces, prompt, options."""

    engine: TTSEngine
    ref: ReferenceAudio
    ref_opts: ReferenceOptions
    pieces: list[TextPiece]
    prompt: Prompt
    gen_opts: GenerationOptions


def text_to_tokens(args: argparse.Namespace) -> tuple[TTSEngine, ReferenceAudio, TokensFile]:
    """The shared S1 half of tts.py and s1_infer.py: text + reference -> tokens of every piece."""
    prep = prepare(args)
    tf = prep.engine.generate(prep.pieces, prep.prompt, prep.gen_opts)
    tf.meta.update(reference_meta(prep.ref, prep.ref_opts, args.lang))
    return prep.engine, prep.ref, tf


def prepare(args: argparse.Namespace) -> Prepared:
    """Text pieces, checks, models, reference and prompt from the arguments (before any generation)."""
    pieces = split_text(read_text(args.text, args.text_file), args.lang, args.max_chars)
    ref_opts = reference_options(args)
    check_reference_file(args.ref)
    engine = TTSEngine.load(args.s1_ckpt, args.s2_ckpt, args.device, args.ssl_model, args.bert_model)
    if args.weights != "fp32":
        try:
            info = use_weight_format(engine.s1.model, args.weights)
        except ValueError as err:
            raise InferenceError(f"--weights {args.weights}: {err}") from None
        log.info("S1 decoding weights: %s (%.1f MB per step)", info.weight_format, info.transformer_weight_mb)
    if args.compile:
        t0 = time.perf_counter()
        try:
            info = compile_decode_step(engine.s1.model)
        except RuntimeError as err:
            raise InferenceError(f"--compile: {err}") from None
        log.info("S1 decode step compiled with torch.compile in %.0f s%s", time.perf_counter() - t0,
                 "" if info is None else f"; it runs at {info.threads} thread(s) (ms per step by threads: "
                 f"{info.step_ms_by_threads})")
    ref = load_reference(args.ref, engine.s2.sample_rate, ref_opts)
    gen_opts = generation_options(args, engine.s1.cfg.inference)
    engine.speaker_rows(gen_opts.speaker)  # an unknown or missing speaker fails here, before any work
    if gen_opts.rules != "ours":
        log.info("S1 inference rules: %s (GPT-SoVITS v1: first token dropped, EOS blocked at the first step only, "
                 "v1 prompt audio); --rules ours to change", gen_opts.rules)
    prompt = engine.prompt(ref, args.ref_text, args.ref_lang or args.lang, ref_opts.silence_seconds, gen_opts.rules)
    log.info("%d piece(s) to synthesize%s", len(pieces), "" if prompt.text else " (reference used for style only)")
    return Prepared(engine=engine, ref=ref, ref_opts=ref_opts, pieces=pieces, prompt=prompt, gen_opts=gen_opts)


def output_path(path: str | Path) -> Path:
    """``path`` with its parent directory created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
