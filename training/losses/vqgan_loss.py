"""The Stage-I objective (the official `VQGANLoss`): generator and discriminator losses for one training step.

    loss_fn = VQGANLoss.from_config(config)
    g_total, g_logs = loss_fn.generator_loss(x, x_rec, info, step, discriminator, last_layer)
    if loss_fn.discriminator_active(step):
        d_total, d_logs = loss_fn.discriminator_loss(x, x_rec, step, discriminator)

Generator side (docs/design/reference-facts.md §4.1):
    rec_w * rec(x, x_rec) + perc_w * P(x, x_rec) + q_w * annealed_q + d_w * factor(step) * G(D(x_rec))
Discriminator side (docs/design/reference-facts.md §4.2):
    factor(step) * D_loss(D(x), D(sg(x_rec))) + lecam_w * LeCAM

Unlike the reference, the discriminator is not a submodule: the trainer owns it (with its optimizer and DDP
wrapper) and passes it in, so this module only holds the frozen perceptual network and the LeCAM EMA buffers.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn as nn

from training.losses.entropy_annealing import annealed_quantizer_loss
from training.losses.gan import GAN_LOSSES, adaptive_gan_weight
from training.losses.lecam import LeCAMRegularizer
from training.losses.perceptual import build_perceptual_loss
from training.losses.reconstruction import reconstruction_loss

LossLogs = dict[str, torch.Tensor]
ADAPTIVE_WEIGHT_OPTIONS = ("none", "adopt_weight")


class VQGANLoss(nn.Module):
    def __init__(self, losses_config, perceptual: Optional[nn.Module] = None):
        super().__init__()
        c = losses_config
        if c.discriminator_loss not in GAN_LOSSES:
            raise ValueError(f"losses.discriminator_loss must be one of {tuple(GAN_LOSSES)}, "
                             f"got {c.discriminator_loss!r}")
        if c.discriminator_gradient_penalty not in ADAPTIVE_WEIGHT_OPTIONS:
            raise ValueError(f"losses.discriminator_gradient_penalty must be one of {ADAPTIVE_WEIGHT_OPTIONS}, "
                             f"got {c.discriminator_gradient_penalty!r}")
        if c.entropy_annealing_factor > 0 and c.entropy_annealing_steps <= 0:
            raise ValueError("losses.entropy_annealing_steps must be > 0 when entropy_annealing_factor > 0")
        self.perceptual = perceptual
        self.lecam = LeCAMRegularizer(c.lecam_ema_decay) if c.lecam_regularization_weight > 0.0 else None
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[c.discriminator_loss]
        self.reconstruction_kind = c.reconstruction_loss
        self.reconstruction_weight = c.reconstruction_weight
        self.perceptual_weight = c.perceptual_weight
        self.quantizer_weight = c.quantizer_weight
        self.entropy_annealing_steps = c.entropy_annealing_steps
        self.entropy_annealing_factor = c.entropy_annealing_factor
        self.discriminator_start = c.discriminator_start
        self.discriminator_factor_value = c.discriminator_factor
        self.discriminator_weight = c.discriminator_weight
        self.adaptive_weight = c.discriminator_gradient_penalty == "adopt_weight"
        self.lecam_weight = c.lecam_regularization_weight

    @classmethod
    def from_config(cls, config) -> "VQGANLoss":
        return cls(config.losses, build_perceptual_loss(config))

    def discriminator_active(self, step: int) -> bool:
        """The discriminator trains (and the GAN term switches on) from `losses.discriminator_start` on."""
        return step >= self.discriminator_start

    def discriminator_factor(self, step: int) -> float:
        return self.discriminator_factor_value if self.discriminator_active(step) else 0.0

    def generator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, info: Mapping[str, torch.Tensor], step: int,
                       discriminator: Optional[nn.Module] = None,
                       last_layer: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, LossLogs]:
        """Tokenizer loss. x, x_rec: (B, 3, H, W); info: the tokenizer's loss dict; step: optimizer steps so far.

        `discriminator` should be the plain module (not the DDP wrapper): its parameters are frozen here and only
        the gradient w.r.t. x_rec is needed. `last_layer` (decoder output conv weight) is required for the
        adaptive weight.
        """
        x, x_rec = x.contiguous(), x_rec.contiguous()
        rec_loss = reconstruction_loss(x, x_rec, self.reconstruction_kind) * self.reconstruction_weight
        perc_loss = self.perceptual(x, x_rec) if self.perceptual is not None else torch.zeros((), device=x.device)
        q_loss = annealed_quantizer_loss(info["quantizer_loss"], info["entropy_loss"], step,
                                         self.entropy_annealing_steps, self.entropy_annealing_factor)
        total = rec_loss
        if self.perceptual is not None:
            total = total + self.perceptual_weight * perc_loss
        total = total + self.quantizer_weight * q_loss

        factor, g_loss, d_weight, weighted_gan = self.gan_term(x_rec, step, discriminator,
                                                               lambda: rec_loss + self.perceptual_weight * perc_loss,
                                                               last_layer)
        if factor > 0.0:
            total = total + weighted_gan

        logs = {
            "total_loss": total,
            "reconstruction_loss": rec_loss,
            "perceptual_loss": self.perceptual_weight * perc_loss,
            "quantizer_loss": self.quantizer_weight * q_loss,
            "weighted_gan_loss": weighted_gan,
            "discriminator_factor": factor,
            "d_weight": d_weight,
            "gan_loss": g_loss,
            **{k: info[k] for k in ("commitment_loss", "entropy_loss", "per_sample_entropy", "avg_entropy",
                                    "codebook_loss") if k in info},
        }
        return total, _detached(logs, x.device)

    def gan_term(self, x_rec: torch.Tensor, step: int, discriminator: Optional[nn.Module],
                 nll_loss, last_layer: Optional[torch.Tensor] = None):
        """(factor, generator GAN loss, GAN weight, weighted GAN loss) of this step; `nll_loss()` gives the
        reconstruction + perceptual term that the adaptive weight balances against (called only when needed)."""
        factor = self.discriminator_factor(step)
        g_loss = torch.zeros((), device=x_rec.device)
        d_weight = 1.0
        weighted_gan = torch.zeros((), device=x_rec.device)
        if factor > 0.0:
            if discriminator is None:
                raise ValueError(f"the GAN loss is active at step {step} but no discriminator was passed")
            discriminator.requires_grad_(False)
            g_loss = self.g_loss_fn(discriminator(x_rec).float())  # fp32 loss under autocast
            if self.adaptive_weight:
                if last_layer is None:
                    raise ValueError("discriminator_gradient_penalty=adopt_weight needs last_layer")
                d_weight = d_weight * adaptive_gan_weight(nll_loss(), g_loss, last_layer)
        d_weight = d_weight * self.discriminator_weight
        if factor > 0.0:
            weighted_gan = d_weight * factor * g_loss
        return factor, g_loss, d_weight, weighted_gan

    def discriminator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, step: int,
                           discriminator: nn.Module) -> tuple[torch.Tensor, LossLogs]:
        """Discriminator loss on real x and the (detached) x_rec of this step's generator forward.

        Pass the module the optimizer steps (the DDP wrapper under multi-process training).
        """
        factor = self.discriminator_factor(step)
        discriminator.requires_grad_(True)
        logits_real = discriminator(x.detach()).float()  # fp32 losses under autocast (no-op otherwise)
        logits_fake = discriminator(x_rec.detach()).float()
        total = factor * self.d_loss_fn(logits_real, logits_fake)
        lecam = torch.zeros((), device=x.device)
        if self.lecam is not None:
            lecam = self.lecam(logits_real, logits_fake) * self.lecam_weight
            total = total + lecam
        logs = {"discriminator_loss": total, "logits_real": logits_real.mean(), "logits_fake": logits_fake.mean(),
                "lecam_loss": lecam}
        return total, _detached(logs, x.device)


def _detached(logs: Mapping[str, object], device: torch.device) -> LossLogs:
    """Loss terms as detached float32 scalar tensors (python floats become tensors), ready for logging."""
    out = {}
    for key, value in logs.items():
        value = value.detach() if torch.is_tensor(value) else torch.tensor(float(value), device=device)
        out[key] = value.float().reshape(())
    return out
