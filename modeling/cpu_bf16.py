"""CPU kernels whose bf16 backward is pathologically slow, and the one way the house works around them.

In torch 2.14 on a CPU, two kernels the models use take several times longer forward + backward in bf16 than in
float32 at the quickstart's shapes (one thread): the fused (flash) attention kernel (22 ms against 3.2 ms;
`scripts/benchmark_attention.py`) and the depthwise convolution of the VQGAN+ discriminator's blur (5.5-6.1 ms
against 0.6-0.9 ms). Where such a kernel would run in bf16 on a CPU and a backward will follow, it runs in float32
(autocast off, inputs upcast) and its output is cast to bf16, the dtype autocast would have given it. Float32 runs,
GPUs and inference take PyTorch's kernels as they are.
"""
from __future__ import annotations

from typing import Callable

import torch


def kernel_dtype(device_type: str, dtype: torch.dtype, needs_grad: bool) -> torch.dtype:
    """The dtype such a kernel runs in for inputs of `dtype` on `device_type`: float32 for bf16 on a CPU when
    gradients are needed, else `dtype` itself."""
    return torch.float32 if device_type == "cpu" and dtype == torch.bfloat16 and needs_grad else dtype


def runs_in_float32_on_cpu(x: torch.Tensor) -> bool:
    """True where a kernel fed `x` would run in bf16 on a CPU (x is bf16, or bf16 autocast is on) with gradients
    needed (enabled, and `x` requires them): `in_float32` takes over there."""
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    dtype = torch.bfloat16 if autocast_bf16 and x.device.type == "cpu" else x.dtype
    return kernel_dtype(x.device.type, dtype, torch.is_grad_enabled() and x.requires_grad) != dtype


def in_float32(kernel: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """`kernel(*inputs)` computed in float32 with CPU autocast off (it would cast the inputs straight back to
    bf16), returned in bf16."""
    with torch.autocast("cpu", enabled=False):
        return kernel(*(x.float() for x in inputs)).to(torch.bfloat16)
