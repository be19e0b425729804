"""A small CNN classifier that judges class-conditional samples when no pretrained network is available.

The quickstart trains it on the synthetic training images and uses it as an offline stand-in for Inception:
class consistency (its accuracy on samples generated for a requested class) and a Fréchet distance in its
penultimate feature space.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class SyntheticClassifier(nn.Module):
    """conv stack -> global average pool -> linear; works at any resolution >= 16 px."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.GroupNorm(8, width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.GroupNorm(8, 4 * width), nn.ReLU(),
            nn.Conv2d(4 * width, 4 * width, 3, padding=1), nn.GroupNorm(8, 4 * width), nn.ReLU(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> (B, 4*width) pooled features."""
        return self.body(images * 2 - 1).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 4,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> SyntheticClassifier:
    """Fit on (N, 3, H, W) images in [0, 1] with random flips; returns the model in eval mode."""
    torch.manual_seed(seed)
    model = SyntheticClassifier(num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for index in _batches(len(images), batch_size, generator):
            x = images[index]
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: SyntheticClassifier, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (predicted labels (N,), features (N, D) float64)."""
    preds, feats = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(images[start:start + batch_size].clamp(0, 1))
        preds.append(model.head(f).argmax(-1))
        feats.append(f.double())
    return torch.cat(preds), torch.cat(feats)


def feature_statistics(features: torch.Tensor) -> tuple:
    """(N, D) features -> (mu (D,), sigma (D, D)) as float64 numpy arrays (covariance with N-1)."""
    x = features.double().numpy()
    mu = x.mean(axis=0)
    centered = x - mu
    return mu, centered.T @ centered / max(len(x) - 1, 1)
