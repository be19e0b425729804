"""SyntheticImages: determinism, shapes, and classes that a simple classifier can tell apart."""
import numpy as np
import pytest
from PIL import Image

from data.synthetic import CLASS_NAMES, SyntheticImages


def test_samples_are_deterministic_rgb_images_with_cycling_labels():
    a, b = SyntheticImages(resolution=24, seed=5), SyntheticImages(resolution=24, seed=5)
    image, label = a[13]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (24, 24)
    assert label == 3 and [a[i][1] for i in range(12)] == [i % 10 for i in range(12)]
    for i in (0, 7, 13, 9999):
        assert np.array_equal(a.render(i), b.render(i))
    assert np.array_equal(np.asarray(a[-1][0]), a.render(len(a) - 1))


def test_seed_split_and_index_change_the_images():
    base = SyntheticImages(resolution=32, seed=0)
    assert not np.array_equal(base.render(3), SyntheticImages(resolution=32, seed=1).render(3))
    assert not np.array_equal(base.render(3), SyntheticImages(resolution=32, seed=0, split="val").render(3))
    same_class = [base.render(i).astype(float) for i in (4, 14, 24)]  # class 4, different samples
    assert min(np.abs(x - y).mean() for x in same_class for y in same_class if x is not y) > 10


@pytest.mark.parametrize("resolution", [8, 17, 96])
def test_any_resolution(resolution):
    array = SyntheticImages(resolution=resolution, num_classes=3).render(2)
    assert array.shape == (resolution, resolution, 3) and array.dtype == np.uint8
    assert array.std() > 5  # not a flat image


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticImages(num_classes=len(CLASS_NAMES) + 1)
    with pytest.raises(ValueError, match="split"):
        SyntheticImages(split="test")
    with pytest.raises(IndexError):
        SyntheticImages(num_samples=4)[4]


def _spectrum_features(dataset, count):
    """Translation- and colour-invariant features: log magnitude spectrum of the standardised grey image."""
    features = []
    for i in range(count):
        grey = dataset.render(i).astype(np.float64).mean(-1)
        spectrum = np.abs(np.fft.fft2((grey - grey.mean()) / (grey.std() + 1e-6)))
        spectrum[0, 0] = 0
        f = np.log1p(spectrum).ravel()
        features.append(f / np.linalg.norm(f))
    return np.c_[np.array(features), np.ones(count)]


def test_classes_are_distinct_for_a_linear_classifier():
    train = _spectrum_features(SyntheticImages(resolution=32, seed=0), 400)
    held_out = _spectrum_features(SyntheticImages(resolution=32, seed=0, split="val"), 200)
    targets = np.eye(10)[np.arange(400) % 10]
    weights = np.linalg.solve(train.T @ train + 0.1 * np.eye(train.shape[1]), train.T @ targets)
    accuracy = ((held_out @ weights).argmax(1) == np.arange(200) % 10).mean()
    assert accuracy > 0.75  # chance is 0.1; measured 0.88 (circle/square/triangle are the hard ones)
