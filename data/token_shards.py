"""Pre-tokenized training data: token shards written by `scripts/pretokenize.py`, read back as a resumable stream.

A token folder holds `tokens_meta.json` and one shard per pretokenizing process, `tokens-<rank>.npy`: a
structured numpy array (memory-mapped when read) with one record per image,

    index     int64              position of the image in the source's sample order
    class_id  int32              class label (-1: the image could not be read and is left out)
    tokens    uint16 / int32     (num_views, *grid) tokenizer indices of `num_views` augmented views; grid is
                                 (h, w) for 2D tokenizers, (N,) for 1D ones (TiTok)

Train stream (`TokenStream`). Epoch e visits every image once in a seeded permutation: process r of W takes the
images at permutation positions r, r + W, r + 2W, ... (the remainder of len // W is dropped, so every process
has the same epoch length) and, for each image, the view drawn for (seed, e, image). Process r's sample p is
therefore a pure function of (seed, r, W, p): `start_batch=n` starts exactly at batch n, with no skipping work.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from data.streams import derive_seed
from utils.atomic import atomic_write_text, fsync_path

META_FILE = "tokens_meta.json"
SHARD_NAME = "tokens-{rank:04d}.npy"
FORMAT = "maskbit-tokens-v1"
EPOCH_STREAM, VIEW_STREAM = 10, 11  # derived-seed tags, apart from those of data.streams


def token_dtype(token_bits: int) -> np.dtype:
    return np.dtype("<u2") if token_bits <= 16 else np.dtype("<i4")


def record_dtype(num_views: int, grid: tuple[int, ...], token_bits: int) -> np.dtype:
    return np.dtype([("index", "<i8"), ("class_id", "<i4"), ("tokens", token_dtype(token_bits), (num_views, *grid))])


class TokenShardWriter:
    """Fills `directory/tokens-<rank>.npy` with `num_images` records, written under a temporary name and renamed
    by `close()`, so an interrupted run never leaves a shard that looks complete."""

    def __init__(self, directory, rank: int, num_images: int, num_views: int, grid: tuple[int, ...],
                 token_bits: int):
        self.path = Path(directory) / SHARD_NAME.format(rank=rank)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._records = np.lib.format.open_memmap(self._tmp, mode="w+", shape=(num_images,),
                                                  dtype=record_dtype(num_views, grid, token_bits))
        self.invalid_rows: list[int] = []

    def write(self, row: int, index: np.ndarray, class_id: np.ndarray, tokens: np.ndarray) -> None:
        """Records row..row+n-1: source indices (n,), labels (n,) (-1 = unreadable), tokens (n, views, *grid)."""
        n = len(index)
        block = self._records[row:row + n]
        block["index"], block["class_id"], block["tokens"] = index, class_id, tokens
        self.invalid_rows.extend(row + int(i) for i in np.flatnonzero(np.asarray(class_id) < 0))

    def close(self) -> Path:
        self._records.flush()
        del self._records
        fsync_path(self._tmp)
        os.replace(self._tmp, self.path)
        fsync_path(self.path.parent)
        return self.path


def write_meta(directory, meta: dict) -> Path:
    return atomic_write_text(Path(directory) / META_FILE, json.dumps({"format": FORMAT, **meta}, indent=1))


class TokenShards:
    """Random access to the valid records of a token folder (memory-mapped; opening reads only the metadata)."""

    def __init__(self, directory):
        self.directory = Path(directory)
        meta_path = self.directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"'{self.directory}' is not a token folder ({META_FILE} missing). Set "
                f"dataset.params.pretokenized_shards_path_or_url to a folder written by scripts/pretokenize.py, "
                f"or to '' to tokenize images on the fly.")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path} has format {self.meta.get('format')!r}, expected {FORMAT!r}; "
                             f"re-run scripts/pretokenize.py")
        self.num_views, self.grid = int(self.meta["num_views"]), tuple(self.meta["grid"])
        self.token_bits = int(self.meta["token_bits"])
        self._shards = [np.load(self.directory / s["file"], mmap_mode="r") for s in self.meta["shards"]]
        sizes = [len(s) for s in self._shards]
        offsets = np.cumsum([0] + sizes)
        invalid = [offsets[k] + row for k, s in enumerate(self.meta["shards"]) for row in s.get("invalid_rows", [])]
        self._valid = np.delete(np.arange(offsets[-1]), np.asarray(invalid, dtype=np.int64))
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._valid)

    def read(self, items: np.ndarray, views: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Valid records `items` (n,) with one view each (n,) -> tokens (n, prod(grid)) int64 (row-major), class ids
        (n,) int64."""
        rows = self._valid[items]
        shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
        tokens = np.empty((len(rows), math.prod(self.grid)), dtype=np.int64)
        labels = np.empty(len(rows), dtype=np.int64)
        for i, (shard, row, view) in enumerate(zip(shard_of, rows, views)):
            record = self._shards[shard][row - self._offsets[shard]]
            tokens[i] = record["tokens"][view].reshape(-1)
            labels[i] = record["class_id"]
        return torch.from_numpy(tokens), torch.from_numpy(labels)


class TokenStream:
    """Infinite, deterministic batches {"tokens": (B, prod(grid)) int64, "class_id": (B,) int64} of process `rank`."""

    def __init__(self, shards: TokenShards, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_batch: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.epoch_length = len(shards) // world_size
        if self.epoch_length < 1:
            raise ValueError(f"{shards.directory} holds {len(shards)} images, fewer than the {world_size} processes")
        self.shards, self.batch_size, self.seed = shards, batch_size, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self._epoch: Optional[int] = None

    def _epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(permutation of the valid records, view of each record) of `epoch`, cached."""
        if self._epoch != epoch:
            n = len(self.shards)
            self._perm = np.random.default_rng(derive_seed(EPOCH_STREAM, self.seed, epoch)).permutation(n)
            self._views = np.random.default_rng(derive_seed(VIEW_STREAM, self.seed, epoch)).integers(
                self.shards.num_views, size=n)
            self._epoch = epoch
        return self._perm, self._views

    def batch(self, number: int) -> dict:
        """Batch `number` of this process (any order, any number of times)."""
        positions = np.arange(number * self.batch_size, (number + 1) * self.batch_size)
        epochs, within = np.divmod(positions, self.epoch_length)
        items, views = np.empty_like(positions), np.empty_like(positions)
        for epoch in np.unique(epochs):
            perm, epoch_views = self._epoch_order(int(epoch))
            sel = epochs == epoch
            items[sel] = perm[within[sel] * self.world_size + self.rank]
            views[sel] = epoch_views[items[sel]]
        tokens, class_ids = self.shards.read(items, views)
        return {"tokens": tokens, "class_id": class_ids}

    def __iter__(self) -> Iterator[dict]:
        number = self.start_batch
        while True:
            yield self.batch(number)
            number += 1


def build_token_stream(path: str, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                       start_batch: int = 0) -> TokenStream:
    """The train token stream of the token folder `path` (`dataset.params.pretokenized_shards_path_or_url`)."""
    return TokenStream(TokenShards(path), batch_size, seed, rank, world_size, start_batch)
