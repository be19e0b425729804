"""The FID Inception-v3: PyTorch port of TensorFlow's 2015-12-05 Inception graph, as used by FID and IS.

This is the network of pytorch-fid / torch-fidelity ("FID Inception"): torchvision's Inception-v3 layout with the
TF graph's quirks (average pools that ignore padding, a max pool in the last block, 1008 classes) and the TF1
input pipeline: uint8 images, TF1 bilinear resize to 299x299, then (x - 128) / 128. Like the official MaskBit
evaluator it runs in float64 and returns the 2048-d pool features and the 1008 logits without the fc bias.

    inception = build_inception(weights_path="")          # pt_inception-2015-12-05-6726825d.pth
    pool, logits = inception(to_uint8(images))            # images (B,3,H,W) in [0,1]
    feats = inception.features(to_uint8(images))          # {"pool": (B,2048), "spatial": (B,2023), "logits": (B,1008)}

The spatial features are the ADM suite's sFID features: its evaluator reads the TF graph tensor `mixed_6/conv:0`
and keeps the first 7 channels. In the TF graph the mixed blocks are `mixed, mixed_1, ..., mixed_10` (= Mixed_5b,
5c, 5d, 6a, 6b, 6c, 6d, 6e, 7a, 7b, 7c here) and `conv` is a block's 1x1 branch, so `mixed_6/conv` is
`Mixed_6d.branch1x1` (conv, batch norm, ReLU: the tensor the block concatenates): 17x17x192, of which channels
0..6 are flattened in TF's NHWC order, (h, w, c) -> (h * 17 + w) * 7 + c, to 2023 values per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.weights import MissingWeightsError, hub_checkpoint_dir, load_state_dict_file, resolve_weights

# The official evaluator loads pytorch-fid's conversion of the TF weights. torch-fidelity ships its own
# conversion of the same graph under another name; both load into this module.
FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS
FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + FIDELITY_WEIGHTS
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7  # ADM keeps mixed_6/conv[..., :7]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0,1] float images -> uint8 by truncation (`x * 255` cast), as the reference evaluators do."""
    return (images.clamp(0.0, 1.0) * 255).to(torch.uint8)


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B,C,H,W) float -> (B,C,size,size), bit-exact TF1 `resize_bilinear(align_corners=False)`.

    TF1 maps output pixel i to source coordinate i * (in / out) (no half-pixel offset) with the scale rounded to
    float32, clamps the upper neighbour to the border, and lerps along x before y.
    """
    def source_grid(n_in: int):
        scale = torch.tensor(n_in / size, dtype=torch.float32).to(x.dtype)
        coord = torch.arange(size, dtype=x.dtype, device=x.device) * scale
        lo = coord.long()
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, coord - lo.to(x.dtype)

    y_lo, y_hi, dy = source_grid(x.shape[2])
    x_lo, x_hi, dx = source_grid(x.shape[3])

    def lerp_x(rows: torch.Tensor) -> torch.Tensor:
        left, right = rows.index_select(3, x_lo), rows.index_select(3, x_hi)
        return left + (right - left) * dx

    top, bottom = lerp_x(x.index_select(2, y_lo)), lerp_x(x.index_select(2, y_hi))
    return top + (bottom - top) * dy[:, None]


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU. Submodule names `conv`/`bn` match the released weights."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """TF's 3x3 SAME average pool: padded zeros are not counted."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, in_ch: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_ch, 64, 1)
        self.branch5x5_1 = ConvBN(in_ch, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_ch, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(avg_pool_3x3(x)),
        ], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (c7 inner channels)."""

    def __init__(self, in_ch: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_ch, 192, 1)
        self.branch7x7_1 = ConvBN(in_ch, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_ch, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_1x1(x)[0]

    def forward_with_1x1(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(block output, its 1x1 branch): the branch of Mixed_6d is ADM's sFID layer."""
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7dbl = conv(b7dbl)
        return torch.cat([b1, b7, b7dbl, self.branch_pool(avg_pool_3x3(x))], 1), b1


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_ch, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_ch, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs. The TF graph pools with `avg` in Mixed_7b and `max` in Mixed_7c."""

    def __init__(self, in_ch: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(in_ch, 320, 1)
        self.branch3x3_1 = ConvBN(in_ch, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_ch, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = avg_pool_3x3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
            torch.cat([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], 1),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """uint8 images (B,3,H,W) -> (pool features (B,2048), unbiased logits (B,1008)) in the module's dtype;
    `features` adds the 2023 ADM spatial (sFID) features."""

    num_features, num_classes = 2048, 1008
    num_spatial_features = SPATIAL_CHANNELS * 17 * 17

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)  # only its weight is used: the reference IS takes the unbiased logits

    @property
    def dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool, _ = self._pool_and_spatial(images)
        return pool, pool.mm(self.fc.weight.T)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """All evaluation features of one pass: {"pool": (B,2048), "spatial": (B,2023), "logits": (B,1008)}."""
        pool, branch = self._pool_and_spatial(images)
        spatial = branch[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)  # TF's NHWC flattening order
        return {"pool": pool, "spatial": spatial, "logits": pool.mm(self.fc.weight.T)}

    def _pool_and_spatial(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B,3,H,W) -> (pool (B,2048), Mixed_6d's 1x1 branch (B,192,17,17))."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"FIDInceptionV3 expects uint8 images (B,3,H,W), got {images.dtype} "
                             f"{tuple(images.shape)}; convert [0,1] floats with evaluation.to_uint8(images)")
        x = resize_bilinear_tf1(images.to(self.dtype), INPUT_SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        x, spatial = self.Mixed_6d.forward_with_1x1(x)
        for block in (self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1), spatial

    @torch.no_grad()
    def randomize_(self, seed: int = 0) -> "FIDInceptionV3":
        """Random weights that keep activations O(1) through all 94 layers (He-normal convs, jittered BN stats).

        For tests and benchmarks only: PyTorch's default init shrinks the activations towards zero with depth,
        which would make feature comparisons vacuous.
        """
        gen = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.rand(n, generator=gen) - 0.1)
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(1 + 0.2 * torch.rand(n, generator=gen) - 0.1)
        self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=gen) / 2048 ** 0.5)
        self.fc.bias.copy_(0.1 * torch.randn(1008, generator=gen))
        return self


def inception_weights_file(weights_path: str = "", allow_download: bool = True) -> Path:
    """Local path of the FID Inception weights: explicit path, else the torch hub cache, else a download."""
    fidelity_cached = hub_checkpoint_dir() / FIDELITY_WEIGHTS
    if not weights_path and not (hub_checkpoint_dir() / FID_WEIGHTS).is_file() and fidelity_cached.is_file():
        return fidelity_cached
    try:
        return resolve_weights(FID_WEIGHTS, FID_WEIGHTS_URL, local_path=weights_path, what="FID Inception weights",
                               config_key="evaluation.inception_weights_path", allow_download=allow_download)
    except MissingWeightsError as err:
        raise MissingWeightsError(f"{err} torch-fidelity's conversion of the same network, {FIDELITY_WEIGHTS} "
                                  f"({FIDELITY_WEIGHTS_URL}), works too.") from None


def build_inception(weights_path: str = "", random_init: bool = False, dtype: torch.dtype = torch.float64,
                    device: Optional[torch.device] = None, allow_download: bool = True) -> FIDInceptionV3:
    """The frozen FID Inception in eval mode. `random_init=True` (tests, benchmarks) skips the weight file."""
    model = FIDInceptionV3()
    if random_init:
        model.randomize_()
    else:
        path = inception_weights_file(weights_path, allow_download)
        state = load_state_dict_file(path)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"'{path}' is not an FID Inception-v3 state dict (missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}); use {FID_WEIGHTS} from {FID_WEIGHTS_URL}")
    return model.to(device=device, dtype=dtype).requires_grad_(False).eval()
