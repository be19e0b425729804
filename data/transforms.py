"""Image decoding and the official train/eval transforms, with the randomness drawn from an explicit generator.

MaskBit train (use_random_crop): RandomResizedCrop(R, scale=(min_scale, 1), ratio=(3/4, 4/3) or (1, 1)) ->
horizontal flip with p=0.5 -> ToTensor. MaskBit train (not use_random_crop): Resize(R) -> CenterCrop(R) -> ToTensor
(no flip, as in the official code). TiTok train (`resize_shorter_edge` set): Resize(shorter edge) -> RandomCrop(R)
or CenterCrop(R) (`random_crop`) -> horizontal flip (`random_flip`) -> ToTensor. Eval: Resize(R) (shorter side) ->
CenterCrop(R) -> ToTensor. PIL resizing throughout (PIL always antialiases, as the official `antialias=True`).

`TrainTransform(image, generator)` / `ResizeCropTransform(image, generator)` make exactly the torch RNG calls of
torchvision's RandomResizedCrop / RandomCrop and RandomHorizontalFlip, but on `generator` instead of the global
RNG, so a sample's augmentation depends only on its own seed. Transforms return uint8 (3, R, R); `to_float` gives
the [0, 1] float32 of ToTensor (x / 255).

Why PIL and not torchvision.io.decode_jpeg + tensor resize (issue 17; `scripts/benchmark_data.py
--compare-decoders`): on the 100 ImageNet JPEGs of the shared samples at 256 px both decoders give identical pixels,
and the antialiased tensor resize differs from PIL's by at most 1 level (max |diff| 1/255, mean 0.165 levels): within
tolerance, but not the official pixels. And per core it is slower: on a quiet moment of our 2-core machine (load
average 1.4) PIL did 339 / 369 images/s (eval resize + crop / train resized crop, decode included) and the tensor
path 282 / 318. So the official PIL path stays.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grayscale PNG/TIFF decode to these


def decode_image(data: bytes) -> Image.Image:
    """Encoded image bytes (jpg/png/webp/...) -> fully decoded RGB PIL image; damaged data raises.

    Palette, CMYK, grayscale and alpha images convert as PIL's `convert("RGB")` does (alpha dropped, like the
    official pipeline). 16-bit grayscale is rescaled to 8 bits (v / 257, rounded): PIL's own conversion clips
    every value above 255, which turns such an image almost white."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decode now, so that truncated data fails here and not later
        if image.mode in HIGH_BIT_DEPTH_MODES:
            values = np.asarray(image, dtype=np.float64)
            image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")
        return image.convert("RGB")


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1], bit-identical to torchvision's ToTensor."""
    return images.to(torch.float32).div(255)


def _interpolation(name: str) -> InterpolationMode:
    if name not in INTERPOLATIONS:
        raise ValueError(f"dataset.preprocessing.interpolation must be one of {list(INTERPOLATIONS)}, got {name!r}")
    return INTERPOLATIONS[name]


class EvalTransform:
    """Resize the shorter side to `resolution`, center crop `resolution` x `resolution`; -> uint8 (3, R, R)."""

    def __init__(self, resolution: int, interpolation: str = "bilinear"):
        self.resolution, self.interpolation = resolution, _interpolation(interpolation)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = TF.resize(image, self.resolution, self.interpolation)
        return pil_to_uint8(TF.center_crop(image, self.resolution))


class TrainTransform:
    """Random resized crop + flip (or resize + center crop); `__call__(image, generator)` -> uint8 (3, R, R)."""

    def __init__(self, resolution: int, min_scale: float = 0.8, use_aspect_ratio_aug: bool = True,
                 use_random_crop: bool = True, interpolation: str = "bilinear"):
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"dataset.preprocessing.min_scale must be in (0, 1], got {min_scale}")
        if not use_random_crop and (min_scale != 1.0 or use_aspect_ratio_aug):
            raise ValueError("dataset.preprocessing.use_random_crop=false (resize + center crop) requires "
                             f"min_scale=1.0 and use_aspect_ratio_aug=false; got min_scale={min_scale}, "
                             f"use_aspect_ratio_aug={use_aspect_ratio_aug}")
        self.resolution, self.interpolation = resolution, _interpolation(interpolation)
        self.use_random_crop = use_random_crop
        self.scale = (min_scale, 1.0)
        self.ratio = (3.0 / 4.0, 4.0 / 3.0) if use_aspect_ratio_aug else (1.0, 1.0)
        self._center = EvalTransform(resolution, interpolation)

    def crop_params(self, width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop: torchvision's RandomResizedCrop.get_params on `generator`."""
        area = height * width
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(self.scale[0], self.scale[1], generator=generator).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
                left = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
                return top, left, h, w
        in_ratio = width / height  # fallback: the largest central crop within the ratio range
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        if not self.use_random_crop:
            return self._center(image)
        top, left, h, w = self.crop_params(image.width, image.height, generator)
        image = TF.resized_crop(image, top, left, h, w, [self.resolution, self.resolution], self.interpolation)
        if torch.rand(1, generator=generator) < 0.5:
            image = TF.hflip(image)
        return pil_to_uint8(image)


class ResizeCropTransform:
    """TiTok's train transform: Resize(shorter edge) -> RandomCrop or CenterCrop -> optional flip; -> uint8 (3, R, R).

    `__call__(image, generator)` draws as torchvision's RandomCrop (top, then left, each `randint(0, n + 1)`) and
    RandomHorizontalFlip (`rand(1) < 0.5`), on `generator`.
    """

    def __init__(self, resolution: int, resize_shorter_edge: int, random_crop: bool = True, random_flip: bool = True,
                 interpolation: str = "bicubic"):
        if resize_shorter_edge < resolution:
            raise ValueError(f"dataset.preprocessing.resize_shorter_edge ({resize_shorter_edge}) must be >= the crop "
                             f"size ({resolution}): the crop would not fit in the resized image")
        self.resolution, self.resize_shorter_edge = resolution, resize_shorter_edge
        self.random_crop, self.random_flip = random_crop, random_flip
        self.interpolation = _interpolation(interpolation)

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        image = TF.resize(image, self.resize_shorter_edge, self.interpolation)
        if self.random_crop:
            top = torch.randint(0, image.height - self.resolution + 1, size=(1,), generator=generator).item()
            left = torch.randint(0, image.width - self.resolution + 1, size=(1,), generator=generator).item()
            image = TF.crop(image, top, left, self.resolution, self.resolution)
        else:
            image = TF.center_crop(image, self.resolution)
        if self.random_flip and torch.rand(1, generator=generator) < 0.5:
            image = TF.hflip(image)
        return pil_to_uint8(image)


def transforms_from_config(preprocessing) -> tuple[TrainTransform | ResizeCropTransform, EvalTransform]:
    """(train, eval) transforms from the `dataset.preprocessing` config section: TiTok's resize-then-crop when
    `resize_shorter_edge` is set, else MaskBit's."""
    p = preprocessing
    if p.resize_shorter_edge is not None:
        train = ResizeCropTransform(p.resolution, p.resize_shorter_edge,
                                    True if p.random_crop is None else p.random_crop,
                                    True if p.random_flip is None else p.random_flip, p.interpolation)
    elif p.random_crop is not None or p.random_flip is not None:
        raise ValueError("dataset.preprocessing.random_crop / random_flip are TiTok's resize-then-crop options and "
                         "need dataset.preprocessing.resize_shorter_edge (e.g. 256); without it the MaskBit "
                         "transform is used: set use_random_crop / min_scale instead")
    else:
        train = TrainTransform(p.resolution, p.min_scale, p.use_aspect_ratio_aug, p.use_random_crop, p.interpolation)
    return train, EvalTransform(p.resolution, p.interpolation)
