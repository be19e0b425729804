"""Codebook statistics of a tokenizer over a data set: usage, entropy and (LFQ) per-bit usage."""
from __future__ import annotations

from typing import Optional, Union

import torch

from evaluation.distributed import all_reduce_sum_


class CodebookStats:
    """Histogram of token indices (int64, summed over processes by `all_reduce`).

    usage = distinct indices seen / codebook_size; entropy = -sum p log2(p + 1e-8) in bits;
    bit_usage (LFQ, K bits, LSB first) = fraction of tokens whose bit k is 1.
    """

    def __init__(self, codebook_size: int, num_bits: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu"):
        if num_bits is not None and 2 ** num_bits != codebook_size:
            raise ValueError(f"num_bits={num_bits} does not match codebook_size={codebook_size} (LFQ: 2**bits)")
        self.codebook_size, self.num_bits = codebook_size, num_bits
        self.counts = torch.zeros(codebook_size, dtype=torch.int64, device=device)

    def update(self, indices: torch.Tensor) -> None:
        """Add token indices of any shape (e.g. (B,h,w) `min_encoding_indices`)."""
        idx = indices.reshape(-1).long().to(self.counts.device)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.codebook_size):
            raise ValueError(f"token indices must lie in [0, {self.codebook_size}), got "
                             f"[{idx.min().item()}, {idx.max().item()}]; is model.vq_model.codebook_size right?")
        self.counts += torch.bincount(idx, minlength=self.codebook_size)

    def all_reduce(self) -> None:
        all_reduce_sum_(self.counts)

    def usage(self) -> float:
        return (self.counts > 0).sum().item() / self.codebook_size

    def entropy(self) -> float:
        p = self.counts.double() / self.counts.sum()
        return (-torch.log2(p + 1e-8) * p).sum().item()

    def bit_usage(self) -> list[float]:
        codes = torch.arange(self.codebook_size, device=self.counts.device)
        bits = (codes[:, None] >> torch.arange(self.num_bits, device=codes.device)) & 1
        return ((self.counts[:, None] * bits).sum(0).double() / self.counts.sum()).tolist()
