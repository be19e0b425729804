"""Pre-tokenized token shards: the script's round trip, and the resumable, rank-disjoint token stream."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data import ShardSource, TokenShards, TokenShardWriter, TokenStream, write_synthetic_shards
from data.streams import derive_seed
from data.token_shards import write_meta
from data.transforms import decode_image, to_float, transforms_from_config
from helpers_generator_training import (REPO, generator_config, launch_command,  # noqa: F401
                                        make_token_folder, run, save_random_tokenizer)
from modeling import build_tokenizer, load_pretrained
from data.pretokenize import VIEW_STREAM
from utils.config import with_defaults
from train_utils import write_yaml


@pytest.fixture(scope="module")
def pretokenized(tmp_path_factory):
    """40 synthetic images, 3 views each, tokenized by `accelerate launch scripts/pretokenize.py` (2 processes)."""
    root = tmp_path_factory.mktemp("pretokenize")
    shards = write_synthetic_shards(str(root / "shards"), num_train=40, num_val=4, resolution=24, seed=0)
    cfg = generator_config(root / "run", shards, root / "tok.bin", root / "tokens",
                           dataset={"params": {"num_workers_per_gpu": 1, "pretokenize_num_views": 3}})
    save_random_tokenizer(cfg, root / "tok.bin")
    result = run(launch_command(REPO / "scripts" / "pretokenize.py", [f"config={write_yaml(cfg, root / 'cfg.yaml')}"]))
    assert result.returncode == 0, result.stderr[-3000:]
    return cfg, result


def test_round_trip_equals_the_tokenizer_on_each_view(pretokenized):
    cfg, result = pretokenized
    assert "40 images (0 unreadable, left out) x 3 views of 4x4 10-bit tokens" in result.stdout
    assert "over 2 process(es)" in result.stdout
    cfg = with_defaults(cfg)
    shards = TokenShards(cfg.dataset.params.pretokenized_shards_path_or_url)
    assert len(shards) == 40 and shards.num_views == 3 and shards.grid == (4, 4) and shards.token_bits == 10
    assert np.load(shards.directory / "tokens-0001.npy")["index"].tolist() == list(range(1, 40, 2))  # rank 1
    records = records_by_image(shards.directory)
    assert records.dtype["tokens"].base == np.uint16 and records["index"].tolist() == list(range(40))

    tokenizer = load_pretrained(build_tokenizer(cfg), cfg.experiment.vqgan_checkpoint)
    source, (transform, _) = ShardSource(cfg.dataset.params.train_shards_path_or_url), transforms_from_config(
        cfg.dataset.preprocessing)
    refs = source.eval_refs()
    for i in (0, 17, 39):
        _, data, class_id = source.load(refs[i])
        views = torch.stack([transform(decode_image(data), torch.Generator().manual_seed(
            derive_seed(VIEW_STREAM, cfg.training.seed, i, v))) for v in range(3)])
        with torch.no_grad():
            _, info = tokenizer(to_float(views))  # the full forward: an independent path to the indices
        assert records["class_id"][i] == class_id
        assert np.array_equal(records["tokens"][i], info["min_encoding_indices"].numpy())
        assert len({view.tobytes() for view in records["tokens"][i]}) > 1  # the views are different crops
    stored = np.concatenate([np.load(shards.directory / f"tokens-000{rank}.npy") for rank in (0, 1)])
    tokens, labels = shards.read(np.array([17, 3]), np.array([2, 0]))  # valid records in storage order
    assert np.array_equal(tokens.numpy(), stored["tokens"][[17, 3], [2, 0]].reshape(2, -1))
    assert labels.tolist() == stored["class_id"][[17, 3]].tolist()


def records_by_image(directory):
    """All records of a token folder, sorted by source image."""
    records = np.concatenate([np.load(path) for path in sorted(directory.glob("tokens-*.npy"))])
    return records[np.argsort(records["index"])]


def test_tokens_do_not_depend_on_the_process_count(pretokenized, tmp_path):
    cfg = copy.deepcopy(pretokenized[0])
    with pytest.raises(FileExistsError, match="already holds token shards"):
        make_token_folder(cfg)
    two = records_by_image(Path(cfg["dataset"]["params"]["pretokenized_shards_path_or_url"]))
    cfg["dataset"]["params"].update(pretokenized_shards_path_or_url=str(tmp_path / "tokens"), num_workers_per_gpu=0)
    one = records_by_image(make_token_folder(cfg))  # one process, no loader workers
    assert np.array_equal(one, two)


def _token_folder(path, num_images=23, num_views=2, invalid=(5,)):
    """Records whose tokens encode (image, view): token = 10 * image + view everywhere."""
    writer = TokenShardWriter(path, 0, num_images, num_views, (2, 2), token_bits=10)
    index = np.arange(num_images)
    tokens = (10 * index[:, None, None, None] + np.arange(num_views)[None, :, None, None]) * np.ones((1, 1, 2, 2))
    labels = np.where(np.isin(index, invalid), -1, index % 7)
    writer.write(0, index, labels, tokens.astype(np.uint16))
    writer.close()
    write_meta(path, {"num_images": num_images, "num_views": num_views, "grid": [2, 2], "token_bits": 10,
                      "shards": [{"file": writer.path.name, "num_images": num_images,
                                  "invalid_rows": writer.invalid_rows}]})
    return TokenShards(path)


def test_token_stream_resumes_exactly_and_splits_epochs_across_ranks(tmp_path):
    shards = _token_folder(tmp_path)
    assert len(shards) == 22  # the unreadable image 5 is left out
    stream = TokenStream(shards, batch_size=4, seed=3, rank=1, world_size=2)
    batches = [next(it) for it in [iter(stream)] for _ in range(9)]
    resumed = iter(TokenStream(shards, batch_size=4, seed=3, rank=1, world_size=2, start_batch=5))
    for expected in batches[5:]:
        got = next(resumed)
        assert torch.equal(got["tokens"], expected["tokens"]) and torch.equal(got["class_id"], expected["class_id"])

    epoch = torch.cat([TokenStream(shards, 11, 3, rank, 2).batch(0)["tokens"][:, 0] for rank in (0, 1)])
    assert sorted((epoch // 10).tolist()) == [i for i in range(23) if i != 5]  # each valid image once per epoch
    epoch0, epoch1 = (TokenStream(shards, 11, 3, 0, 2).batch(b)["tokens"][:, 0] for b in (0, 1))
    assert not torch.equal(epoch0 // 10, epoch1 // 10)  # a new permutation each epoch
    views = torch.cat([TokenStream(shards, 11, 3, 0, 2).batch(b)["tokens"][:, 0] % 10 for b in range(4)])
    assert set(views.tolist()) == {0, 1}  # both stored views get used
    labels = TokenStream(shards, 11, 3, 0, 2).batch(0)
    assert torch.equal(labels["class_id"], (labels["tokens"][:, 0] // 10) % 7)


def test_token_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/pretokenize.py"):
        TokenShards(tmp_path)
    (tmp_path / "tokens_meta.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="re-run scripts/pretokenize.py"):
        TokenShards(tmp_path)
