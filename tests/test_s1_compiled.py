"""torch.compile of the S1 decode step (s1/compiled.py): compiled == eager, in every weight format.

The graph is compiled with the ``aot_eager`` backend (dynamo capture + AOT functionalization of the
KV-cache writes, no code generation), which keeps this test fast; the inductor backend is timed and
checked by ``bench/s1_decode.py --compile``."""

from __future__ import annotations

import pytest
import torch

from s1.compiled import compile_decode_step, uncompile_decode_step
from s1.generate import generate
from s1.weights import use_weight_format
from tests.test_s1_generate import SAMPLED, rows, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.mark.parametrize("fmt", ["int8", "fp16"])
def test_compiled_decode_step_equals_eager(fmt: str) -> None:
    torch._dynamo.reset()
    model = tiny_model(4)
    phones, prompts = rows(3)  # rows of different lengths: left padding, masks, rows dropped mid-way
    use_weight_format(model, fmt)  # the packed linears are traced too
    kw = dict(max_new_tokens=[14, 9, 20], min_new_tokens=3, seed=5)
    eager = generate(model, phones, prompts, SAMPLED, **kw)
    compile_decode_step(model, backend="aot_eager")
    assert "decode_one_token" in vars(model)
    compiled = generate(model, phones, prompts, SAMPLED, **kw)
    assert [t.tolist() for t in compiled] == [t.tolist() for t in eager]
    uncompile_decode_step(model)
    assert "decode_one_token" not in vars(model)
