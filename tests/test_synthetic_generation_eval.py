"""The quickstart's offline judge: a small classifier and its class consistency / Fréchet distances."""
import numpy as np
import torch

from data.synthetic import SyntheticImages
from evaluation.synthetic_classifier import predict, train_classifier
from evaluation.synthetic_generation import evaluate_generation, within_class_diversity


def _images(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = SyntheticImages(resolution=16, seed=0, split=split)
    images = np.stack([ds.render(i) for i in range(count)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, torch.arange(count) % 10


def test_real_images_score_high_and_wrong_labels_score_low():
    train_images, train_labels = _images("train", 600)
    val_images, val_labels = _images("val", 200)
    classifier = train_classifier(train_images, train_labels, 10, epochs=10)
    real = evaluate_generation(classifier, val_images[:100], val_labels[:100], val_images[100:], val_labels[100:], 10)
    wrong = evaluate_generation(classifier, val_images[:100], (val_labels[:100] + 1) % 10, val_images[100:],
                                val_labels[100:], 10)
    assert real["class_consistency"] > 0.6 and wrong["class_consistency"] < 0.2
    assert len(real["per_class_consistency"]) == 10
    assert np.isclose(np.mean(real["per_class_consistency"]), real["class_consistency"])  # 10 samples per class
    # the same pooled images, so the same pooled FD; per class, the right pairing is far closer than the shifted one
    assert np.isclose(real["frechet_distance"], wrong["frechet_distance"])
    assert real["per_class_frechet_distance"] < 0.7 * real["per_class_frechet_distance_class_shuffled"]
    assert predict(classifier, val_images)[1].shape == (200, 128)


def test_within_class_diversity_is_near_one_for_real_images_and_zero_for_repeats():
    val_images, val_labels = _images("val", 200)
    real = within_class_diversity(val_images[:100], val_labels[:100], val_images[100:], val_labels[100:], 10)
    assert len(real) == 10 and all(0.7 < r < 1.4 for r in real)
    repeats = val_images[:10].repeat(10, 1, 1, 1)  # one image per class, ten times (labels 0..9 cycle)
    repeats[:, :, 0, 0] += torch.linspace(0, 0.01, 100)[:, None]  # barely different copies
    collapsed = within_class_diversity(repeats, torch.arange(100) % 10, val_images[100:], val_labels[100:], 10)
    assert all(r < 0.05 for r in collapsed)
    half = within_class_diversity(val_images[:100] * 0.5, val_labels[:100], val_images[100:], val_labels[100:], 10)
    assert np.allclose(half, np.array(real) * 0.5)  # distances scale with the pixel values
