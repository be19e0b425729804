"""Webdataset tar shards as a sample source (official reader semantics, with exact resume).

Train references follow the official pipeline `ResampledShards -> tarfile_to_samples -> shuffle(buffer)`: each
slot (process x worker) draws shards uniformly with replacement from its own seeded RNG, walks each drawn shard's
samples in tar order and passes them through a seeded shuffle buffer. A reference is just (shard, sample index):
the sequence is computed from shard sample counts alone, so skipped references cost no I/O beyond indexing the
shards they come from. Eval references are all samples of all shards, in pattern order. Shards named by URL
(https://, pipe:, fsspec) are fetched once into a local cache (`data.remote_shards`) and then read the same way.

A sample's image is its first member among jpg, png, jpeg, webp (the official rename order) and its class id
is the ASCII integer in `<key>.cls`.
"""
from __future__ import annotations

import os
import random
from collections import OrderedDict
from typing import BinaryIO, Iterator, Optional

from data.streams import SHARD_STREAM, derive_seed, shuffled
from data.remote_shards import RemoteShards, is_remote
from data.tar_index import TarSample, expand_shards, index_tar, read_member

IMAGE_KEYS = ("jpg", "png", "jpeg", "webp")
Ref = tuple[int, int]  # (shard number, sample number within the shard)


class ShardSource:
    """Samples of the shards matching a brace pattern; keeps a few shard indices and open files per process."""

    def __init__(self, pattern: str, shuffle_buffer_size: int = 1000, cached_shards: int = 4,
                 remote_cache_dir: str = ""):
        if shuffle_buffer_size < 1:
            raise ValueError(f"dataset.params.shuffle_buffer_size must be >= 1, got {shuffle_buffer_size}")
        # URLs (https://, pipe:, fsspec) are fetched once into a local cache, then read like local shards
        self.paths = RemoteShards(pattern, remote_cache_dir) if is_remote(pattern) else expand_shards(pattern)
        self.pattern = pattern
        self.shuffle_buffer_size, self.cached_shards = shuffle_buffer_size, cached_shards
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._pid = os.getpid()  # a forked worker must not share the parent's open files
        self._sizes: dict[int, int] = {}
        self._open: OrderedDict[int, tuple[list[TarSample], BinaryIO]] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sizes"], state["_open"] = {}, OrderedDict()
        return state

    def _shard(self, shard: int) -> tuple[list[TarSample], BinaryIO]:
        if self._pid != os.getpid():
            self._reset_cache()
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        entry = index_tar(self.paths[shard]), open(self.paths[shard], "rb")
        self._sizes[shard] = len(entry[0])
        self._open[shard] = entry
        if len(self._open) > self.cached_shards:
            self._open.popitem(last=False)[1][1].close()
        return entry

    def num_samples(self, shard: int) -> int:
        if self._pid != os.getpid() or shard not in self._sizes:
            self._shard(shard)
        return self._sizes[shard]

    def _resampled(self, rng: random.Random) -> Iterator[Ref]:
        empty: set[int] = set()
        while True:
            shard = rng.randrange(len(self.paths))
            count = self.num_samples(shard)
            if count == 0:
                empty.add(shard)
                if len(empty) == len(self.paths):
                    raise RuntimeError(f"no readable samples in any shard of '{self.pattern}'")
            for index in range(count):
                yield shard, index

    def train_refs(self, seed: int, slot: int, num_slots: int) -> Iterator[Ref]:
        rng = random.Random(derive_seed(SHARD_STREAM, seed, slot))
        return shuffled(self._resampled(rng), self.shuffle_buffer_size, rng)

    def eval_refs(self) -> list[Ref]:
        return [(shard, index) for shard in range(len(self.paths)) for index in range(self.num_samples(shard))]

    def load(self, ref: Ref) -> tuple[str, bytes, int]:
        shard, index = ref
        samples, file = self._shard(shard)
        sample = samples[index]
        path = self.paths[shard]
        image_key: Optional[str] = next((k for k in IMAGE_KEYS if k in sample.members), None)
        if image_key is None or "cls" not in sample.members:
            raise ValueError(f"sample {sample.key} in {path} needs an image ({'/'.join(IMAGE_KEYS)}) and a .cls "
                             f"member, has {sorted(sample.members)}")
        class_id = int(read_member(file, *sample.members["cls"], path=path).decode("ascii").strip())
        return sample.key, read_member(file, *sample.members[image_key], path=path), class_id
