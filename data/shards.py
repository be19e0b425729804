"""Writing webdataset tar shards in the official layout.

    paths = write_shards(samples, "out/train", split="train")     # out/train/imagenet-train-0000.tar, ...
    write_synthetic_shards("out", num_train=2000, num_val=200, resolution=64, seed=0)
    # -> {"train": "out/train/imagenet-train-{0000..0000}.tar", "val": "out/val/imagenet-val-{0000..0000}.tar"}

Each sample is two members, `<key>.cls` (class id as ASCII digits) and `<key>.<jpg|png|webp>` (image bytes),
like the official `create_sharded_dataset.py` (webdataset `ShardWriter`, maxcount 5079, maxsize 1e9). Members get
a fixed mtime so the same input always gives byte-identical shards; a shard is written under a temporary name
and renamed when complete, so an interrupted run never leaves a truncated `.tar` behind.
"""
from __future__ import annotations

import io
import os
import tarfile
from typing import Iterable, Optional, Union

from PIL import Image

from data.synthetic import SyntheticImages
from utils.atomic import fsync_path
from utils.errors import MaskbitError

SHARD_NAME = "imagenet-{split}-%04d.tar"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_MTIME = 1_700_000_000  # fixed member timestamp: reproducible shard bytes
ImageLike = Union[bytes, Image.Image]


class ClassIdError(MaskbitError, ValueError):
    """A class id outside [0, num_classes)."""


def encode_image(image: Image.Image, image_format: str = "png", quality: int = 95) -> bytes:
    """PIL image -> PNG (lossless) or JPEG (`quality`, 4:4:4 chroma) bytes."""
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG")
    elif image_format in ("jpg", "jpeg"):
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, subsampling=0)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    return buffer.getvalue()


def brace_pattern(directory: str, split: str, num_shards: int) -> str:
    """Brace pattern naming shards 0..num_shards-1, e.g. 'dir/imagenet-train-{0000..0252}.tar'."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return os.path.join(directory, f"imagenet-{split}-{{0000..{num_shards - 1:04d}}}.tar")


class ShardWriter:
    """Writes samples into `directory/imagenet-{split}-%04d.tar`, starting a new shard every `maxcount` samples
    or once a shard holds `maxsize` bytes of data. Use as a context manager; `paths` lists the finished shards.
    With `num_classes`, a class id outside [0, num_classes) is refused before it is written."""

    def __init__(self, directory: str, split: str, maxcount: int = 5079, maxsize: float = 1e9,
                 num_classes: Optional[int] = None):
        if maxcount < 1:
            raise ValueError(f"maxcount must be >= 1, got {maxcount}")
        os.makedirs(directory, exist_ok=True)
        self.pattern = os.path.join(directory, SHARD_NAME.format(split=split))
        self.maxcount, self.maxsize, self.num_classes = maxcount, maxsize, num_classes
        self.paths: list[str] = []
        self._tar: Optional[tarfile.TarFile] = None
        self._count = self._size = 0

    def write(self, key: str, image: bytes, class_id: int, ext: str = "jpg") -> None:
        """Append one sample: `image` is encoded image bytes with extension `ext`."""
        if not key or "." in os.path.basename(key):
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' (webdataset splits "
                             f"member names at the first dot)")
        if ext not in IMAGE_EXTENSIONS:
            raise ValueError(f"image extension must be one of {IMAGE_EXTENSIONS}, got {ext!r}")
        if self.num_classes is not None and not 0 <= int(class_id) < self.num_classes:
            raise ClassIdError(f"sample {key!r} has class id {class_id}, outside [0, {self.num_classes}); fix the "
                               f"labels (or the class count) before writing shards")
        if self._tar is None or self._count >= self.maxcount or self._size >= self.maxsize:
            self._next_shard()
        for member_ext, data in (("cls", str(int(class_id)).encode("ascii")), (ext, bytes(image))):
            info = tarfile.TarInfo(f"{key}.{member_ext}")
            info.size, info.mtime, info.mode = len(data), _MTIME, 0o444
            info.uname = info.gname = "bigdata"
            self._tar.addfile(info, io.BytesIO(data))
            self._size += len(data)
        self._count += 1

    def _next_shard(self) -> None:
        self._finish_shard()
        path = self.pattern % len(self.paths)
        self._tar = tarfile.open(path + ".tmp", "w", format=tarfile.USTAR_FORMAT)
        self.paths.append(path)
        self._count = self._size = 0

    def _finish_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            fsync_path(self.paths[-1] + ".tmp")
            os.replace(self.paths[-1] + ".tmp", self.paths[-1])
            fsync_path(os.path.dirname(self.paths[-1]) or ".")
            self._tar = None

    def close(self) -> None:
        self._finish_shard()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_shards(samples: Iterable[tuple[str, ImageLike, int]], directory: str, split: str, maxcount: int = 5079,
                 maxsize: float = 1e9, image_format: str = "png", num_classes: Optional[int] = None) -> list[str]:
    """Write (key, image, class_id) samples to shards; `image` is encoded bytes (written as they are, with
    extension `image_format`) or a PIL image (encoded as `image_format`). Returns the shard paths in order."""
    with ShardWriter(directory, split, maxcount, maxsize, num_classes) as writer:
        for key, image, class_id in samples:
            data = encode_image(image, image_format) if isinstance(image, Image.Image) else image
            writer.write(key, data, class_id, ext=image_format)
    return writer.paths


def write_synthetic_shards(output_dir: str, num_train: int, num_val: int, resolution: int = 64, seed: int = 0,
                           num_classes: int = 10, maxcount: int = 5079, image_format: str = "png") -> dict[str, str]:
    """Render `SyntheticImages` into output_dir/{train,val}/imagenet-{split}-%04d.tar (lossless PNG by default;
    'jpg' = JPEG quality 95). Returns {"train": pattern, "val": pattern} for dataset.params.*_shards_path_or_url
    (a split with 0 samples is not written and has no entry)."""
    patterns = {}
    for split, count in (("train", num_train), ("val", num_val)):
        if count <= 0:
            continue
        dataset = SyntheticImages(num_classes, resolution, seed, num_samples=count, split=split)
        samples = ((f"{i:07d}", *dataset[i]) for i in range(count))
        directory = os.path.join(output_dir, split)
        paths = write_shards(samples, directory, split, maxcount=maxcount, image_format=image_format,
                             num_classes=num_classes)
        patterns[split] = brace_pattern(directory, split, len(paths))
    return patterns
