"""LPIPS-VGG perceptual distance (Zhang et al. 2018, v0.1), the evaluation metric and optional training loss.

    lpips = LPIPS()                                  # torchvision VGG16 weights + the v0.1 linear heads
    d = lpips(x, y)                                  # x, y (B,3,H,W) in [0,1] -> (B,)

The network and its forward pass are the `lpips` package's `LPIPS(net='vgg', version='0.1')`: VGG16 features at
relu1_2 ... relu5_3, unit-normalised over channels, squared difference weighted by a 1x1 conv per layer (the
"heads"), averaged over space and summed over layers. This subclass only changes where the weights come from,
so that nothing is ever downloaded behind our back: the package is built with a random trunk and no heads, then
the torchvision VGG16 file is found the way every other pretrained file is (`utils.weights.resolve_weights`: an
explicit path, the torch hub cache, a download only if allowed) and the heads are loaded from an explicit file or
the copy shipped in the package, with the key check and weights-only loading of `utils.weights`.
Parameter names are the package's (`net.slice{1..5}`, `lin{0..4}.model.1.weight`), so its `weights/v0.1/vgg.pth`
and the official `vgg_lpips.pth` load as they are. The module is frozen and in eval mode; as in the package,
`.train()` would enable the dropout in front of each head.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import lpips as lpips_package
import torch
import torch.nn as nn

from utils.weights import MissingWeightsError, load_state_dict_file, resolve_weights

VGG16_WEIGHTS = "vgg16-397923af.pth"  # torchvision VGG16_Weights.IMAGENET1K_V1
VGG16_URL = "https://download.pytorch.org/models/" + VGG16_WEIGHTS
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # vgg16.features ranges ending at relu1_2 ... relu5_3


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


def torchvision_vgg_to_slices(state: dict) -> dict:
    """`vgg16.state_dict()` keys `features.{i}.weight/bias` -> the package's `slice{k}.{i}.weight/bias`."""
    mapped = {}
    for k, (start, end) in enumerate(SLICES, 1):
        for i in range(start, end):
            for name in ("weight", "bias"):
                if f"features.{i}.{name}" in state:
                    mapped[f"slice{k}.{i}.{name}"] = state[f"features.{i}.{name}"]
    return mapped


class LPIPS(lpips_package.LPIPS):
    """LPIPS-VGG distance between [0,1] image batches: (B,3,H,W), (B,3,H,W) -> (B,).

    vgg_weights_path: torchvision's vgg16-397923af.pth ('' = torch hub cache, downloaded if allowed).
    heads_path: the v0.1 heads ('' = from the installed `lpips` package).
    random_init: random VGG (PyTorch default conv init, seed 0; tests, benchmarks); the heads are still loaded.
    """

    def __init__(self, vgg_weights_path: str = "", heads_path: str = "", random_init: bool = False,
                 allow_download: bool = True):
        vgg_file = None
        if not random_init:  # resolve first: a missing file fails before the 0.5 GB torchvision VGG16 is built
            vgg_file = resolve_weights(VGG16_WEIGHTS, VGG16_URL, local_path=vgg_weights_path,
                                       what="VGG16 ImageNet weights for LPIPS",
                                       config_key="evaluation.lpips_vgg_weights_path", allow_download=allow_download)
        heads_file = lpips_heads_file(heads_path)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():  # global RNG untouched
            warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
            # pnet_rand: torchvision vgg16(weights=None), never a download; pretrained=False: heads loaded below
            super().__init__(pretrained=False, net="vgg", version="0.1", pnet_rand=True, verbose=False)
            if random_init:  # the same random VGG in every process: default Conv2d init in layer order, seed 0
                torch.manual_seed(0)
                for module in self.net.modules():
                    if isinstance(module, nn.Conv2d):
                        module.reset_parameters()
        if vgg_file is not None:
            self.net.load_state_dict(torchvision_vgg_to_slices(load_state_dict_file(vgg_file)), strict=True)
        self.load_heads(heads_file)
        self.requires_grad_(False).eval()

    def load_heads(self, path: Path) -> None:
        state = load_state_dict_file(path)
        expected = {f"lin{k}.model.1.weight" for k in range(5)}
        if not expected <= set(state):
            raise ValueError(f"'{path}' does not hold the LPIPS-VGG heads {sorted(expected)}; "
                             f"found {sorted(state)[:8]}")
        self.load_state_dict({k: state[k] for k in expected}, strict=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super().forward(x, y, normalize=True).flatten()
