"""A folder of images, `root/<class_name>/*.{jpg,jpeg,png,webp}`, as a sample source.

Class ids are the positions of the class folders in sorted order (torchvision ImageFolder order); files are
listed in sorted order within each class. Train references: one seeded permutation of all files per epoch,
shared by all slots, and slot s of S takes every S-th entry of it (so each epoch is covered exactly once across
processes and workers). Eval references: all files in order. Keys are '<class_name>/<file stem>'.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from data.streams import EPOCH_STREAM, derive_seed
from utils.errors import MaskbitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class ImageFolderSource:
    """Images of `root/<class_name>/` folders."""

    def __init__(self, root: str):
        root = os.path.expanduser(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder '{root}' does not exist (dataset.params.source=image_folder "
                                    f"expects root/<class_name>/*.jpg)")
        self.root = root
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        self.files: list[tuple[str, int]] = []
        for class_id, name in enumerate(self.classes):
            folder = os.path.join(root, name)
            names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
            self.files.extend((os.path.join(folder, f), class_id) for f in names)
        if not self.files:
            raise FileNotFoundError(f"no images ({'/'.join(IMAGE_SUFFIXES)}) found in class folders of '{root}'; "
                                    f"expected root/<class_name>/<image> files")

    def __len__(self) -> int:
        return len(self.files)

    def train_refs(self, seed: int, slot: int, num_slots: int) -> Iterator[int]:
        if len(self.files) < num_slots:
            raise ValueError(f"image folder '{self.root}' has {len(self.files)} images, fewer than the "
                             f"{num_slots} processes x workers reading it; use fewer workers")
        for epoch in range(2**62):
            permutation = np.random.default_rng(derive_seed(EPOCH_STREAM, seed, epoch)).permutation(len(self.files))
            yield from permutation[slot::num_slots].tolist()

    def eval_refs(self) -> range:
        return range(len(self.files))

    def load(self, ref: int) -> tuple[str, bytes, int]:
        path, class_id = self.files[ref]
        key = os.path.splitext(os.path.relpath(path, self.root))[0]
        with open(path, "rb") as f:
            return key, f.read(), class_id


IMAGE_FILE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}  # inputs of scripts that take loose image files


def list_image_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else the image files under the folder `path` (recursive, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MaskbitError(f"input '{path}' does not exist; pass an image file or a folder of images")
    images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_FILE_SUFFIXES)
    if not images:
        raise MaskbitError(f"no images ({', '.join(sorted(IMAGE_FILE_SUFFIXES))}) found under '{path}'")
    return images
