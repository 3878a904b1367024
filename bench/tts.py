"""End-to-end inference speed: S2 decode and text -> S1 -> S2, as real-time factors (fp32, CPU by default).

    python -m bench.tts                        # CPU, torch's default thread count
    python -m bench.tts --threads 2 --repeats 2
    python -m bench.tts --device cuda
    python -m bench.tts --bert                 # GPT-SoVITS v1 shapes: 24-layer S1 with BERT features of real text
    python -m bench.tts --weights int8 --s2-precision auto   # the fast CPU formats (tts.py has the same flags)

Full-size models (configs/s1.json: 12 layers; configs/s2.json), random weights, loaded into
the inference classes the scripts use (S2 weight norm folded, eval, ``torch.inference_mode``).
Prints one JSON object:

- ``s2_decode``: ``bench.s2.bench_decode`` (the S2 benchmark's own measurement, reused):
  ``SynthesizerTrn.decode`` of ``--seconds`` of audio, ``--n-phones`` phonemes, a 3 s reference;
  ``rtf`` = wall / audio seconds; FLOPs from ``FlopCounterMode``; here also ``decode_gflop_s``
  and ``decode_fraction_of_peak`` (whole decode) next to the generator's figures.
- ``matmul_peak_gflop_s``: best 2048³ fp32 matmul (``bench.s2.matmul_peak_gflops``), probed
  before and after, the higher kept (compare ratios measured in one run: the machine is shared).
- ``e2e``: ``TTSEngine.generate`` on one piece of ``--n-phones`` random phoneme ids after a prompt
  of ``--prompt-phones`` phonemes and ``--prompt-tokens`` tokens, EOS blocked so that it makes
  ``--seconds`` x token rate tokens (250 for 10 s), KV-cached, ``default`` preset, loop detector on;
  then ``decode_tokens_file`` (S2, batched decode path) of those tokens. ``s1_tok_s`` = new tokens /
  S1 seconds (prefill included); ``rtf`` = (S1 + S2 seconds) / audio seconds, best of ``--repeats``
  full runs. ``reference_s``: prompt tokens (random full-size HuBERT + S2 quantizer) and style
  spectrogram of a ``--ref-seconds`` reference, done once per reference; ``rtf_with_reference``
  adds it.
- ``--bert`` (default S1 config then ``configs/gsv1/s1.json``: 24 layers, ``bert_dim`` 1024): a random
  BERT-large masked LM with ``hfl/chinese-roberta-wwm-ext-large`` shapes (24 layers, 1024 wide,
  vocabulary 21128) and a character tokenizer; the piece is real Chinese text (``BERT_TEXT``,
  through the text frontend) whose BERT features are computed inside ``TTSEngine.generate``
  (so ``s1_s``, ``total_s`` and ``rtf`` include them); ``e2e.bert_s`` times the feature pass alone.
  The prompt transcript's features are made once per reference, like its tokens.
- ``--weights`` (S1 decoding weights, ``s1.weights``) and ``--s2-precision`` (the S2 generator in bf16,
  ``infer.decoder``) as in tts.py; ``s1_weights_info`` says which kernel was measured fastest.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch

from bench.machine import load_now, machine_facts
from bench.s2 import bench_decode, matmul_peak_gflops, synthetic_wav, timed
from common.config import S1Config, S2Config, load_config
from infer.decoder import PRECISIONS, DecodeOptions, decode_tokens_file, generator_dtype, uses_bf16
from infer.engine import GenerationOptions, Prompt, TTSEngine
from infer.loading import LoadedS1, LoadedS2
from infer.reference import ReferenceAudio, prompt_tokens, reference_spectrogram
from infer.text_input import TextPiece, phonemize, split_text
from modules.bert import LoadedBert
from modules.ssl import SSLModel
from s1.model import build_model
from s1.sampling import PRESETS
from s1.weights import WEIGHT_FORMATS, use_weight_format
from s2.model import build_generator
from text.symbols import SYMBOLS

ROOT = Path(__file__).resolve().parents[1]
BERT_TEXT = ("今天天气很好，我们一起去公园散步，看看湖边的花和树，再找一家安静的小店喝茶聊天，"
             "直到太阳下山才慢慢走回家。")
BERT_PROMPT_TEXT = "这是一段参考音频的文字，用来提示说话的风格。"


def random_bert_large(device: torch.device, texts: list[str], work: Path) -> LoadedBert:
    """A random ``BertForMaskedLM`` of chinese-roberta-wwm-ext-large shapes, with a character tokenizer
    whose vocabulary (padded to 21128 entries) holds the special tokens and every character of ``texts``."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    chars = sorted({ch for t in texts for ch in t})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    vocab += [f"[unused{i}]" for i in range(21128 - len(vocab))]
    (work / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096, max_position_embeddings=512)
    model = BertForMaskedLM(cfg).eval().to(device)
    return LoadedBert(model=model, tokenizer=BertTokenizer(vocab_file=str(work / "vocab.txt")), device=device,
                      hidden_size=1024, max_positions=512, source="random chinese-roberta-wwm-ext-large shapes")


def random_hubert(device: torch.device) -> SSLModel:
    """A randomly initialised HuBERT-base (chinese-hubert-base shapes) wrapped like ``load_ssl_model`` does."""
    from transformers import HubertConfig, HubertModel

    model = HubertModel(HubertConfig(conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False))
    return SSLModel(model=model.eval().to(device), device=device, fp16=False, hidden_size=768, samples_per_frame=320,
                    receptive_field=400, source="random chinese-hubert-base shapes")


def build_engine(s1_config: Path, s2_config: Path, device: torch.device, with_hubert: bool,
                 bert: LoadedBert | None = None) -> TTSEngine:
    torch.manual_seed(0)
    s2_cfg = load_config(s2_config, S2Config)
    gen = build_generator(s2_cfg)
    gen.quantizer.inited.fill_(1.0)
    gen.fold_weight_norm()
    s2 = LoadedS2(generator=gen.to(device).eval(), cfg=s2_cfg, path=s2_config, step=0, device=device)
    s1_cfg = load_config(s1_config, S1Config)
    s1 = LoadedS1(model=build_model(s1_cfg).to(device).eval(), cfg=s1_cfg, path=s1_config, step=0,
                  semantic={"codebook_size": s2_cfg.model.codebook_size, "token_rate": s2_cfg.token_rate},
                  device=device)
    return TTSEngine(s1, s2, random_hubert(device) if with_hubert else None, bert)


def bench_e2e(engine: TTSEngine, seconds: float, n_phones: int, prompt_phones: int, n_prompt: int,
              ref_seconds: float, repeats: int, s2_precision: str = "fp32") -> dict:
    s2, device = engine.s2, engine.s2.device
    g = torch.Generator().manual_seed(0)
    n_tokens = round(seconds * s2.token_rate)
    prompt_tokens_ = torch.randint(0, s2.codebook_size, (n_prompt,), generator=g)
    if engine.bert is not None:  # real text: its BERT features are part of the work
        (piece,) = split_text(BERT_TEXT, "zh", max_chars=len(BERT_TEXT))
        head = phonemize(BERT_PROMPT_TEXT, "zh", "prompt text")
        prompt = Prompt(text=head.text, phone_ids=head.ids, tokens=prompt_tokens_,
                        bert=engine.bert_features([head])[0])
    else:
        piece = TextPiece(text="(random phonemes)", phones=[],
                          ids=torch.randint(1, len(SYMBOLS), (n_phones,), generator=g).tolist())
        prompt = Prompt(text="(random prompt)", phone_ids=torch.randint(1, len(SYMBOLS), (prompt_phones,),
                                                                        generator=g).tolist(), tokens=prompt_tokens_)
    # cap = max(min_new_tokens + 1, ...) = n_tokens: EOS is blocked until the last token
    opts = GenerationOptions(sampling=PRESETS["gshead"], seed=0, min_new_tokens=n_tokens - 1,
                             max_tokens_per_phoneme=1e-3)
    wav = synthetic_wav(ref_seconds, s2.sample_rate, seed=3).numpy()
    ref = ReferenceAudio(path=Path("synthetic"), wav=wav, sample_rate=s2.sample_rate, start=0, end=len(wav),
                         total_seconds=ref_seconds, style_only=False)
    spec = reference_spectrogram(wav, s2)
    dec = DecodeOptions(seed=0, precision=s2_precision)

    def s1_run():
        return engine.generate([piece], prompt, opts)

    def full() -> None:
        decode_tokens_file(s2, engine.generate([piece], prompt, opts), spec, dec)

    def reference() -> None:
        prompt_tokens(ref, engine.ssl, s2)
        reference_spectrogram(ref.wav, s2)

    tf = s1_run()  # warm-up
    decode_tokens_file(s2, tf, spec, dec)
    s1_s = min(timed(s1_run, device) for _ in range(repeats))
    s2_s = min(timed(lambda: decode_tokens_file(s2, tf, spec, dec), device) for _ in range(repeats))
    total_s = min(timed(full, device) for _ in range(repeats))
    made = len(tf.tokens[0])
    audio_s = made / s2.token_rate
    out = {"phonemes": len(piece.ids), "prompt_phones": len(prompt.phone_ids), "prompt_tokens": n_prompt,
           "new_tokens": made,
           "stop_reason": tf.meta["stop_reasons"][0], "audio_s": audio_s, "s1_s": s1_s, "s1_tok_s": made / s1_s,
           "s2_s": s2_s, "s2_rtf": s2_s / audio_s, "total_s": total_s, "rtf": total_s / audio_s}
    if engine.bert is not None:
        out.update({"text": piece.text, "bert_s": min(timed(lambda: engine.bert_features([piece]), device)
                                                      for _ in range(repeats))})
    if engine.ssl is not None:
        reference()
        ref_s = min(timed(reference, device) for _ in range(repeats))
        out.update({"ref_seconds": ref_seconds, "reference_s": ref_s,
                    "rtf_with_reference": (total_s + ref_s) / audio_s})
    return out


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logging.getLogger("infer").setLevel(logging.ERROR)  # "reached its cap" is the point here, not a warning
    device = torch.device(args.device)
    out: dict = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "s1_config": args.s1_config, "s2_config": args.s2_config, "dtype": "fp32",
                 "s1_weights": args.weights, "s2_precision": args.s2_precision,
                 "s2_bf16": uses_bf16(args.s2_precision, device), "machine": machine_facts(device),
                 "reference": "the matmul peak of this run; GPT-SoVITS decode on the same work: python -m "
                              "bench.gsv1_compare --parts speed-s1,speed-s2"}
    peak = matmul_peak_gflops(device)
    decode, _ = bench_decode(Path(args.s2_config), device, args.seconds, 3.0, args.n_phones, args.repeats,
                             dtype=generator_dtype(args.s2_precision, device))
    s1_config = args.s1_config or str(ROOT / "configs" / ("gsv1" if args.bert else "") / "s1.json")
    out["s1_config"] = s1_config
    with tempfile.TemporaryDirectory() as work:
        bert = random_bert_large(device, [BERT_TEXT, BERT_PROMPT_TEXT], Path(work)) if args.bert else None
    engine = build_engine(Path(s1_config), Path(args.s2_config), device, not args.no_reference, bert)
    out["s1_weights_info"] = vars(use_weight_format(engine.s1.model, args.weights))
    e2e = bench_e2e(engine, args.seconds, args.n_phones, args.prompt_phones, args.prompt_tokens, args.ref_seconds,
                    args.repeats, args.s2_precision)
    peak = max(peak, matmul_peak_gflops(device))
    decode["decode_gflop_s"] = decode["decode_gflop"] / decode["wall_s"]
    decode["decode_fraction_of_peak"] = decode["decode_gflop_s"] / peak
    decode["generator_fraction_of_peak"] = decode["generator_gflop_s"] / peak
    out.update({"matmul_peak_gflop_s": peak, "s2_decode": decode, "e2e": e2e, "load_avg_after": load_now()})
    print(json.dumps(out, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s1-config", default=None,
                   help="S1 config (default: configs/s1.json, with --bert configs/gsv1/s1.json)")
    p.add_argument("--bert", action="store_true",
                   help="S1 with BERT features of real text from a random BERT-large (GPT-SoVITS v1 shapes)")
    p.add_argument("--s2-config", default=str(ROOT / "configs" / "s2.json"), help="S2 config (default: full size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio to make (default: 10 = 250 tokens)")
    p.add_argument("--n-phones", type=int, default=100, help="phonemes of the text (default: 100)")
    p.add_argument("--prompt-phones", type=int, default=30, help="phonemes of the prompt transcript (default: 30)")
    p.add_argument("--prompt-tokens", type=int, default=75, help="prompt tokens (default: 75 = 3 s)")
    p.add_argument("--ref-seconds", type=float, default=3.0, help="reference length for reference_s (default: 3)")
    p.add_argument("--no-reference", action="store_true", help="skip the HuBERT reference timing")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each part, the best is kept (default: 3)")
    p.add_argument("--weights", default="fp32", choices=WEIGHT_FORMATS,
                   help="S1 decoding weights (s1.weights; as tts.py --weights, default: fp32)")
    p.add_argument("--s2-precision", default="fp32", choices=PRECISIONS,
                   help="S2 decoding precision (as tts.py --s2-precision: fp32, bf16, auto; default: fp32)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
