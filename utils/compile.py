"""`torch.compile` with an eager fallback (`training.compile`, `sample.compile`).

    model.forward = compiled_or_eager(model.forward, "the generator forward")

Compiling needs a backend (Inductor: a C++ compiler on CPU, Triton on CUDA). Where it is missing, or where
compiling fails, the first call says so in one warning and every call runs eagerly from then on: the run goes
on, only slower. Errors after a first successful compiled call are not caught (they are the model's errors).
Compiled code computes the same operations; results may differ in the last float bits (fused kernels).
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

logger = logging.getLogger("maskbit.compile")  # the run log (training.run_setup) or stderr


class CompiledOrEager:
    """Callable running `torch.compile(fn)`; on a failure of its first call, warns once and runs `fn` eagerly."""

    def __init__(self, fn: Callable, what: str, **compile_kwargs):
        self.fn, self.what = fn, what
        self.compiled: Callable | None = None
        self.checked = False  # the first compiled call has succeeded
        try:
            self.compiled = torch.compile(fn, **compile_kwargs)
        except Exception as err:  # e.g. torch.compile unsupported on this Python / platform
            self._fall_back(err)

    def _fall_back(self, err: BaseException) -> None:
        self.compiled = None
        message = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"
        logger.warning(f"torch.compile of {self.what} is not available here ({message}); running it eagerly "
                       f"(same results, slower). Install the backend (a C++ compiler for CPU, Triton for CUDA) or set "
                       f"the compile flag to false to silence this.")

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        if self.checked:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # backend missing or compilation failed: the eager call below re-raises real errors
            self._fall_back(err)
            return self.fn(*args, **kwargs)
        self.checked = True
        return out


def compile_forward(module: torch.nn.Module, what: str) -> torch.nn.Module:
    """Replace `module.forward` by a `CompiledOrEager` of it (in place; parameter names and state dict unchanged,
    unlike `torch.compile(module)` which prefixes `_orig_mod.`). Returns `module`."""
    if not isinstance(module.forward, CompiledOrEager):
        module.forward = CompiledOrEager(module.forward, what)
    return module
