"""Train/eval transforms: bit-identical to the official torchvision pipelines, seeded by an explicit generator."""
import io

import pytest
import torch
from torchvision import transforms as T

from data.synthetic import SyntheticImages
from data.transforms import (INTERPOLATIONS, EvalTransform, ResizeCropTransform, TrainTransform, decode_image,
                             to_float, transforms_from_config)
from utils.config import as_config

IMAGE = SyntheticImages(resolution=64, seed=2)[5][0].resize((57, 41))  # non-square, so crops vary in shape


@pytest.mark.parametrize("interpolation,aspect", [("bilinear", True), ("bicubic", False)])
def test_train_transform_equals_torchvision_given_the_same_seed(interpolation, aspect):
    ratio = (3 / 4, 4 / 3) if aspect else (1.0, 1.0)
    official = T.Compose([T.RandomResizedCrop(24, scale=(0.3, 1.0), ratio=ratio,
                                              interpolation=INTERPOLATIONS[interpolation]),
                          T.RandomHorizontalFlip(), T.ToTensor()])
    ours = TrainTransform(24, min_scale=0.3, use_aspect_ratio_aug=aspect, interpolation=interpolation)
    outputs = []
    for seed in range(12):
        torch.manual_seed(seed)
        expected = official(IMAGE)
        actual = to_float(ours(IMAGE, torch.Generator().manual_seed(seed)))
        assert actual.shape == (3, 24, 24) and actual.dtype == torch.float32
        assert torch.equal(actual, expected)
        outputs.append(actual)
    assert len({tuple(o.flatten()[:50].tolist()) for o in outputs}) > 6  # the seed matters


def test_train_transform_uses_only_its_generator():
    transform = TrainTransform(16)
    torch.manual_seed(0)
    a = transform(IMAGE, torch.Generator().manual_seed(9))
    torch.manual_seed(1)
    b = transform(IMAGE, torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and a.dtype == torch.uint8


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_eval_transform_equals_torchvision(interpolation):
    mode = INTERPOLATIONS[interpolation]
    official = T.Compose([T.Resize(20, interpolation=mode), T.CenterCrop(20), T.ToTensor()])
    actual = to_float(EvalTransform(20, interpolation)(IMAGE))
    assert torch.equal(actual, official(IMAGE)) and 0.0 <= actual.min() and actual.max() <= 1.0


def test_center_crop_training_mode_needs_scale_one_and_no_aspect_augmentation():
    with pytest.raises(ValueError, match="min_scale=1.0 and use_aspect_ratio_aug=false"):
        TrainTransform(16, min_scale=0.8, use_aspect_ratio_aug=False, use_random_crop=False)
    with pytest.raises(ValueError, match="use_aspect_ratio_aug"):
        TrainTransform(16, min_scale=1.0, use_aspect_ratio_aug=True, use_random_crop=False)
    center = TrainTransform(16, min_scale=1.0, use_aspect_ratio_aug=False, use_random_crop=False)
    expected = EvalTransform(16)(IMAGE)  # official: resize + center crop, no flip
    for seed in range(4):
        assert torch.equal(center(IMAGE, torch.Generator().manual_seed(seed)), expected)
    with pytest.raises(ValueError, match="interpolation"):
        TrainTransform(16, interpolation="lanczos")


@pytest.mark.parametrize("random_crop,random_flip", [(True, True), (False, True), (True, False)])
def test_titok_resize_then_crop_equals_torchvision_given_the_same_seed(random_crop, random_flip):
    bicubic = INTERPOLATIONS["bicubic"]
    official = T.Compose([T.Resize(30, interpolation=bicubic, antialias=True),
                          T.RandomCrop(24) if random_crop else T.CenterCrop(24),
                          T.RandomHorizontalFlip(p=0.5 if random_flip else 0.0), T.ToTensor()])
    ours = ResizeCropTransform(24, resize_shorter_edge=30, random_crop=random_crop, random_flip=random_flip)
    outputs = set()
    for seed in range(10):
        torch.manual_seed(seed)
        expected = official(IMAGE)
        actual = to_float(ours(IMAGE, torch.Generator().manual_seed(seed)))
        assert torch.equal(actual, expected)
        outputs.add(tuple(actual.flatten()[::7].tolist()))
    assert len(outputs) == 2 if not random_crop else len(outputs) > 2  # center crop: the image or its mirror


def test_titok_transform_from_config_and_its_errors():
    def prep(**keys):
        return as_config({"dataset": {"preprocessing": {"resolution": 24, **keys}}}).dataset.preprocessing

    train, _ = transforms_from_config(prep(resize_shorter_edge=30, random_crop=False, interpolation="bicubic"))
    assert isinstance(train, ResizeCropTransform) and not train.random_crop and train.random_flip
    assert isinstance(transforms_from_config(prep())[0], TrainTransform)  # the MaskBit transform by default
    with pytest.raises(ValueError, match="need dataset.preprocessing.resize_shorter_edge"):
        transforms_from_config(prep(random_flip=True))
    with pytest.raises(ValueError, match="must be >= the crop size"):
        transforms_from_config(prep(resize_shorter_edge=16))


@pytest.mark.parametrize("fmt,mode", [("PNG", "L"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("PNG", "RGBA")])
def test_decode_converts_any_format_to_rgb(fmt, mode):
    buffer = io.BytesIO()
    IMAGE.convert(mode).save(buffer, format=fmt)
    image = decode_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == IMAGE.size


def test_decode_rejects_truncated_data():
    buffer = io.BytesIO()
    IMAGE.save(buffer, format="JPEG")
    with pytest.raises(OSError):
        decode_image(buffer.getvalue()[: len(buffer.getvalue()) // 2])
