"""Entropy regulariser of the quantizers: per-sample entropy and gamma x batch-average entropy.

With p[n] = softmax(affinity[n] / T) over the codes, for every latent position n (official `entropy_loss_fn`):

    per_sample = mean_n  -sum_c p[n, c] log(max(p[n, c], 1e-5))
    average    = gamma * -sum_c pbar[c] log(max(pbar[c], 1e-5)),      pbar = mean_n p[n]

The loss is `weight * (per_sample - average)`. `softmax_entropy` evaluates this literally from an (N, codes)
affinity matrix (used by the VQ quantizer). `lfq_entropy` returns the same values and gradients for lookup-free
quantization without ever holding an (N, 2^K) tensor: with affinity 2<z, c> the code distribution is a product of
independent bits, so p[n] is the outer product of two half-codebook distributions p_low[n] (2^(K//2) codes) and
p_high[n] (2^(K - K//2) codes).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

LOG_CLAMP = 1e-5
DEFAULT_CHUNK_ELEMENTS = 2 ** 24  # joint probabilities evaluated at once: 64 MiB in fp32


def clamped_entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum p log(max(p, 1e-5)) over the last dimension."""
    return -(probs * probs.clamp_min(LOG_CLAMP).log()).sum(-1)


def softmax_entropy(affinity: torch.Tensor, temperature: float, gamma: float = 1.0,
                    distributed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference computation. affinity (..., codes) -> (per_sample_entropy, gamma * avg_entropy), scalars."""
    probs = (affinity.reshape(-1, affinity.shape[-1]) / temperature).softmax(dim=-1)
    per_sample = clamped_entropy(probs).mean()
    prob_sum, count = _sum_over_processes(probs.sum(0), probs.shape[0], distributed)
    return per_sample, gamma * clamped_entropy(prob_sum / count)


def lfq_entropy(z: torch.Tensor, temperature: float, gamma: float = 1.0, distributed: bool = False,
                max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """LFQ entropy terms of latents z (..., K), equal to `softmax_entropy(2 z @ codebook.T, ...)`.

    Memory is O(N * 2^(K/2) + 2^K + max_chunk_elements) instead of O(N * 2^K). Computed in at least fp32 (fp64
    for the batch average) whatever the autocast state. Returns scalars (per_sample_entropy, gamma * avg_entropy).
    """
    with torch.autocast(z.device.type, enabled=False):
        z = z.reshape(-1, z.shape[-1])
        z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
        num_low = z.shape[-1] // 2
        # softmax over codes of 2<z, c>/T factorises: P(bit i = 1) = sigmoid(4 z_i / T), independently per bit
        bit_logits = 4.0 * z / temperature
        p_low = _code_probs(bit_logits[:, :num_low])  # (N, 2^num_low)
        p_high = _code_probs(bit_logits[:, num_low:])  # (N, 2^(K - num_low))
        per_sample = _ProductEntropy.apply(p_low, p_high, max_chunk_elements) / z.shape[0]
        # sum_n p[n] as a (2^low, 2^high) matrix, code index = low + 2^num_low * high; fp64 avoids TF32 matmuls
        prob_sum = p_low.double().T @ p_high.double()
        prob_sum, count = _sum_over_processes(prob_sum, z.shape[0], distributed)
        average = clamped_entropy((prob_sum / count).flatten()).to(z.dtype)
    return per_sample, gamma * average


def _code_probs(bit_logits: torch.Tensor) -> torch.Tensor:
    """(N, k) per-bit logits -> (N, 2^k) code probabilities, code index = sum_i bit_i 2^i (LSB first)."""
    probs = bit_logits.new_ones(bit_logits.shape[0], 1)
    for i in range(bit_logits.shape[1]):
        logit = bit_logits[:, i:i + 1]
        probs = torch.cat([probs * torch.sigmoid(-logit), probs * torch.sigmoid(logit)], dim=1)
    return probs


class _ProductEntropy(torch.autograd.Function):
    """sum_n clamped_entropy(outer(p_low[n], p_high[n])) with its exact gradient, in bounded memory.

    Per position one table gives the rows of the outer product and the other the columns (whichever way leaves
    fewer active rows). A row r whose largest entry rows[n, r] * max(cols[n]) is <= 1e-5 is clamped throughout and
    contributes -log(1e-5) * rows[n, r] * sum(cols[n]) in closed form. Only the active rows are expanded, at most
    `max_chunk_elements` entries at a time. Sharp (trained) and flat (early) bit distributions leave few active rows.
    """

    @staticmethod
    def forward(ctx, p_low: torch.Tensor, p_high: torch.Tensor, max_chunk_elements: int) -> torch.Tensor:
        rows, cols, swap = _orient(p_low, p_high)
        active = rows * cols.amax(1, keepdim=True) > LOG_CLAMP
        pos, row = active.nonzero(as_tuple=True)  # the active (position, row) pairs
        inactive_mass = rows.masked_fill(active, 0.0).sum(1)
        total = (-math.log(LOG_CLAMP) * inactive_mass * cols.sum(1)).sum(dtype=torch.float64)
        ctx.chunk = max(1, max_chunk_elements // rows.shape[1])
        for start in range(0, pos.numel(), ctx.chunk):
            p, r = pos[start:start + ctx.chunk], row[start:start + ctx.chunk]
            total += clamped_entropy(rows[p, r, None] * cols[p]).sum(dtype=torch.float64)
        ctx.save_for_backward(rows, cols, swap, inactive_mass, pos, row)
        ctx.sizes = p_low.shape[1], p_high.shape[1]
        return total.to(p_low.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, cols, swap, inactive_mass, pos, row = ctx.saved_tensors
        # clamped entries: d/dJ of -J log(1e-5) is -log(1e-5); active rows are overwritten below
        grad_rows = (-math.log(LOG_CLAMP) * cols.sum(1, keepdim=True)).expand_as(rows).clone()
        grad_cols = (-math.log(LOG_CLAMP) * inactive_mass[:, None]).expand_as(cols).clone()
        for start in range(0, pos.numel(), ctx.chunk):
            p, r = pos[start:start + ctx.chunk], row[start:start + ctx.chunk]
            row_probs, col_probs = rows[p, r, None], cols[p]
            joint = row_probs * col_probs
            # d/dJ of -J log(max(J, eps)) is -(log(max(J, eps)) + [J > eps]), as autograd gives through clamp_min
            d_joint = joint.clamp_min(LOG_CLAMP).log_().add_(joint > LOG_CLAMP).neg_()
            grad_rows[p, r] = (d_joint * col_probs).sum(1)
            grad_cols.index_add_(0, p, d_joint * row_probs)
        grad_low, grad_high = _unorient(grad_rows, grad_cols, swap, *ctx.sizes)
        return grad_low * grad, grad_high * grad, None


def _orient(p_low: torch.Tensor, p_high: torch.Tensor):
    """Zero-pad both tables to the same width and pick, per position, the table that leaves fewer active rows."""
    width = max(p_low.shape[1], p_high.shape[1])
    p_low = F.pad(p_low, (0, width - p_low.shape[1]))
    p_high = F.pad(p_high, (0, width - p_high.shape[1]))
    active_low = (p_low * p_high.amax(1, keepdim=True) > LOG_CLAMP).sum(1)
    active_high = (p_high * p_low.amax(1, keepdim=True) > LOG_CLAMP).sum(1)
    swap = (active_high < active_low)[:, None]
    return torch.where(swap, p_high, p_low), torch.where(swap, p_low, p_high), swap


def _unorient(grad_rows: torch.Tensor, grad_cols: torch.Tensor, swap: torch.Tensor, low: int, high: int):
    grad_low = torch.where(swap, grad_cols, grad_rows)[:, :low]
    grad_high = torch.where(swap, grad_rows, grad_cols)[:, :high]
    return grad_low, grad_high


def _sum_over_processes(tensor: torch.Tensor, count: int, distributed: bool):
    """Sum `tensor` and `count` over processes when asked to and torch.distributed is initialised."""
    if not (distributed and dist.is_available() and dist.is_initialized()):
        return tensor, count
    total_count = torch.tensor(float(count), dtype=torch.float64, device=tensor.device)
    dist.all_reduce(total_count)
    return _AllReduceSum.apply(tensor), total_count


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce: every process's loss depends on every process's probabilities, so the
    backward pass sums the incoming gradients over processes too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad
