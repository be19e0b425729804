"""LeCAM regularisation of the discriminator (Tseng et al. 2021) as used by VQGAN+
(docs/design/reference-facts.md §4.2)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def lecam_loss(real_mean: torch.Tensor, fake_mean: torch.Tensor, ema_real: torch.Tensor,
               ema_fake: torch.Tensor) -> torch.Tensor:
    """relu(r - ema_f)^2 + relu(ema_r - f)^2 on scalar batch means of the logits."""
    real_term = torch.mean(torch.pow(F.relu(real_mean - ema_fake), 2))
    return real_term + torch.mean(torch.pow(F.relu(ema_real - fake_mean), 2))


class LeCAMRegularizer(nn.Module):
    """Unweighted LeCAM loss against EMAs of the mean real / fake logits, kept as (1,) buffers that start at 0.

    `forward` uses the EMAs from before this batch, then updates them. Under multi-process training the official
    loss module sat in DDP, whose buffer broadcast made every rank use rank 0's EMAs; `forward` reproduces that by
    broadcasting rank 0's updated EMAs, so all ranks always hold the same values (and the rank-0 checkpoint
    restores every rank exactly).
    """

    def __init__(self, ema_decay: float = 0.999):
        super().__init__()
        self.ema_decay = ema_decay
        self.register_buffer("ema_real_logits_mean", torch.zeros(1))
        self.register_buffer("ema_fake_logits_mean", torch.zeros(1))

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        real_mean, fake_mean = torch.mean(logits_real), torch.mean(logits_fake)
        loss = lecam_loss(real_mean, fake_mean, self.ema_real_logits_mean, self.ema_fake_logits_mean)
        with torch.no_grad():
            d = self.ema_decay
            self.ema_real_logits_mean.copy_(self.ema_real_logits_mean * d + real_mean.detach() * (1 - d))
            self.ema_fake_logits_mean.copy_(self.ema_fake_logits_mean * d + fake_mean.detach() * (1 - d))
            self._sync_from_rank0()
        return loss

    def _sync_from_rank0(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            both = torch.cat([self.ema_real_logits_mean, self.ema_fake_logits_mean])
            dist.broadcast(both, src=0)
            self.ema_real_logits_mean.copy_(both[:1])
            self.ema_fake_logits_mean.copy_(both[1:])
