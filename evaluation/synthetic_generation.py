"""Judging class-conditional generation on the synthetic dataset with `SyntheticClassifier` (no downloads).

Metrics, all in the classifier's penultimate feature space:
- class consistency: accuracy of the classifier on samples generated for a requested class (also per class);
- Fréchet distance (FD) between generated and held-out images (all classes pooled);
- per-class FD: mean over classes c of FD(generated c, held-out c); with `shuffle`, held-out classes are
  paired with the wrong generated classes (a baseline that ignores conditioning scores far worse).
And one in pixel space, because the classifier's features hardly see colour: the within-class diversity ratio,
the mean pairwise distance between samples of a class over that between held-out images of the class (a
generator that repeats one image per class scores near 0; one as varied as the data near 1).
"""
from __future__ import annotations

from typing import Optional

import torch

from evaluation.frechet import frechet_distance
from evaluation.synthetic_classifier import SyntheticClassifier, feature_statistics, predict
from modeling.sampling import SamplingConfig, sample_grid


def pooled_frechet(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def per_class_frechet(features: torch.Tensor, labels: torch.Tensor, ref_features: torch.Tensor,
                      ref_labels: torch.Tensor, num_classes: int, shift: int = 0) -> float:
    """Mean over classes c of FD(features of class c, reference features of class (c + shift) % num_classes)."""
    distances = [pooled_frechet(features[labels == c], ref_features[ref_labels == (c + shift) % num_classes])
                 for c in range(num_classes)]
    return float(sum(distances) / num_classes)


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean RMS pixel distance over all pairs of distinct images (N >= 2, C, H, W)."""
    if len(images) < 2:
        raise ValueError(f"a mean pairwise distance needs at least 2 images, got {len(images)}")
    flat = images.flatten(1).double()
    distances = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    n = len(flat)
    return float(distances.sum() / (n * (n - 1)))


def within_class_diversity(images: torch.Tensor, labels: torch.Tensor, ref_images: torch.Tensor,
                           ref_labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class c: mean pairwise distance of `images` of class c over that of `ref_images` of class c."""
    return [mean_pairwise_distance(images[labels == c]) / mean_pairwise_distance(ref_images[ref_labels == c])
            for c in range(num_classes)]


def generate_per_class(generator, tokenizer, num_classes: int, per_class: int,
                       settings: Optional[SamplingConfig] = None, seed: int = 0,
                       batch_size: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` samples of every class (sample k with seed `seed + k`), clamped to [0, 1] ->
    (images (C*per_class, 3, H, W), labels (C*per_class,))."""
    images = sample_grid(generator, tokenizer, range(num_classes), per_class, seed, batch_size, settings)
    return images, torch.arange(num_classes).repeat_interleave(per_class)


def evaluate_generation(classifier: SyntheticClassifier, images: torch.Tensor, labels: torch.Tensor,
                        ref_images: torch.Tensor, ref_labels: torch.Tensor, num_classes: int,
                        ref_features: Optional[torch.Tensor] = None) -> dict:
    """Class consistency, pooled FD, per-class FD and within-class diversity of generated `images` (N, 3, H, W)
    against held-out `ref_images`; every class needs at least two images on both sides."""
    predicted, features = predict(classifier, images)
    if ref_features is None:
        ref_features = predict(classifier, ref_images)[1]
    correct = (predicted == labels).float()
    diversity = within_class_diversity(images, labels, ref_images, ref_labels, num_classes)
    return {
        "class_consistency": float(correct.mean()),
        "per_class_consistency": [float(correct[labels == c].mean()) for c in range(num_classes)],
        "frechet_distance": pooled_frechet(features, ref_features),
        "per_class_frechet_distance": per_class_frechet(features, labels, ref_features, ref_labels, num_classes),
        "per_class_frechet_distance_class_shuffled": per_class_frechet(features, labels, ref_features, ref_labels,
                                                                       num_classes, shift=1),
        "within_class_diversity": sum(diversity) / num_classes,
        "per_class_within_class_diversity": diversity,
    }
