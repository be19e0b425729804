"""Shards named by URL (issue 18, item 8): http:// from a local server on 127.0.0.1, pipe: and fsspec URLs give the
same batches as the local files, with exact resume at any batch; a failed fetch is named; nothing partial is cached."""
import functools
import http.server
import threading

import pytest
import torch
from omegaconf import OmegaConf

from data import build_train_dataloader, write_synthetic_shards
from data.remote_shards import RemoteShardError, RemoteShards
from utils.schema import DatasetConfig


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    write_synthetic_shards(str(root), num_train=24, num_val=0, resolution=16, seed=0, maxcount=8)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "train"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def batches(pattern, cache, start=0, count=4):
    dataset = OmegaConf.structured(DatasetConfig)
    dataset.params.train_shards_path_or_url = pattern
    dataset.params.shard_cache_dir = str(cache)
    dataset.params.num_workers_per_gpu = 0
    dataset.params.shuffle_buffer_size = 8
    dataset.preprocessing.resolution = 16
    loader = iter(build_train_dataloader(dataset, batch_size=4, seed=3, start_batch=start))
    return [next(loader) for _ in range(count)]


def assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["class_id"], y["class_id"])


@pytest.mark.parametrize("kind", ["http", "pipe", "fsspec"])
def test_url_shards_match_local_shards_and_resume_exactly(served, tmp_path, kind):
    root, base = served
    local = str(root / "train" / "imagenet-train-{0000..0002}.tar")
    url = {"http": f"{base}/imagenet-train-{{0000..0002}}.tar",
           "pipe": f"pipe:cat {root}/train/imagenet-train-{{0000..0002}}.tar",
           "fsspec": f"file://{root}/train/imagenet-train-{{0000..0002}}.tar"}[kind]
    expected = batches(local, tmp_path / "unused")
    assert_same(batches(url, tmp_path / "cache"), expected)
    assert_same(batches(url, tmp_path / "cache", start=2, count=2), expected[2:])  # resume at batch 2, exactly
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def test_failed_fetch_is_named_and_leaves_nothing_cached(served, tmp_path):
    _, base = served
    shards = RemoteShards(f"{base}/missing-{{0000..0001}}.tar", tmp_path / "cache")
    with pytest.raises(RemoteShardError, match=r"missing-0000\.tar"):
        shards[0]
    assert not any((tmp_path / "cache").iterdir())
