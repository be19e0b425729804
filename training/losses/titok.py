"""TiTok tokenizer objectives (docs/design/titok-facts.md §5.2, §5.3).

    total, logs = proxy_code_loss(logits, codes, info["quantizer_loss"], quantizer_weight)      # stage 1
    loss_fn = TiTokPixelLoss.from_config(config)                                                # stage 2 / single
    total, logs = loss_fn.generator_loss(x, x_rec, info, step, discriminator)
    d_total, d_logs = loss_fn.discriminator_loss(x, x_rec, step, discriminator)

Stage 1: mean cross-entropy of the decoder's MaskGIT-code logits (B, 1024, 16, 16), viewed (B, 1024, 256), against the
frozen MaskGIT-VQGAN's row-major codes (B, 256), plus `quantizer_weight * quantizer_loss`.

Stage 2 and single-stage VQ: exactly `VQGANLoss` with the TiTok settings (no adaptive weight, no entropy term):
    rec_w * rec + perc_w * P + q_w * quantizer_loss + d_w * factor * (-mean D(x_rec))      (GAN from discriminator_start)
and the hinge + LeCAM discriminator loss. Single-stage VAE replaces the quantizer term: rec_w * rec / exp(logvar)
(frozen scalar, `losses.logvar_init`) + perc_w * P + kl_weight * sum(KL) / B + the GAN term. The reference computes
these losses in float32 with its inputs cast (autocast off); `generator_loss` / `discriminator_loss` do the same.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.losses.reconstruction import reconstruction_loss
from training.losses.vqgan_loss import LossLogs, VQGANLoss, _detached


def proxy_code_loss(logits: torch.Tensor, codes: torch.Tensor, quantizer_loss: torch.Tensor,
                    quantizer_weight: float) -> tuple[torch.Tensor, LossLogs]:
    """Stage-1 loss. logits (B, K, h, w) (K = 1024 MaskGIT codes), codes (B, h*w) row-major int64."""
    batch, classes = logits.shape[:2]
    ce = F.cross_entropy(logits.float().reshape(batch, classes, -1), codes, reduction="mean")
    total = ce + quantizer_weight * quantizer_loss
    logs = {"total_loss": total, "reconstruction_loss": ce, "quantizer_loss": quantizer_weight * quantizer_loss}
    return total, _detached(logs, logits.device)


def _fp32_off_autocast(x: torch.Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)


class TiTokPixelLoss(VQGANLoss):
    """`VQGANLoss` run in float32 outside autocast, with TiTok's VAE branch (see the module docstring)."""

    def __init__(self, losses_config, perceptual: Optional[nn.Module] = None):
        super().__init__(losses_config, perceptual)
        if self.adaptive_weight:
            raise ValueError("TiTok losses use no adaptive GAN weight: set losses.discriminator_gradient_penalty=none")
        self.kl_weight = losses_config.kl_weight
        self.logvar = nn.Parameter(torch.ones(()) * losses_config.logvar_init, requires_grad=False)

    def generator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, info, step: int,
                       discriminator: Optional[nn.Module] = None,
                       last_layer: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, LossLogs]:
        """`info`: the tokenizer's VQ loss dict, or the VAE posterior (`DiagonalGaussianDistribution`)."""
        with _fp32_off_autocast(x):
            x, x_rec = x.float(), x_rec.float()
            if isinstance(info, Mapping):
                vq_info = {"quantizer_loss": info["quantizer_loss"].float(),
                           "entropy_loss": torch.zeros((), device=x.device)}  # TiTok has no entropy term
                vq_info.update({k: info[k] for k in ("commitment_loss", "codebook_loss") if k in info})
                return super().generator_loss(x, x_rec, vq_info, step, discriminator)
            return self._vae_generator_loss(x, x_rec, info, step, discriminator)

    def _vae_generator_loss(self, x, x_rec, posterior, step, discriminator):
        x, x_rec = x.contiguous(), x_rec.contiguous()
        rec_loss = reconstruction_loss(x, x_rec, self.reconstruction_kind) * self.reconstruction_weight
        rec_loss = rec_loss / torch.exp(self.logvar)
        perc_loss = self.perceptual(x, x_rec) if self.perceptual is not None else torch.zeros((), device=x.device)
        kl = posterior.kl()
        kl_loss = torch.sum(kl) / kl.shape[0]
        total = rec_loss
        if self.perceptual is not None:
            total = total + self.perceptual_weight * perc_loss
        total = total + self.kl_weight * kl_loss
        factor, g_loss, d_weight, weighted_gan = self.gan_term(x_rec, step, discriminator, nll_loss=None)
        if factor > 0.0:
            total = total + weighted_gan
        logs = {"total_loss": total, "reconstruction_loss": rec_loss,
                "perceptual_loss": self.perceptual_weight * perc_loss, "kl_loss": self.kl_weight * kl_loss,
                "weighted_gan_loss": weighted_gan, "discriminator_factor": factor,
                "d_weight": d_weight, "gan_loss": g_loss}
        return total, _detached(logs, x.device)

    def discriminator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, step: int,
                           discriminator: nn.Module) -> tuple[torch.Tensor, LossLogs]:
        with _fp32_off_autocast(x):
            return super().discriminator_loss(x.float(), x_rec.float(), step, discriminator)
