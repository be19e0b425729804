"""The masked-token (MLM) loss of MaskBit training."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class MLMLoss(nn.Module):
    """Label-smoothed cross-entropy over ALL (position, split) elements, masked and unmasked, mean-reduced.

    Logged extras (detached): `masked_token_loss` (same loss over masked elements only), `correct_tokens` and
    `masked_correct_tokens` = (mean element accuracy)^splits, the official proxy for whole-token accuracy.
    With no masked element in the batch the masked-only values are NaN, as in the official code.
    """

    def __init__(self, label_smoothing: float = 0.1, sum_splits: bool = False):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.sum_splits = sum_splits  # multiply by the number of splits (a sum over splits of per-split means)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """logits (B, N, S, V), targets (B, N, S) int, mask (B, N, S) bool -> (loss, logs)."""
        splits, vocab = logits.shape[-2:]
        per_element = F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1),
                                      label_smoothing=self.label_smoothing, reduction="none")
        loss = per_element.mean()
        with torch.no_grad():
            weights = mask.reshape(-1).float()
            correct = (logits.detach().argmax(-1).reshape(-1) == targets.reshape(-1)).float()
            masked_loss = (per_element.detach() * weights).sum() / weights.sum()
            logs = {
                "correct_tokens": correct.mean() ** splits,
                "masked_token_loss": masked_loss,
                "masked_correct_tokens": ((correct * weights).sum() / weights.sum()) ** splits,
            }
        if self.sum_splits:
            loss = loss * splits
            logs["masked_token_loss"] = logs["masked_token_loss"] * splits
        logs["mlm_loss"] = loss.detach()
        return loss, logs
