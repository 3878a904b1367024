"""S2 decoding precision: the generator under bf16 autocast stays close to fp32; option checks."""

from __future__ import annotations

import math

import pytest
import torch

from bench.s2 import BF16_SNR_TOLERANCE_DB, snr_db
from common.cpu import cpu_bf16_native
from infer.decoder import DecodeOptions, generator_dtype, uses_bf16
from infer.errors import InferenceError
from tests.test_s2_model import HOP, _batch, _tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def test_bf16_generator_decode_is_close_to_fp32() -> None:
    model = _tiny().eval()
    _, spec, y_lengths, text, text_lengths = _batch()
    codes, code_lengths = torch.randint(0, 16, (3, 9)), torch.tensor([9, 6, 4])
    kw = dict(refer_lengths=y_lengths, code_lengths=code_lengths, noise_scale=0.0)
    with torch.inference_mode():
        ref = model.decode(codes, text, text_lengths, spec, **kw)
        low = model.decode(codes, text, text_lengths, spec, dec_dtype=torch.bfloat16, **kw)
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert low[1, :, 2 * 6 * HOP:].abs().max().item() == 0.0  # padding still silent
    snr = snr_db(ref, low)
    assert BF16_SNR_TOLERANCE_DB <= snr < math.inf  # really computed in bf16, and close to fp32


def test_precision_option() -> None:
    cpu = torch.device("cpu")
    assert generator_dtype("fp32", cpu) is None
    assert generator_dtype("bf16", cpu) is torch.bfloat16
    assert uses_bf16("auto", cpu) == cpu_bf16_native()
    assert not uses_bf16("auto", torch.device("mps"))
    assert snr_db(torch.ones(4), torch.ones(4)) == math.inf
    with pytest.raises(InferenceError, match="--s2-precision must be one of fp32, bf16, auto"):
        DecodeOptions(precision="fp16")
