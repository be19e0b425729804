"""DataLoaders for training and evaluation, built from the `dataset` config section and explicit arguments.

    train = build_train_dataloader(cfg.dataset, batch_size=32, seed=42, rank=r, world_size=w,
                                   start_batch=global_step * grad_accum)
    for batch in train: ...        # infinite; batch["image"] (B, 3, R, R) float32 in [0, 1]
    evaluation = build_eval_dataloader(cfg.dataset, batch_size=32, rank=r, world_size=w)   # each image read once
    images, class_ids = load_eval_images(cfg.dataset)   # a small eval set as two tensors (the quickstart's)

Keys read: dataset.params.{source, train_shards_path_or_url, eval_shards_path_or_url, shuffle_buffer_size,
num_workers_per_gpu, pin_memory, persistent_workers} and dataset.preprocessing.*. `loader.dataset.num_skipped`
counts unreadable samples skipped so far.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from data.image_folder import ImageFolderSource
from data.streams import EvalStream, SampleSource, TrainStream
from data.transforms import transforms_from_config
from data.webdataset_reader import ShardSource

SOURCES = ("webdataset", "image_folder")


def build_source(dataset, split: str) -> SampleSource:
    """The sample source of `split` ('train' or 'eval') named by the `dataset.params` section."""
    params = dataset.params
    key = f"{split}_shards_path_or_url"
    location = params[key]
    if not location:
        raise ValueError(f"dataset.params.{key} is empty; set it to a shard pattern such as "
                         f"'DIR/{split}/imagenet-{split}-{{0000..0009}}.tar' or, with source=image_folder, a folder")
    if params.source == "webdataset":
        return ShardSource(location, params.shuffle_buffer_size, remote_cache_dir=params.shard_cache_dir)
    if params.source == "image_folder":
        return ImageFolderSource(location)
    raise ValueError(f"dataset.params.source must be one of {list(SOURCES)}, got {params.source!r}")


def _loader(stream, params, num_workers: int) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=num_workers,
                      pin_memory=bool(params.pin_memory) and torch.cuda.is_available(),
                      persistent_workers=bool(params.persistent_workers) and num_workers > 0)


def build_train_dataloader(dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                           start_batch: int = 0) -> DataLoader:
    """Infinite train batches of `batch_size` for process `rank`, starting at batch `start_batch` (counted in this
    process's batches: yields exactly what a fresh loader yields from its `start_batch`-th batch)."""
    train_transform, _ = transforms_from_config(dataset.preprocessing)
    stream = TrainStream(build_source(dataset, "train"), train_transform, batch_size, seed, rank, world_size,
                         start_batch)
    return _loader(stream, dataset.params, dataset.params.num_workers_per_gpu)


def build_eval_dataloader(dataset, batch_size: int, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Ordered eval batches (last one partial) of process `rank`'s share of the eval set; over all processes and
    workers every image is read exactly once."""
    _, eval_transform = transforms_from_config(dataset.preprocessing)
    stream = EvalStream(build_source(dataset, "eval"), eval_transform, batch_size, rank, world_size)
    return _loader(stream, dataset.params, dataset.params.num_workers_per_gpu)


def load_eval_images(dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of the eval set, read in this process with the eval transform -> images (N, 3, R, R) in [0, 1]
    and class ids (N,). Meant for small sets (the quickstart's synthetic ones); the whole set is held in memory."""
    images, class_ids = [], []
    for batch in build_eval_dataloader(dataset, batch_size):
        images.append(batch["image"])
        class_ids.append(batch["class_id"])
    return torch.cat(images), torch.cat(class_ids)
