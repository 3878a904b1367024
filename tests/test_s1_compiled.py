"""torch.compile of the S1 decode step (s1/compiled.py): compiled == eager, in every weight format.

The graphs are compiled with the ``aot_eager`` backend (dynamo capture + AOT functionalization of the
KV-cache writes, no code generation), which keeps these tests fast and still takes the compiled-only
paths (``torch.compiler.is_compiling()`` is true while tracing): the linears as products and sums
(``reduction_linear``) and the one-row attention as reductions (``cached_attention``). The inductor
backend is timed and checked by ``bench/s1_decode.py --compile`` and ``bench/gsv1_compare.py --compile``."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import s1.generate
from modules.transformer import cached_attention, plain_linear, reduction_linear
from s1.compiled import check_cpp_compiler, compile_decode_step, trusted_repeat, uncompile_decode_step
from s1.generate import generate
from s1.weights import teacher_forced_logits, thread_count, use_weight_format
from tests.test_s1_generate import SAMPLED, rows, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_int8_compiled_decode_step_gives_the_eager_tokens() -> None:
    """int8 keeps its kernel in the graph: the same ops, so the same sampled tokens."""
    model = tiny_model(4)
    phones, prompts = rows(3)  # rows of different lengths: left padding, masks, rows dropped mid-way
    use_weight_format(model, "int8")
    kw = dict(max_new_tokens=[14, 9, 20], min_new_tokens=3, seed=5)
    eager = generate(model, phones, prompts, SAMPLED, **kw)
    compile_decode_step(model, backend="aot_eager")
    assert "decode_one_token" in vars(model)
    compiled = generate(model, phones, prompts, SAMPLED, **kw)
    assert [t.tolist() for t in compiled] == [t.tolist() for t in eager]
    uncompile_decode_step(model)
    assert "decode_one_token" not in vars(model)


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "bf16"])
def test_compiled_decode_step_logits_equal_eager(fmt: str) -> None:
    """fp32/fp16/bf16 are packed as ``reduction_linear`` for the graph ("compiled" kernel): its logits
    (teacher-forced over 12 steps) equal that packing's run eagerly (``F.linear`` on the widened weights)
    up to summation order, sampling gives the same tokens, and for fp32 and fp16 the eager kernels of the
    format (F.linear/oneDNN, fbgemm) give those logits too with an fp32 KV cache (bf16's eager kernels also
    round the input; the compiled packing's bf16 cache is checked by ``test_compiled_16_bit_formats_...``)."""
    model = tiny_model(2).eval()  # teacher_forced_logits runs the model as it is (no dropout in eval)
    phones, prompts = rows(1)
    tokens = torch.randint(0, model.codebook_size, (12,), generator=torch.Generator().manual_seed(0))
    use_weight_format(model, fmt, threads=1)
    format_logits = teacher_forced_logits(model, phones[0], prompts[0], tokens)
    use_weight_format(model, fmt, "compiled", threads=1)
    eager_logits = teacher_forced_logits(model, phones[0], prompts[0], tokens)
    if fmt != "bf16":  # the linears alone: with the format's fp32 KV cache
        model.transformer.cache_dtype = None
        fp32_cache_logits = teacher_forced_logits(model, phones[0], prompts[0], tokens)
        torch.testing.assert_close(fp32_cache_logits, format_logits, rtol=1e-4, atol=1e-4)
        use_weight_format(model, fmt, "compiled", threads=1)
    kw = dict(max_new_tokens=[10, 7, 12], min_new_tokens=2, seed=3)
    eager = generate(model, phones, prompts, SAMPLED, **kw)

    compile_decode_step(model, backend="aot_eager")
    assert model.transformer.decode_linear.info.kernel == "compiled"
    assert model.decode_format[:2] == (fmt, "compiled")
    compiled_logits = teacher_forced_logits(model, phones[0], prompts[0], tokens)
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-4, atol=1e-4)
    compiled = generate(model, phones, prompts, SAMPLED, **kw)
    assert [t.tolist() for t in compiled] == [t.tolist() for t in eager]

    uncompile_decode_step(model)  # back to the packing before compile_decode_step
    assert "decode_one_token" not in vars(model)
    assert model.decode_format[:2] == (fmt, "compiled")


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "int8"])
def test_compiled_16_bit_formats_keep_a_bf16_kv_cache(fmt: str) -> None:
    """With the compiled kernel every format but fp32 stores the KV cache in bf16: its logits stay within
    bf16's rounding of the fp32-cache logits, and uncompiling brings the weights' dtype back."""
    model = tiny_model(2).eval()
    phones, prompts = rows(1)
    tokens = torch.randint(0, model.codebook_size, (12,), generator=torch.Generator().manual_seed(0))
    use_weight_format(model, fmt, threads=1)
    fp32_cache = teacher_forced_logits(model, phones[0], prompts[0], tokens)
    assert model.transformer.cache_dtype is None
    info = compile_decode_step(model, backend="aot_eager", threads=1)
    want = None if fmt == "fp32" else torch.bfloat16
    assert model.transformer.cache_dtype is want and info.cache_dtype == (None if want is None else "bf16")
    model.transformer.setup_cache(1, 4)
    assert model.transformer.caches[0].kv.dtype == (want or torch.float32)
    model.transformer.reset_cache()
    compiled = teacher_forced_logits(model, phones[0], prompts[0], tokens)
    tol = 1e-4 if fmt == "fp32" else 4e-3 * float(fp32_cache.abs().max())
    torch.testing.assert_close(compiled, fp32_cache, rtol=0, atol=tol)
    if fmt != "fp32":
        assert not torch.equal(compiled, fp32_cache)  # the cache was rounded
    uncompile_decode_step(model)
    assert model.transformer.cache_dtype is None


def test_generation_trusts_the_guards_only_of_repeated_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within one generation a compiled step skips dynamo's guards (all but those that tell graphs apart)
    exactly when the previous step had the same batch, mask kind and threads: not on the first step, not
    when rows finish; the tokens stay the eager ones. An eager step never skips them."""
    model = tiny_model(3)
    phones, prompts = rows(4)  # padded rows that finish at different steps
    kw = dict(max_new_tokens=[12, 5, 8], min_new_tokens=2, seed=2)
    use_weight_format(model, "fp32", threads=1)
    eager = generate(model, phones, prompts, SAMPLED, **kw)
    assert isinstance(trusted_repeat(model, True), contextlib.nullcontext)  # eager: nothing to skip
    seen: list[tuple[int, bool, bool]] = []

    @contextlib.contextmanager
    def recording(m: torch.nn.Module, same_as_last: bool) -> Iterator[None]:
        with trusted_repeat(m, same_as_last):
            skipping = torch._dynamo.eval_frame._is_skip_guard_eval_unsafe_stance()
            seen.append((model.transformer.caches[0].batch, same_as_last, skipping))
            yield

    monkeypatch.setattr(s1.generate, "trusted_repeat", recording)
    compile_decode_step(model, backend="aot_eager", threads=1)
    compiled = generate(model, phones, prompts, SAMPLED, **kw)
    assert [t.tolist() for t in compiled] == [t.tolist() for t in eager]
    batches = [b for b, _, _ in seen]
    assert batches[0] == 3 and batches[-1] == 1 and len(set(batches)) == 3  # rows finished mid-way
    want = [i > 0 and batches[i] == batches[i - 1] for i in range(len(seen))]
    assert [same for _, same, _ in seen] == want
    assert [skip for _, _, skip in seen] == want
    assert not torch._dynamo.eval_frame._is_skip_guard_eval_unsafe_stance()  # restored after the loop


def test_generation_does_not_import_dynamo_until_a_step_is_compiled() -> None:
    """s1.generate imports s1.compiled; dynamo (~1.7 s to import) comes only with ``compile_decode_step``."""
    code = "import sys, s1.generate, tts; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_uncompile_restores_the_eager_kernels() -> None:
    model = tiny_model(2)
    use_weight_format(model, "fp16", threads=1)
    compile_decode_step(model, backend="aot_eager")
    assert model.transformer.decode_linear.info.kernel == "compiled"
    uncompile_decode_step(model)
    assert model.transformer.decode_linear.info.kernel == "fbgemm"
    assert model.decode_format == ("fp16", "auto", 1)


def test_compiled_step_threads_timed_or_fixed() -> None:
    """threads="auto": the compiled step (compiled by its first timed call) is timed at torch's count and at
    one and decodes at the faster; an int fixes the count without timing. Tokens as eager either way."""
    model = tiny_model(2)
    phones, prompts = rows(2)
    kw = dict(max_new_tokens=[9, 6, 11], min_new_tokens=2, seed=4)
    use_weight_format(model, "fp32", threads=1)
    eager = generate(model, phones, prompts, SAMPLED, **kw)
    with thread_count(2):
        info = compile_decode_step(model, backend="aot_eager")
        assert set(info.step_ms_by_threads) == {2, 1} and all(ms > 0 for ms in info.step_ms_by_threads.values())
        assert info.threads in (1, 2) and model.transformer.decode_linear.info is info
        assert [t.tolist() for t in generate(model, phones, prompts, SAMPLED, **kw)] == [t.tolist() for t in eager]
        uncompile_decode_step(model)
        info = compile_decode_step(model, backend="aot_eager", threads=1)
        assert info.threads == 1 and info.step_ms_by_threads == {}
        assert compile_decode_step(model, backend="aot_eager") is None  # already compiled: nothing done


def test_many_compiled_models_all_get_their_graphs() -> None:
    """All models' steps share dynamo's cache of one function: past its default 8 entries dynamo would run
    the step eagerly without a word. Five models timed at two thread counts need ten graphs."""
    graphs = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    with thread_count(2):
        for _ in range(5):
            info = compile_decode_step(tiny_model(1), backend=counting_backend)
            assert set(info.step_ms_by_threads) == {2, 1}
    assert len(graphs) == 10


@pytest.mark.parametrize("wdtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("relu", [False, True])
def test_reduction_linear_equals_linear_compiled_and_eager(wdtype: torch.dtype, relu: bool) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 24, generator=g)
    w = torch.randn(40, 24, generator=g).to(wdtype)
    b = torch.randn(40, generator=g)
    want = plain_linear(x, w.float(), b, relu)  # the weights as stored, widened
    torch.testing.assert_close(reduction_linear(x, w, b, relu), want)
    compiled = torch.compile(reduction_linear, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, w, b, relu), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled(x, w, None, relu), plain_linear(x, w.float(), None, relu),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_one_row_attention_as_reductions_equals_sdpa(masked: bool) -> None:
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 4, 1, 8, generator=g)
    k, v = torch.randn(3, 4, 11, 8, generator=g), torch.randn(3, 4, 11, 8, generator=g)
    mask = None
    if masked:
        mask = torch.ones(3, 1, 1, 11, dtype=torch.bool)
        mask[0, ..., :4] = False  # a left-padded row
        mask[2, ..., 7:] = False
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    compiled = torch.compile(cached_attention, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v, mask), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached_attention(q, k, v, mask), want)  # eager: SDPA itself


def test_compile_without_a_cpp_compiler_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        check_cpp_compiler()
    model = tiny_model(0)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        compile_decode_step(model)  # inductor on the CPU
    assert "decode_one_token" not in vars(model)
