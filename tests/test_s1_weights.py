"""S1 weight formats (s1/weights.py): each format agrees with fp32, packs are refreshed, bad formats fail."""

from __future__ import annotations

import pytest
import torch

from s1.generate import generate
from s1.model import Text2Semantic
from s1.sampling import PRESETS
from s1.weights import (
    WEIGHT_FORMATS,
    PackedLinears,
    compare_with_fp32,
    fp32_reference,
    pack_fp16,
    pack_fp32,
    pack_int8,
    quantize_int8,
    refresh,
    teacher_forced_logits,
    use_weight_format,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

CODEBOOK = 64


def tiny_model(seed: int = 0) -> Text2Semantic:
    torch.manual_seed(seed)
    model = Text2Semantic(codebook_size=CODEBOOK, phoneme_vocab_size=40, dim=64, n_layer=2, n_head=4, ffn_dim=128)
    with torch.no_grad():  # sharper logits than the default init, as in a trained model
        model.head.weight.mul_(8.0)
    return model.eval()


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 40, (12,), generator=g), torch.randint(0, CODEBOOK, (5,), generator=g)


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS)
def test_format_agrees_with_fp32(fmt: str) -> None:
    model = tiny_model()
    phones, prompt = inputs()
    agree = compare_with_fp32(model, phones, prompt, steps=60, fmt=fmt)
    limit = {"fp32": 1e-4, "bf16": 0.05, "fp16": 0.01, "int8": 0.1}[fmt] * agree.logits_max_abs
    assert agree.logits_max_abs_diff <= limit, agree
    assert agree.argmax_agreement >= (1.0 if fmt == "fp32" else 0.95), agree
    if fmt == "fp32":
        assert agree.free_running_identical == 60
    else:
        assert agree.logits_max_abs_diff > 0  # really another format, not fp32 again
    assert model.transformer.decode_linear.info.weight_format == fmt


def test_comparison_against_a_stored_fp32_reference_is_the_full_comparison() -> None:
    """One fp32 run serves several formats: the same ``Agreement`` as running fp32 again; a reference of
    another length is refused."""
    model = tiny_model(2)
    phones, prompt = inputs(2)
    ref = fp32_reference(model, phones, prompt, steps=25)
    assert ref.tokens.shape == (25,) and ref.logits.shape == (25, model.vocab_size)
    for fmt in ("int8", "fp16"):
        assert compare_with_fp32(model, phones, prompt, 25, fmt, reference=ref) == compare_with_fp32(
            model, phones, prompt, 25, fmt)
    with pytest.raises(ValueError, match="holds 25 tokens, not 30"):
        compare_with_fp32(model, phones, prompt, 30, "int8", reference=ref)


def test_teacher_forced_logits_are_the_generation_logits() -> None:
    model = tiny_model(1)
    phones, prompt = inputs(1)
    greedy = PRESETS["greedy"].__class__(top_k=1, greedy=True, repetition_penalty=1.0)
    tokens = generate(model, [phones], [prompt], greedy, max_new_tokens=20, min_new_tokens=21)[0]
    logits = teacher_forced_logits(model, phones, prompt, tokens[:-1])[:, : model.eos_id]  # EOS was blocked
    assert logits.argmax(-1).tolist() == tokens.tolist()
    assert model.transformer.caches is None


def test_int8_quantization_round_trip() -> None:
    w = torch.randn(48, 32)
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    assert (q.float() * scale[:, None] - w).abs().max() <= scale.max() / 2 + 1e-6
    x, b = torch.randn(3, 32), torch.randn(48)
    y = pack_int8(w, b)(x, True)
    ref = torch.relu(x @ w.T + b)
    assert (y - ref).abs().max() < 0.05 * ref.abs().max()


def test_fp16_is_f_linear_with_fp16_rounded_weights() -> None:
    """fbgemm's fp16 path equals fp32 F.linear on the fp16-rounded weights (fp32 input, accumulation, output),
    with and without bias and ReLU, for one row and a prefill's rows; bigger errors than that would show."""
    w, b = torch.randn(48, 32), torch.randn(48)
    for x in (torch.randn(1, 1, 32), torch.randn(2, 7, 32)):
        for bias in (b, None):
            for relu in (False, True):
                ref = torch.nn.functional.linear(x, w.half().float(), bias)
                ref = torch.relu(ref) if relu else ref
                got = pack_fp16(w, bias)(x, relu)
                assert got.dtype == torch.float32
                torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    exact = torch.nn.functional.linear(torch.ones(1, 32), w, b)
    assert (pack_fp16(w, b)(torch.ones(1, 32), False) - exact).abs().max() > 0  # really rounded


def test_fp16_refuses_weights_beyond_its_range() -> None:
    w = torch.randn(8, 16)
    w[3, 5] = 7e4
    with pytest.raises(ValueError, match="beyond fp16's range"):
        pack_fp16(w, None)
    w[3, 5] = float("nan")
    with pytest.raises(ValueError, match="beyond fp16's range"):
        pack_fp16(w, None)


def test_int8_refuses_widths_its_kernel_cannot_read() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        pack_int8(torch.randn(8, 30), None)


def test_unknown_format_and_kernel() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="unknown weight format 'fp8'.*fp32, bf16, fp16, int8"):
        use_weight_format(model, "fp8")
    with pytest.raises(ValueError, match="unknown kernel"):
        use_weight_format(model, "fp32", kernel="mkl")


def test_packed_weights_follow_parameter_changes() -> None:
    model = tiny_model(2)
    phones, prompt = inputs(2)
    use_weight_format(model, "bf16")
    first = refresh(model)
    assert isinstance(first, PackedLinears) and refresh(model) is first  # unchanged weights: no repacking
    with torch.no_grad():
        model.transformer.layers[0].linear1.weight.mul_(-1.0)
    second = refresh(model)
    assert second is not first and second.info.weight_format == "bf16"
    fresh = tiny_model(2)
    with torch.no_grad():
        fresh.transformer.layers[0].linear1.weight.mul_(-1.0)
    use_weight_format(fresh, "bf16")
    a = teacher_forced_logits(model, phones, prompt, torch.arange(8))
    b = teacher_forced_logits(fresh, phones, prompt, torch.arange(8))
    torch.testing.assert_close(a, b)


def test_grad_mode_never_uses_packed_weights() -> None:
    model = tiny_model(3)
    use_weight_format(model, "int8")
    assert model.transformer.cached_linear() is not model.transformer.decode_linear  # grad enabled here
    with torch.no_grad():
        assert model.transformer.cached_linear() is model.transformer.decode_linear


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not built in")
@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
def test_kernels_give_the_same_logits(fmt: str) -> None:
    if fmt == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("oneDNN has no bf16 path on this CPU (see test_bf16_without_onednn_support_runs_plain)")
    model = tiny_model(4)
    phones, prompt = inputs(4)
    kernels = ("plain", "onednn", "transposed") if fmt == "fp32" else ("plain", "onednn")
    logits = {}
    for kernel in kernels:
        info = use_weight_format(model, fmt, kernel)
        assert info.kernel == kernel
        logits[kernel] = teacher_forced_logits(model, phones, prompt, torch.arange(10))
    tol = 1e-5 if fmt == "fp32" else 0.02 * float(logits["plain"].abs().max())
    for kernel in kernels[1:]:
        torch.testing.assert_close(logits[kernel], logits["plain"], atol=tol, rtol=0)
    auto = use_weight_format(model, fmt)
    timed = set(kernels) | ({"fp32"} if fmt != "fp32" else set())  # bf16 also times fp32's pass
    assert auto.kernel in kernels and set(auto.timings_ms) == timed


def test_transposed_fp32_kernel_equals_f_linear() -> None:
    """The "transposed" fp32 kernel (addmm on a [K, N] copy) computes F.linear (+ ReLU), with and without bias,
    for one row and for a prefill's rows, and greedy generation gives the same tokens as with F.linear."""
    w, b = torch.randn(48, 32), torch.randn(48)
    for x in (torch.randn(1, 1, 32), torch.randn(2, 7, 32)):
        for bias in (b, None):
            for relu in (False, True):
                ref = torch.nn.functional.linear(x, w, bias)
                ref = torch.relu(ref) if relu else ref
                torch.testing.assert_close(pack_fp32(w, bias, "transposed")(x, relu), ref, atol=1e-5, rtol=1e-5)
    model = tiny_model(7)
    phones, prompt = inputs(7)
    tokens = {}
    for kernel in ("plain", "transposed"):
        use_weight_format(model, "fp32", kernel)
        tokens[kernel] = generate(model, [phones], [prompt], PRESETS["greedy"], max_new_tokens=30)[0]
    assert torch.equal(tokens["plain"], tokens["transposed"])


def test_bf16_without_onednn_support_runs_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPUs where oneDNN has no bf16 path (its weight reorder raises there), bf16 asks for F.linear, even when
    oneDNN is requested, and still agrees with fp32."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    model = tiny_model(5)
    phones, prompt = inputs(5)
    for kernel in ("onednn", "auto"):
        info = use_weight_format(model, "bf16", kernel)
        assert info.kernel == "plain", info
    assert set(info.timings_ms) == {"plain", "fp32"}
    agree = compare_with_fp32(model, phones, prompt, steps=30, fmt="bf16", kernel="onednn")
    assert agree.argmax_agreement >= 0.95 and model.transformer.decode_linear.info.kernel == "plain"


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS)
def test_decode_threads_are_timed_and_restored(fmt: str) -> None:
    """threads="auto" times the decode step at torch's count and at one thread and picks one of them; generation
    runs its steps with it, restores torch's count, and gives the same tokens as with either count fixed."""
    model = tiny_model(6)
    phones, prompt = inputs(6)
    greedy = PRESETS["greedy"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        info = use_weight_format(model, fmt)
        assert info.threads in (1, 2) and set(info.step_ms_by_threads) == {1, 2}, info
        assert torch.get_num_threads() == 2 and model.transformer.caches is None and not model.training
        runs = []
        for threads in ("auto", 1, 2):
            use_weight_format(model, fmt, threads=threads)
            runs.append(generate(model, [phones], [prompt], greedy, max_new_tokens=12)[0])
            assert torch.get_num_threads() == 2
        fixed = model.transformer.decode_linear.info
        assert fixed.threads == 2 and fixed.step_ms_by_threads == {}
        for other in runs[1:]:
            assert torch.equal(other, runs[0])
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be"):
        use_weight_format(model, fmt, threads=0)
