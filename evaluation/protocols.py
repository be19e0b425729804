"""Sample -> uint8 image conversions of the evaluation protocols, so a gFID can be computed the way a paper did.

    images_u8 = to_uint8_protocol(images, "maskgit_v2")   # (B, 3, H, W) in [0, 1] -> uint8 (B, 3, 299, 299)

- `adm` (our default, as MaskBit / ADM): clamp to [0, 1], x 255, truncate; the Inception network then resizes
  the uint8 images to 299 with TF1 bilinear.
- `maskgit_v1` (MaskGIT-pytorch, facts §9.1): every image min-max normalised on its own to [0, 255] (min and max
  over all channels and pixels), clipped, truncated; then the same Inception resize.
- `maskgit_v2` (Halton-MaskGIT, facts §9.2): clamp, x 255 in float, each channel resized to 299x299 by PIL bicubic
  on float data (clean-fid's "PIL, quantize after"), clipped to [0, 255], then truncated to uint8; the Inception
  resize is then the identity.

Inputs follow the project convention (images in [0, 1]); the official code takes [-1, 1] images x and uses
(x + 1) / 2, the same values. Min-max normalisation is unchanged by that affine map up to float rounding.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from evaluation.inception import INPUT_SIZE, to_uint8

PROTOCOLS = ("adm", "maskgit_v1", "maskgit_v2")


def minmax_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float -> uint8: (x - min) / (max - min) * 255 per image, clipped to [0, 255], truncated."""
    x = images.float()
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x - low) / (high - low) * 255).clip(0, 255).to(torch.uint8)


def pil_bicubic_float(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float32 -> (size, size) float32: PIL bicubic resize in mode F (no quantisation), clipped to [0, 255]."""
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize((size, size), Image.BICUBIC)
    return np.asarray(resized).clip(0, 255)


def bicubic299_uint8(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> uint8 (B, 3, size, size): clip(x * 255) in float32, PIL bicubic per channel,
    clip, truncate."""
    x = (images.detach().float().cpu() * 255).clip(0, 255).numpy()
    out = np.stack([np.stack([pil_bicubic_float(channel, size) for channel in image]) for image in x])
    return torch.from_numpy(out).to(device=images.device, dtype=torch.uint8)


def to_uint8_protocol(images: torch.Tensor, protocol: str = "adm") -> torch.Tensor:
    """Generated images (B, 3, H, W) in [0, 1] -> the uint8 batch that `protocol` feeds to Inception."""
    if protocol == "adm":
        return to_uint8(images)
    if protocol == "maskgit_v1":
        return minmax_uint8(images)
    if protocol == "maskgit_v2":
        return bicubic299_uint8(images)
    raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
