"""LPIPS-VGG perceptual distance (Zhang et al. 2018, v0.1), the evaluation metric and optional training loss.

    lpips = LPIPS()                                  # torchvision VGG16 weights + the v0.1 linear heads
    d = lpips(x, y)                                  # x, y (B,3,H,W) in [0,1] -> (B,)

VGG16 features at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 are unit-normalised over channels, their squared
difference is weighted by a 1x1 conv per layer (the "heads"), averaged over space and summed over layers.
Parameter names follow the official module (`net.slice{1..5}`, `lin{0..4}.model.1.weight`), so its
`vgg_lpips.pth` and the `lpips` package's `weights/v0.1/vgg.pth` load as they are. The module is frozen and in
eval mode; as in the reference, `.train()` would enable the dropout in front of each head.
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from utils.weights import MissingWeightsError, load_state_dict_file, resolve_weights

VGG16_WEIGHTS = "vgg16-397923af.pth"  # torchvision VGG16_Weights.IMAGENET1K_V1
VGG16_URL = "https://download.pytorch.org/models/" + VGG16_WEIGHTS
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # vgg16.features ranges ending at relu1_2 ... relu5_3
CHANNELS = (64, 128, 256, 512, 512)
VGG16_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def lpips_heads_file(heads_path: str = "") -> Path:
    """The v0.1 VGG linear heads: an explicit file, else the copy shipped inside the `lpips` pip package."""
    if heads_path:
        path = Path(heads_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"LPIPS heads file '{path}' does not exist (evaluation.lpips_heads_path)")
        return path
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
        if path.is_file():
            return path
    raise MissingWeightsError("LPIPS linear heads not found: `pip install lpips` (they ship as lpips/weights/v0.1/"
                              "vgg.pth), or set evaluation.lpips_heads_path to that file or the official "
                              "pretrained/vgg_lpips.pth")


class ScalingLayer(nn.Module):
    """[0,1] -> [-1,1] -> normalised with the LPIPS channel shift/scale."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 2.0 - 1.0 - self.shift) / self.scale


class VGG16Slices(nn.Module):
    """torchvision VGG16 `features[:30]` (same layer indices) cut into the five slices LPIPS compares."""

    def __init__(self):
        super().__init__()
        layers, in_ch = [], 3
        for width in VGG16_WIDTHS:
            if width == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = width
        for k, (start, end) in enumerate(SLICES, 1):
            setattr(self, f"slice{k}", nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(start, end))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            feats.append(x)
        return feats

    def load_torchvision_state_dict(self, state: dict) -> None:
        """Load `vgg16.state_dict()` (keys `features.{i}.weight/bias`) into the slices."""
        mapped = {}
        for k, (start, end) in enumerate(SLICES, 1):
            for i in range(start, end):
                for name in ("weight", "bias"):
                    if f"features.{i}.{name}" in state:
                        mapped[f"slice{k}.{i}.{name}"] = state[f"features.{i}.{name}"]
        self.load_state_dict(mapped, strict=True)


class LinearHead(nn.Module):
    """Dropout + 1x1 conv to one channel, no bias (named `model.0`/`model.1` as in the released heads)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


def _unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS-VGG distance between [0,1] image batches: (B,3,H,W), (B,3,H,W) -> (B,).

    vgg_weights_path: torchvision's vgg16-397923af.pth ('' = torch hub cache, downloaded if allowed).
    heads_path: the v0.1 heads ('' = from the installed `lpips` package).
    random_init: random VGG (PyTorch default init, seed 0; tests, benchmarks); the heads are still loaded.
    """

    def __init__(self, vgg_weights_path: str = "", heads_path: str = "", random_init: bool = False,
                 allow_download: bool = True):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        with torch.random.fork_rng(devices=[]):  # same random VGG in every process, global RNG untouched
            torch.manual_seed(0)
            self.net = VGG16Slices()
        for k, ch in enumerate(CHANNELS):
            setattr(self, f"lin{k}", LinearHead(ch))
        if not random_init:
            vgg_file = resolve_weights(VGG16_WEIGHTS, VGG16_URL, local_path=vgg_weights_path,
                                       what="VGG16 ImageNet weights for LPIPS",
                                       config_key="evaluation.lpips_vgg_weights_path", allow_download=allow_download)
            self.net.load_torchvision_state_dict(load_state_dict_file(vgg_file))
        self.load_heads(lpips_heads_file(heads_path))
        self.requires_grad_(False).eval()

    def load_heads(self, path: Path) -> None:
        state = load_state_dict_file(path)
        expected = {f"lin{k}.model.1.weight" for k in range(5)}
        if not expected <= set(state):
            raise ValueError(f"'{path}' does not hold the LPIPS-VGG heads {sorted(expected)}; found {sorted(state)[:8]}")
        self.load_state_dict({k: state[k] for k in expected}, strict=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0
        for k, feats in enumerate(self.net(self.scaling_layer(torch.cat([x, y])))):  # one VGG pass for both
            fx, fy = feats.chunk(2)
            diff = (_unit_normalize(fx) - _unit_normalize(fy)) ** 2
            total = total + getattr(self, f"lin{k}").model(diff).mean(dim=(2, 3), keepdim=True)
        return total.flatten()
