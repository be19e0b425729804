"""Train/eval DataLoaders: batch format, determinism, exact resume, eval splitting, image folders, bad data."""
import itertools

import numpy as np
import pytest
import torch

from data import loaders
from utils.config import with_defaults
from data.shards import ShardWriter, encode_image, write_synthetic_shards
from data.synthetic import SyntheticImages


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return write_synthetic_shards(str(root), num_train=60, num_val=23, resolution=20, seed=0, maxcount=16)


def config(train="", val="", workers=0, batch=4, seed=0, source="webdataset", **preprocessing):
    return {"dataset": {"params": {"source": source, "train_shards_path_or_url": train,
                                   "eval_shards_path_or_url": val, "num_workers_per_gpu": workers,
                                   "shuffle_buffer_size": 10, "persistent_workers": False},
                        "preprocessing": {"resolution": 16, **preprocessing}},
            "training": {"per_gpu_batch_size": batch, "seed": seed}}


def build_train_dataloader(cfg, rank=0, world_size=1, start_batch=0):
    cfg = with_defaults(cfg)
    return loaders.build_train_dataloader(cfg.dataset, cfg.training.per_gpu_batch_size, cfg.training.seed, rank,
                                          world_size, start_batch)


def build_eval_dataloader(cfg, rank=0, world_size=1, batch_size=None):
    cfg = with_defaults(cfg)
    return loaders.build_eval_dataloader(cfg.dataset, batch_size or cfg.training.per_gpu_batch_size, rank, world_size)


def take(loader, count):
    return list(itertools.islice(loader, count))


def same(a, b):
    return a["__key__"] == b["__key__"] and torch.equal(a["image"], b["image"]) and torch.equal(a["class_id"],
                                                                                               b["class_id"])


def test_train_batches_have_the_official_format(shards):
    batch = take(build_train_dataloader(config(shards["train"])), 1)[0]
    assert set(batch) == {"image", "class_id", "__key__"}
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["class_id"].dtype == torch.int64 and len(batch["__key__"]) == 4
    assert batch["class_id"].tolist() == [int(key) % 10 for key in batch["__key__"]]


def test_train_stream_is_deterministic_and_depends_on_seed_and_rank(shards):
    a = take(build_train_dataloader(config(shards["train"], workers=2)), 4)
    b = take(build_train_dataloader(config(shards["train"], workers=2)), 4)
    assert all(same(x, y) for x, y in zip(a, b))
    other_seed = take(build_train_dataloader(config(shards["train"], workers=2, seed=1)), 4)
    other_rank = take(build_train_dataloader(config(shards["train"], workers=2), rank=1, world_size=2), 4)
    assert not any(same(x, y) for x, y in zip(a, other_seed))
    assert not any(same(x, y) for x, y in zip(a, other_rank))


@pytest.mark.parametrize("workers,starts", [(0, [1, 9]), (2, [1, 2, 7])])
def test_start_batch_resumes_exactly(shards, workers, starts):
    cfg = config(shards["train"], workers=workers, batch=3)
    reference = take(build_train_dataloader(cfg), 12)  # 36 samples > the 16-sample shards: spans shard draws
    for start in starts:
        resumed = take(build_train_dataloader(cfg, start_batch=start), 12 - start)
        assert all(same(x, y) for x, y in zip(reference[start:], resumed))


def eval_keys(cfg, world_size, batch_size=3):
    keys = []
    for rank in range(world_size):
        for batch in build_eval_dataloader(cfg, rank, world_size, batch_size=batch_size):
            assert batch["image"].shape[1:] == (3, 16, 16) and len(batch["__key__"]) <= batch_size
            keys.extend(batch["__key__"])
    return keys


@pytest.mark.parametrize("val_pattern", ["single shard", "two shards"])
def test_eval_reads_every_sample_once_over_two_ranks_and_two_workers(shards, tmp_path, val_pattern):
    pattern = shards["val"]
    if val_pattern == "two shards":
        pattern = write_synthetic_shards(str(tmp_path), 0, 23, resolution=20, maxcount=12)["val"]
    expected = [f"{i:07d}" for i in range(23)]
    assert eval_keys(config(val=pattern), world_size=1) == expected  # ordered when alone
    keys = eval_keys(config(val=pattern, workers=2), world_size=2)
    assert sorted(keys) == expected


def test_eval_transform_is_resize_and_center_crop(shards):
    batch = next(iter(build_eval_dataloader(config(val=shards["val"]))))
    image = SyntheticImages(resolution=20, seed=0, split="val")[0][0].resize((16, 16), resample=2)  # bilinear
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert torch.equal(batch["image"][0], expected)


def make_image_folder(root, per_class=5):
    dataset = SyntheticImages(resolution=20, num_classes=3, seed=4)
    for i in range(3 * per_class):
        folder = root / ["zebra", "ant", "moth"][i % 3]
        folder.mkdir(exist_ok=True)
        dataset[i][0].save(folder / f"img{i:02d}.{['png', 'jpg', 'webp'][i % 3]}")
    (root / "ant" / "notes.txt").write_text("ignored")
    return root


def test_image_folder_source(tmp_path):
    root = str(make_image_folder(tmp_path))
    cfg = config(root, root, workers=2, source="image_folder")
    keys = eval_keys(cfg, world_size=2)
    assert sorted(keys) == sorted(f"{c}/img{i:02d}" for i, c in zip(range(15), itertools.cycle(["zebra", "ant", "moth"])))
    batch = take(build_train_dataloader(cfg), 1)[0]
    classes = {"ant": 0, "moth": 1, "zebra": 2}  # sorted folder order
    assert batch["class_id"].tolist() == [classes[key.split("/")[0]] for key in batch["__key__"]]
    reference = take(build_train_dataloader(cfg), 6)  # 24 samples: crosses an epoch of 15
    assert all(same(x, y) for x, y in zip(reference[3:], take(build_train_dataloader(cfg, start_batch=3), 3)))


def write_damaged_shard(path_dir):
    """A shard of 8 samples in which samples 2 (garbage) and 5 (truncated PNG) cannot be decoded."""
    dataset = SyntheticImages(resolution=20, seed=0)
    with ShardWriter(str(path_dir), "train", maxcount=100) as writer:
        for i in range(8):
            data = encode_image(dataset[i][0], "png")
            data = {2: b"garbage", 5: data[: len(data) // 2]}.get(i, data)
            writer.write(f"{i:07d}", data, dataset.class_id(i), ext="png")
    return writer.paths[0]


def test_unreadable_samples_are_skipped_counted_and_resume_stays_exact(tmp_path, caplog):
    path = write_damaged_shard(tmp_path)
    loader = build_train_dataloader(config(path, batch=4))
    batches = take(loader, 6)  # 24 draws from an 8-sample shard: both bad samples come up
    assert all(len(b["__key__"]) == 4 and b["image"].shape[0] == 4 for b in batches)
    assert not {"0000002", "0000005"} & {key for b in batches for key in b["__key__"]}
    assert loader.dataset.num_skipped == 6 and "skipping unreadable sample 0000002" in caplog.text
    resumed = take(build_train_dataloader(config(path, batch=4), start_batch=3), 3)
    assert all(same(x, y) for x, y in zip(batches[3:], resumed))
    evaluation = build_eval_dataloader(config(val=path, workers=2))
    keys = [key for batch in evaluation for key in batch["__key__"]]
    assert sorted(keys) == [f"{i:07d}" for i in (0, 1, 3, 4, 6, 7)] and evaluation.dataset.num_skipped == 2


def test_clear_errors_for_missing_data_and_bad_settings(tmp_path, shards):
    with pytest.raises(FileNotFoundError, match="imagenet-train-"):
        build_train_dataloader(config(str(tmp_path / "imagenet-train-{0000..0002}.tar")))
    with pytest.raises(ValueError, match="train_shards_path_or_url is empty"):
        build_train_dataloader(config())
    with pytest.raises(ValueError, match="dataset.params.source"):
        build_train_dataloader(config(shards["train"], source="lmdb"))
    with pytest.raises(ValueError, match="min_scale"):
        build_train_dataloader(config(shards["train"], use_random_crop=False))
    with pytest.raises(FileNotFoundError, match="image folder"):
        build_eval_dataloader(config(val=str(tmp_path / "nope"), source="image_folder"))
