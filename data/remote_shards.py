"""Shards named by URL (https://, http://, pipe:, and any fsspec protocol such as s3:// or gs://) as local files.

    paths = RemoteShards("https://host/imagenet-train-{0000..0252}.tar", cache_dir)
    path = paths[17]           # downloads shard 17 once (through webdataset's gopen or fsspec), then a local path

The index-based reader (`data.webdataset_reader`) needs random access and the sample count of each shard; a URL
stream has neither, so each shard is streamed once into `cache_dir` (written to a temporary name, fsynced and
renamed: a killed download never leaves a file that looks complete) and read from there. Sample references stay
(shard, sample) pairs, so resume is exact at shard + sample-offset granularity for remote shards as for local ones.
Only the shards the stream reaches are fetched. The cache is keyed by the URL's sha256 and never evicted by this
code: point `dataset.params.shard_cache_dir` at a disk with room for the shards.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Union
from urllib.parse import urlparse

import braceexpand

from utils.atomic import atomic_path
from utils.errors import MaskbitError

DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/maskbit/shards"))


class RemoteShardError(MaskbitError, OSError):
    """A remote shard could not be fetched."""


def is_remote(pattern: str) -> bool:
    return pattern.startswith("pipe:") or "://" in pattern


def _open_stream(url: str):
    """A readable binary stream of `url`: webdataset's gopen for the schemes it knows (pipe:, http(s), ...),
    fsspec for the rest (s3://, gs://, file://, memory://...)."""
    import importlib

    wds_gopen = importlib.import_module("webdataset.gopen")  # the module (the package attribute is the function)

    scheme = "pipe" if url.startswith("pipe:") else urlparse(url).scheme
    if scheme in wds_gopen.gopen_schemes and scheme != "__default__":
        return wds_gopen.gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


class RemoteShards:
    """The shards of a URL brace pattern, fetched on first use into a local cache; indexable like a path list."""

    def __init__(self, pattern: str, cache_dir: Union[str, os.PathLike, None] = None):
        self.urls = list(braceexpand.braceexpand(pattern))
        if not self.urls:
            raise RemoteShardError(f"the shard pattern '{pattern}' names no URL")
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE

    def __len__(self) -> int:
        return len(self.urls)

    def cache_path(self, index: int) -> Path:
        url = self.urls[index]
        name = os.path.basename(urlparse(url.split()[-1] if url.startswith("pipe:") else url).path) or "shard.tar"
        return self.cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"

    def __getitem__(self, index: int) -> str:
        path = self.cache_path(index)
        if not path.is_file():
            self._fetch(index, path)
        return str(path)

    def _fetch(self, index: int, path: Path) -> None:
        url = self.urls[index]
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as out:
                stream = _open_stream(url)
                try:
                    shutil.copyfileobj(stream, out, 1 << 22)
                finally:
                    stream.close()  # a pipe:/curl stream raises here when its command failed
        except Exception as err:
            raise RemoteShardError(f"could not fetch shard {url}: {type(err).__name__}: {err}. Check the URL and "
                                   f"the network, or download the shards and use a local pattern.") from None
        if path.stat().st_size == 0:
            path.unlink()
            raise RemoteShardError(f"shard {url} is empty (0 bytes fetched); check the URL")
