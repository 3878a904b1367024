"""Linear layers of CPU training through oneDNN where MKL's fp32 GEMM is not at its best.

PyTorch's fp32 ``F.linear`` / ``mm`` on the CPU call MKL, whose AVX-512 GEMM kernels are
dispatched on Intel CPUs only: on an AMD EPYC (Zen 4) a ``[920, 512] x [512, 2048]`` product
reaches about 50 GFLOP/s per core through MKL and about 68 through oneDNN's matmul (measured
with the S1 training shapes, one thread; the weight-gradient products are at parity). So on
CPUs that are not Intel the forward product and the input gradient of a training linear run
through oneDNN (``torch.ops.mkldnn._linear_pointwise``, ReLU fused into the forward where the
layer has one), the weight gradient through ``mm``; on Intel CPUs, or without oneDNN, every
product stays ``F.linear``. The rule is the CPU's vendor, not a timing, so that a resumed run
repeats an uninterrupted one exactly (same kernels, same rounding). Same results as
``F.linear`` up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from common.cpu import cpu_vendor

_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_training_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether ``onednn_train_linear`` is used for this input: fp32 CPU tensors, no autocast, oneDNN built in,
    a CPU that is not Intel's (whose MKL kernels are as fast)."""
    return (_HAS_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and cpu_vendor() != "GenuineIntel")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b (then ReLU when asked): forward and input gradient through oneDNN, weight gradient ``mm``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:  # noqa: ANN001
        y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:  # noqa: ANN001
        x, weight, y = ctx.saved_tensors
        if y is not None:
            grad = torch.ops.aten.threshold_backward(grad, y, 0)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.mkldnn._linear_pointwise(grad, weight.t().contiguous(), None, "none", [], "")
        if ctx.needs_input_grad[1]:
            grad_w = grad.t().mm(x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b, None


def onednn_train_linear(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
    """``F.linear(x, weight, bias)`` (+ ReLU) with autograd, x ``[..., in]`` -> ``[..., out]`` (see the module
    docstring; only for inputs where ``onednn_training_applies``)."""
    lead = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]).contiguous(), weight, bias, relu)
    return y.view(*lead, weight.shape[0])
