"""Streaming synthesis: windowed S2 decoding vs one-shot, the engine's chunk generator, tts.py --stream.

Tolerances: with a prior that has no self-attention (the only part of S2 that sees the whole
piece) the joined stream is the one-shot decode up to float rounding and the cross-fades of
renderings that agree (>= 80 dB SNR with the default 6 tokens of lookahead); with the tiny
S2's attention and weights that carry the signal >= 20 dB; through the engine and tts.py, on
the test checkpoints (random weights, default init) >= 30 dB. bench/stream.py measures the
full-size model.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import tts
from common.audio import save_wav
from common.config import S2Config, load_config
from infer.decoder import DecodeOptions, decode_pieces, decode_tokens_file
from infer.engine import GenerationOptions, Prompt, TTSEngine
from infer.loading import LoadedS2
from infer.reference import load_reference, reference_spectrogram
from infer.stream import PieceStreamer, StreamOptions
from infer.text_input import split_text
from infer.wav_stream import StreamWriter
from s1.sampling import PRESETS
from s2.model import build_generator
from tests.test_infer import SR, TinyRuns, build_tiny_runs
from tests.test_tts import _args

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]
SPT = 1280


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    return build_tiny_runs(tmp_path_factory.mktemp("stream_runs"))


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - x).astype(np.float64) ** 2),
                                                                          1e-30)))


def _tiny_s2(attention: bool) -> LoadedS2:
    """The tiny S2 with random weights that carry the signal (fan-in scaled convs in flow and generator);
    without ``attention`` the prior encoders' self-attention outputs are zeroed (a local prior)."""
    cfg = load_config(REPO / "configs/tiny/s2.json", S2Config)
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    g.fold_weight_norm()
    with torch.no_grad():
        for name, m in g.named_modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)) and name.startswith(("dec", "flow")):
                fan_in = m.weight[0].numel() if isinstance(m, torch.nn.Conv1d) else m.weight.size(0) * m.weight.size(
                    2) // m.stride[0]
                m.weight.normal_(0.0, fan_in ** -0.5)
            if not attention and name.startswith("enc_p") and name.endswith("conv_o") and "attn_layers" in name:
                m.weight.zero_()
    return LoadedS2(generator=g, cfg=cfg, path=Path("random"), step=0, device=torch.device("cpu"))


def _stream_piece(s2: LoadedS2, tokens: torch.Tensor, phones: torch.Tensor, spec: torch.Tensor, seed: int,
                  opts: StreamOptions, dec_dtype: torch.dtype | None = None) -> list[np.ndarray]:
    """Chunks of one piece when its tokens arrive one by one."""
    st = PieceStreamer(s2, phones, s2.generator.style(spec), seed, 0.5, opts, dec_dtype)
    chunks = [st.push(tokens[:n]) for n in range(1, len(tokens) + 1)]
    chunks.append(st.push(tokens, final=True))
    return [c for c in chunks if len(c)]


@pytest.mark.parametrize("attention,opts,min_db", [
    (False, StreamOptions(), 80.0),
    (False, StreamOptions(first_chunk_tokens=1, chunk_tokens=7), 80.0),
    (False, StreamOptions(crossfade_samples=0, lookahead_tokens=4), 60.0),  # 4 tokens: the flow's edge shows
    (True, StreamOptions(), 20.0),  # attention over the tokens known so far vs over all of them
])
def test_piece_stream_matches_one_shot(attention: bool, opts: StreamOptions, min_db: float) -> None:
    s2 = _tiny_s2(attention)
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, s2.codebook_size, (45,), generator=g)
    phones = torch.randint(1, 300, (20,), generator=g)
    spec = torch.randn(1, s2.cfg.data.spec_channels, 50, generator=g).abs()
    one = decode_pieces(s2, [tokens], [phones], spec, DecodeOptions(seed=3))[0]
    chunks = _stream_piece(s2, tokens, phones, spec, 3, opts)
    assert len(chunks[0]) == opts.first_chunk_tokens * SPT
    joined = np.concatenate(chunks)
    assert joined.shape == one.shape
    assert snr_db(one, joined) >= min_db
    other = torch.randint(0, s2.codebook_size, (45,), generator=g)
    other_wav = decode_pieces(s2, [other], [phones], spec, DecodeOptions(seed=3))[0]
    assert snr_db(one, other_wav) < 15.0  # the output does depend on the tokens: the SNR above means something


def test_streaming_follows_the_s2_precision() -> None:
    """--s2-precision bf16 reaches the streamed windows too: they match the one-shot bf16 decode, not fp32's."""
    s2 = _tiny_s2(False)
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, s2.codebook_size, (30,), generator=g)
    phones = torch.randint(1, 300, (12,), generator=g)
    spec = torch.randn(1, s2.cfg.data.spec_channels, 40, generator=g).abs()
    fp32, bf16 = (decode_pieces(s2, [tokens], [phones], spec, DecodeOptions(seed=3, precision=p))[0]
                  for p in ("fp32", "bf16"))
    streamed = np.concatenate(_stream_piece(s2, tokens, phones, spec, 3, StreamOptions(), torch.bfloat16))
    assert snr_db(bf16, streamed) >= 40.0  # bf16 windows agree with each other like fp32's do
    assert snr_db(bf16, streamed) > snr_db(fp32, streamed) + 10.0  # and it is bf16 that ran, not fp32


def test_stream_options_are_checked() -> None:
    from infer.errors import InferenceError

    with pytest.raises(InferenceError, match="chunks must be >= 1"):
        StreamOptions(first_chunk_tokens=0)
    with pytest.raises(InferenceError, match="cross-fade"):
        StreamOptions(crossfade_samples=6000).check(SPT)


def test_engine_streams_before_s1_finishes(runs: TinyRuns) -> None:
    engine = TTSEngine.load(runs.s1, runs.s2, "cpu")
    pieces = split_text("今天天气很好。我们走吧。", "zh")
    prompt = Prompt(text=None, phone_ids=[], tokens=torch.zeros(0, dtype=torch.long))
    gen_opts = GenerationOptions(sampling=PRESETS["gshead"], seed=2, min_new_tokens=20, max_tokens_per_phoneme=2.5,
                                 loop_detection=False)
    spec = reference_spectrogram(load_reference(runs.ref, SR).wav, engine.s2)
    dec_opts = DecodeOptions(seed=2)
    events: list[str] = []
    inner = engine._s1_steps

    def instrumented(*args, **kwargs):
        def steps():
            result = yield from inner(*args, **kwargs)
            events.append("s1 done")
            return result
        return steps()

    engine._s1_steps = instrumented
    chunks = []
    for chunk in engine.stream(pieces, prompt, gen_opts, spec, dec_opts, StreamOptions(first_chunk_tokens=5)):
        events.append("chunk")
        chunks.append(chunk)
    assert events.index("chunk") < events.index("s1 done")  # audio came before S1 finished the first piece
    assert len(chunks[0]) == 5 * SPT
    engine._s1_steps = inner
    one = decode_tokens_file(engine.s2, engine.generate(pieces, prompt, gen_opts), spec, dec_opts)
    joined = np.concatenate(chunks)
    assert joined.shape == one.shape  # same tokens per piece, same pause
    assert snr_db(one, joined) >= 30.0


def test_stream_writer_grows_and_ends_valid(tmp_path: Path) -> None:
    a = (0.5 * np.sin(np.arange(3000) / 7)).astype(np.float32)
    b = np.linspace(-1.2, 1.2, 1001).astype(np.float32)
    path = tmp_path / "s.wav"
    w = StreamWriter(path, SR)
    w.write(a)
    data = path.read_bytes()  # what a player following the file sees now
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF and len(data) == 44 + 2 * 3000
    w.write(b)
    w.close()
    save_wav(tmp_path / "ref.wav", np.concatenate([a, b]), SR)
    assert path.read_bytes() == (tmp_path / "ref.wav").read_bytes()
    raw = tmp_path / "s.pcm"
    w = StreamWriter(raw, SR, raw=True, out_rate=16000)
    w.write(a)
    w.write(b)
    w.close()
    assert abs(raw.stat().st_size // 2 - 4001 // 2) <= 2


def test_tts_stream_end_to_end(runs: TinyRuns, tmp_path: Path, capsysbinary: pytest.CaptureFixture) -> None:
    common = dict(text="今天天气很好。我们走吧。", seed="1")
    assert tts.cli(_args(runs, tmp_path / "one.wav", **common)) == 0
    assert tts.cli(_args(runs, tmp_path / "stream.wav", **common) + ["--stream", "--first-chunk", "4"]) == 0
    one, sr1 = sf.read(tmp_path / "one.wav", dtype="float32")
    streamed, sr2 = sf.read(tmp_path / "stream.wav", dtype="float32")
    assert sr1 == sr2 == SR and streamed.shape == one.shape
    assert snr_db(one, streamed) >= 30.0
    capsysbinary.readouterr()
    assert tts.cli(_args(runs, Path("-"), **common) + ["--stream"]) == 0  # raw PCM on stdout, messages on stderr
    pcm = np.frombuffer(capsysbinary.readouterr().out, dtype="<i2")
    assert len(pcm) == len(one)
    assert snr_db(one, pcm / 32767.0) >= 30.0
    assert tts.cli(_args(runs, tmp_path / "x.wav", **common) + ["--raw"]) == 2  # --raw needs --stream
