"""AdamW as the reference builds it (docs/design/reference-facts.md §5.1): one parameter group, weight decay on every
parameter."""
from __future__ import annotations

from typing import Iterable

import torch
from torch.optim import AdamW


def build_adamw(parameters: Iterable[torch.nn.Parameter], lr: float, optimizer_config) -> AdamW:
    """AdamW with betas/eps/weight decay from `config.optimizer.params`.

    Kernel (`optimizer.params.fused`): by default (null) the fused one on CUDA (one launch for all parameters; the
    same update up to float rounding) and elsewhere the multi-tensor (foreach) one: the same elementwise operations
    as the single-tensor default, batched over parameters, so results are bitwise those of the reference
    (tests/test_fast_paths.py checks it). `true` takes the fused kernel on a CPU too (same update up to float
    rounding; about 1 ms less of the quickstart generator's 24.5 ms single-process step, yet no faster in its
    two-process training: docs/quickstart_experiments.md); `false` never fuses.
    """
    p = optimizer_config.params if hasattr(optimizer_config, "params") else optimizer_config
    if getattr(optimizer_config, "name", "adamw") != "adamw":
        raise ValueError(f"optimizer.name must be 'adamw', got {optimizer_config.name!r}")
    parameters = list(parameters)  # tensors, or parameter-group dicts (e.g. `no_decay_param_groups`)
    tensors = [q for g in parameters for q in (g["params"] if isinstance(g, dict) else [g])]
    on_cuda = bool(tensors) and all(q.is_cuda and q.is_floating_point() for q in tensors)
    fused = getattr(p, "fused", None)
    fused = on_cuda if fused is None else bool(fused)
    return AdamW(parameters, lr=lr, betas=(p.beta1, p.beta2), eps=p.epsilon, weight_decay=p.weight_decay,
                 foreach=None if fused else True, fused=True if fused else None)


def scaled_lr(lr: float, config, num_processes: int) -> float:
    """`optimizer.params.scale_lr`: lr x per-GPU batch x processes x accumulation steps (reference behaviour)."""
    if not config.optimizer.params.scale_lr:
        return lr
    return lr * config.training.per_gpu_batch_size * num_processes * config.training.gradient_accumulation_steps


# TiTok's weight-decay exemptions (docs/design/titok-facts.md §5.4): substrings of the parameter name
TITOK_NO_DECAY_SUBSTRINGS = ("ln", "bias", "latent_tokens", "mask_token", "embedding", "norm", "gamma", "embed")


def no_decay_param_groups(module: torch.nn.Module, weight_decay: float,
                          substrings: Iterable[str] = TITOK_NO_DECAY_SUBSTRINGS) -> list[dict]:
    """TiTok's two AdamW groups over the trainable parameters of `module`: weight decay 0 for parameters with fewer
    than 2 dims or whose name contains any of `substrings` (so `patch_embed.weight` and the codebooks too), the
    configured decay for the rest. Frozen parameters (requires_grad False) are left out, as in the reference."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or any(s in name for s in substrings)
        (no_decay if exempt else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
