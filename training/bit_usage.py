"""Per-bit usage of an LFQ tokenizer over a logging window, flagging dead (constant) bits."""
from __future__ import annotations

from typing import Optional

import torch


class BitUsageMonitor:
    """Averages the quantizer's `bit_usage` (K,) (fraction of +1 per bit in a batch) over a logging window.

    A bit whose window mean is exactly 0 or 1 never changed sign in the window: it carries no information (the
    released 18-bit tokenizer has one such bit).
    """

    def __init__(self):
        self.total: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, bit_usage: torch.Tensor) -> None:
        bit_usage = bit_usage.detach().float()
        self.total = bit_usage.clone() if self.total is None else self.total + bit_usage
        self.count += 1

    def pop(self, accelerator=None) -> Optional[list[float]]:
        """Window mean per bit (averaged over processes when `accelerator` is given); resets the window."""
        if self.total is None:
            return None
        usage = self.total / self.count
        if accelerator is not None and accelerator.num_processes > 1:
            usage = accelerator.reduce(usage, reduction="mean")
        self.total, self.count = None, 0
        return usage.tolist()

    @staticmethod
    def dead_bits(usage: list[float]) -> list[int]:
        return [i for i, u in enumerate(usage) if u == 0.0 or u == 1.0]
