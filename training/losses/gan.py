"""Adversarial losses on discriminator logits (any shape, e.g. (B, 1, 16, 16)) and the adaptive GAN weight.

`losses.discriminator_loss` picks a (discriminator, generator) pair, as in the official code:
    hinge           hinge D loss,                 hinge G loss  -mean(D(x_rec))
    vanilla         softplus D loss,              hinge G loss  (sic)
    non-saturating  sigmoid cross-entropy D loss, sigmoid cross-entropy G loss
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_fake)))


def sigmoid_cross_entropy(logits: torch.Tensor, label: float) -> torch.Tensor:
    """Elementwise -[z log s(x) + (1-z) log(1-s(x))] in the overflow-free form max(x,0) - x z + log(1 + e^-|x|)."""
    return F.relu(logits) - logits * label + torch.log1p(torch.exp(-logits.abs()))


def non_saturating_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return torch.mean(sigmoid_cross_entropy(logits_real, 1.0)) + torch.mean(sigmoid_cross_entropy(logits_fake, 0.0))


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -torch.mean(logits_fake)


def non_saturating_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return torch.mean(sigmoid_cross_entropy(logits_fake, 1.0))


GAN_LOSSES: dict[str, tuple[Callable, Callable]] = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "vanilla": (vanilla_d_loss, hinge_g_loss),
    "non-saturating": (non_saturating_d_loss, non_saturating_g_loss),
}


def adaptive_gan_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """Taming's balance ||d nll / d W|| / (||d g_loss / d W|| + 1e-4), clamped to [0, 1e4], W = decoder output conv.

    Enabled by `losses.discriminator_gradient_penalty: adopt_weight` (the official name; it is not a penalty).
    """
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4)
    return torch.clamp(weight, 0.0, 1e4).detach()
