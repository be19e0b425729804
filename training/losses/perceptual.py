"""Perceptual loss: MSE between frozen ImageNet-classifier outputs of the real and reconstructed images
(docs/design/reference-facts.md §4.3).

    loss_fn = build_perceptual_loss(config)               # None when losses.perceptual_loss is "none"
    loss = loss_fn(x, x_rec)                               # scalar

Both images ((B, 3, H, W) in [0, 1]) are resized to 224 px (bilinear, antialiased), normalised with the ImageNet
mean/std and fed to ResNet-50 or ConvNeXt-S (torchvision IMAGENET1K_V1) in eval mode. The loss is the MSE of the
1000-d pre-softmax logits (`losses.perceptual_loss_on_logits`), or of the last feature map plus the logits.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor

from utils.weights import load_state_dict_file, resolve_weights

logger = logging.getLogger(__name__)

# name -> (torchvision builder, pretrained weights, graph nodes for the features+logits variant)
PERCEPTUAL_NETWORKS = {
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1, {"layer4": "features", "fc": "logits"}),
    "convnext_s": (models.convnext_small, models.ConvNeXt_Small_Weights.IMAGENET1K_V1,
                   {"features": "features", "classifier": "logits"}),
}
PERCEPTUAL_LOSSES = ("none", "lpips", *PERCEPTUAL_NETWORKS)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """Frozen classifier; `forward(x, x_rec)` -> scalar. Stays in eval mode (BatchNorm running statistics) even
    when a parent module is switched to train mode, as in the reference."""

    def __init__(self, network: nn.Module, on_logits: bool = True, feature_nodes: Optional[dict] = None):
        super().__init__()
        self.on_logits = on_logits
        self.network = network if on_logits else create_feature_extractor(network, return_nodes=feature_nodes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None], persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)

    def _features(self, x: torch.Tensor):
        x = F.interpolate(x, size=224, mode="bilinear", antialias=True, align_corners=False)
        return self.network((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the real image never needs gradients: same values, half the activation memory
            target = self._features(x)
        pred = self._features(x_rec)
        if self.on_logits:
            return F.mse_loss(target, pred, reduction="mean")
        return (F.mse_loss(target["features"], pred["features"], reduction="mean")
                + F.mse_loss(target["logits"], pred["logits"], reduction="mean"))


def _pretrained_network(name: str, weights_path: str) -> nn.Module:
    builder, weights, _ = PERCEPTUAL_NETWORKS[name]
    filename = weights.url.rsplit("/", 1)[-1]
    path = resolve_weights(filename, url=weights.url, local_path=weights_path,
                           config_key="losses.perceptual_weights_path",
                           what=f"Perceptual-loss weights ({name}, torchvision {weights})")
    with torch.device("meta"):  # skip the random init: every tensor is overwritten by the file
        network = builder(weights=None)
    try:
        network.load_state_dict(load_state_dict_file(path), assign=True)
    except RuntimeError as err:
        raise ValueError(f"'{path}' is not a torchvision {name} state dict ({str(err).splitlines()[0]}). Point "
                         f"losses.perceptual_weights_path at {filename}.") from None
    return network


def build_perceptual_loss(config) -> Optional[nn.Module]:
    """The perceptual loss named by `config.losses`, weights resolved now (MissingWeightsError before training).

    `lpips` reuses the evaluation LPIPS network and its weight keys (evaluation.lpips_vgg_weights_path, ...).
    """
    losses_config = config.losses
    name = losses_config.perceptual_loss
    if name == "none":
        return None
    if name == "lpips":
        try:
            from evaluation.lpips import LPIPS
        except ImportError as err:
            raise ImportError(f"losses.perceptual_loss=lpips needs evaluation/lpips.py and the lpips package "
                              f"({err})") from None
        ev = config.evaluation
        return _LPIPSLoss(LPIPS(vgg_weights_path=ev.lpips_vgg_weights_path, heads_path=ev.lpips_heads_path,
                                random_init=losses_config.perceptual_random_init))
    if name not in PERCEPTUAL_NETWORKS:
        raise ValueError(f"losses.perceptual_loss must be one of {PERCEPTUAL_LOSSES}, got {name!r}")
    if losses_config.perceptual_random_init:
        logger.warning("losses.perceptual_random_init=true: the %s perceptual loss uses RANDOM weights "
                       "(for tests and timing only; the loss is meaningless for training).", name)
        network = PERCEPTUAL_NETWORKS[name][0](weights=None)
    else:
        network = _pretrained_network(name, losses_config.perceptual_weights_path)
    return PerceptualLoss(network, losses_config.perceptual_loss_on_logits, PERCEPTUAL_NETWORKS[name][2])


class _LPIPSLoss(nn.Module):
    """Mean LPIPS distance as a loss; the LPIPS network is frozen and kept in eval mode."""

    def __init__(self, lpips: nn.Module):
        super().__init__()
        self.lpips = lpips.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "_LPIPSLoss":
        return super().train(False)

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        return self.lpips(x, x_rec).mean()
