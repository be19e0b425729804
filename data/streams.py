"""Deterministic train and eval streams over a sample source (webdataset shards or an image folder).

A source lists *references* to samples (cheap: no bytes read) and loads a reference into
(key, encoded image bytes, class id). The streams turn references into batches
`{"image": (B, 3, R, R) float32 in [0, 1], "class_id": (B,) int64, "__key__": list[str]}`.

Train stream and exact resume. Every DataLoader worker of every process is a *slot*: slot = rank * W + worker
(W = num_workers, or 1 without workers). Slot s draws an infinite sequence of references from
`source.train_refs(seed, s, world_size * W)`, cuts it into batches of B, and augments the sample at position c
with a generator seeded by (seed, s, c). A DataLoader hands out worker batches round-robin, so global batch i is
batch i // W of worker i % W. To start at global batch n, physical worker w plays the role of worker
(w + n) % W and starts at its batch (w + n) // W, skipping the references before it *without loading or decoding
them*; `stream(start_batch=n)` then yields exactly batches n, n+1, ... of `stream(start_batch=0)`.

A sample whose bytes cannot be loaded or decoded is logged with its key and counted in `num_skipped` (shared by
all workers). In training it is replaced by another sample of the same batch, augmented with its own generator, so
batches keep their size and batch boundaries stay put (exact resume holds with damaged data too). In evaluation it
is dropped.

Eval stream: every reference of `source.eval_refs()` (in source order) goes to slot i % (world_size * W), so
world_size processes x W workers read every sample exactly once in total; batches are in order within a slot and
the last one may be partial.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import random
from typing import Any, Hashable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from data.transforms import EvalTransform, TrainTransform, decode_image, to_float

logger = logging.getLogger(__name__)

AUGMENT_STREAM, SHARD_STREAM, EPOCH_STREAM = 0, 1, 2  # tags keeping derived seeds of different uses apart


class SampleSource(Protocol):
    def train_refs(self, seed: int, slot: int, num_slots: int) -> Iterator[Hashable]: ...
    def eval_refs(self) -> Sequence[Hashable]: ...
    def load(self, ref: Hashable) -> tuple[str, bytes, int]: ...


def derive_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy SeedSequence)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def shuffled(items: Iterator, buffer_size: int, rng: random.Random) -> Iterator:
    """Shuffle a (possibly infinite) stream with a buffer: once full, emit a random entry and put the next in."""
    buffer: list = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        k = rng.randrange(buffer_size)
        yield buffer[k]
        buffer[k] = item
    rng.shuffle(buffer)
    yield from buffer


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class _SkipCounter:
    """Count of skipped (unreadable) samples, shared by the DataLoader workers and the main process."""

    def __init__(self) -> None:
        self._value = multiprocessing.get_context().Value("q", 0)

    def add(self, key: str, err: Exception) -> None:
        with self._value.get_lock():
            self._value.value += 1
            total = self._value.value
        logger.warning("skipping unreadable sample %s: %s: %s", key, type(err).__name__, err)
        if total % 100 == 0:
            logger.warning("%d unreadable samples skipped so far", total)

    @property
    def value(self) -> int:
        return self._value.value


class _Stream(IterableDataset):
    def __init__(self, source: SampleSource, batch_size: int, rank: int, world_size: int):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.source, self.batch_size, self.rank, self.world_size = source, batch_size, rank, world_size
        self._skipped = _SkipCounter()

    @property
    def num_skipped(self) -> int:
        """Unreadable samples skipped so far by this stream (all workers)."""
        return self._skipped.value

    def _load(self, ref: Hashable) -> tuple[str, Any, int]:
        """(key, decoded RGB image or the exception, class id) of one reference."""
        key = str(ref)
        try:
            key, data, class_id = self.source.load(ref)
            return key, decode_image(data), class_id
        except Exception as err:  # damaged data of any kind: PIL raises OSError, SyntaxError, ValueError, ...
            self._skipped.add(key, err)
            return key, err, -1

    @staticmethod
    def _batch(images: list[torch.Tensor], class_ids: list[int], keys: list[str]) -> dict:
        return {"image": to_float(torch.stack(images)), "class_id": torch.tensor(class_ids, dtype=torch.int64),
                "__key__": keys}


class TrainStream(_Stream):
    """Infinite, deterministic train batches (see the module docstring); `start_batch` resumes exactly."""

    def __init__(self, source: SampleSource, transform: TrainTransform, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0):
        super().__init__(source, batch_size, rank, world_size)
        if seed < 0 or start_batch < 0:
            raise ValueError(f"seed and start_batch must be >= 0, got seed={seed}, start_batch={start_batch}")
        self.transform, self.seed, self.start_batch = transform, seed, start_batch

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _worker()
        role = (worker + self.start_batch) % num_workers
        first_batch = (worker + self.start_batch) // num_workers
        slot = self.rank * num_workers + role
        refs = self.source.train_refs(self.seed, slot, self.world_size * num_workers)
        position = first_batch * self.batch_size
        refs = itertools.islice(refs, position, None)  # skipped references are never loaded
        while True:
            batch_refs = list(itertools.islice(refs, self.batch_size))
            yield self._train_batch(batch_refs, slot, position)
            position += self.batch_size

    def _train_batch(self, refs: list, slot: int, position: int) -> dict:
        loaded = [self._load(ref) for ref in refs]
        good = [i for i, (_, image, _) in enumerate(loaded) if not isinstance(image, Exception)]
        if not good:
            raise RuntimeError(f"all {len(refs)} samples of a batch are unreadable (e.g. {loaded[0][0]}: "
                               f"{loaded[0][1]}); check the dataset files")
        images, class_ids, keys = [], [], []
        for i, (key, image, class_id) in enumerate(loaded):
            if isinstance(image, Exception):  # stand-in: the next readable sample of this batch
                key, image, class_id = loaded[min(good, key=lambda g: (g - i) % len(loaded))]
            generator = torch.Generator().manual_seed(derive_seed(AUGMENT_STREAM, self.seed, slot, position + i))
            images.append(self.transform(image, generator))
            class_ids.append(class_id)
            keys.append(key)
        return self._batch(images, class_ids, keys)


class EvalStream(_Stream):
    """Finite, ordered eval batches; all processes and workers together read every sample exactly once."""

    def __init__(self, source: SampleSource, transform: EvalTransform, batch_size: int, rank: int = 0,
                 world_size: int = 1):
        super().__init__(source, batch_size, rank, world_size)
        self.transform = transform

    def slot_refs(self, worker: int, num_workers: int) -> Sequence[Hashable]:
        """References read by worker `worker` of this process."""
        return self.source.eval_refs()[self.rank * num_workers + worker::self.world_size * num_workers]

    def __iter__(self) -> Iterator[dict]:
        images, class_ids, keys = [], [], []
        for ref in self.slot_refs(*_worker()):
            key, image, class_id = self._load(ref)
            if isinstance(image, Exception):
                continue
            images.append(self.transform(image))
            class_ids.append(class_id)
            keys.append(key)
            if len(images) == self.batch_size:
                yield self._batch(images, class_ids, keys)
                images, class_ids, keys = [], [], []
        if images:
            yield self._batch(images, class_ids, keys)
