"""Stage-II training in one process: it learns, it writes its artefacts, and bad inputs give clear errors."""
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from data import TokenShards, write_synthetic_shards
from helpers_generator_training import (REPO, generator_config, make_token_folder,  # noqa: F401
                                        run, save_random_tokenizer)
from modeling import build_generator, build_tokenizer, load_pretrained
from utils.run_layout import read_metrics
from training.generator_trainer import GeneratorTrainer
from training.token_source import TokenizerCheckpointError
from conftest import reset_accelerate_state
from train_utils import write_yaml


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic 16 px shards, a random tiny tokenizer, and its tokens (2 views per image)."""
    root = tmp_path_factory.mktemp("generator_data")
    shards = write_synthetic_shards(str(root / "shards"), num_train=160, num_val=4, resolution=16, seed=0)
    cfg = generator_config(root / "unused", shards, root / "tokenizer.bin", root / "tokens")
    save_random_tokenizer(cfg, root / "tokenizer.bin")
    make_token_folder(cfg)
    return {"shards": shards, "tokenizer": root / "tokenizer.bin", "tokens": root / "tokens", "root": root}


def config(data, output_dir, tokens=True, **overrides):
    return generator_config(output_dir, data["shards"], data["tokenizer"], data["tokens"] if tokens else "",
                            **overrides)


def test_generator_learns_the_synthetic_tokens(data, tmp_path):
    cfg = config(data, tmp_path, experiment={"save_every": 1000, "generate_every": 1000, "log_every": 50},
                 model={"mlm_model": {"dropout": 0.0}}, training={"max_train_steps": 200, "per_gpu_batch_size": 16},
                 lr_scheduler={"params": {"warmup_steps": 10}})
    GeneratorTrainer(cfg).train()
    logs = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "train/mlm_loss" in r]
    first, last = logs[0], logs[-1]
    # what a model ignoring its inputs can reach: the most frequent value of each split, on every element
    shards = TokenShards(data["tokens"])
    tokens, _ = shards.read(np.arange(len(shards)), np.zeros(len(shards), dtype=np.int64))
    unigram = [torch.bincount(((tokens >> (5 * s)) & 31).flatten()).max().item() / tokens.numel() for s in (0, 1)]
    baseline = unigram[0] * unigram[1]  # the logged accuracy is (mean element accuracy)^splits
    assert last["train/masked_correct_tokens"] > max(2.5 * baseline, 30 / 32 ** 2), (last, baseline)
    assert last["train/mlm_loss"] < first["train/mlm_loss"] - 0.6
    assert last["train/correct_tokens"] > last["train/masked_correct_tokens"]  # visible elements are easier


def test_on_the_fly_tokens_artefacts_and_frozen_tokenizer(data, tmp_path):
    cfg = config(data, tmp_path, tokens=False, training={"max_train_steps": 4})
    trainer = GeneratorTrainer(cfg)
    seen = []
    tokens_of = trainer._tokens

    def recording(batch):
        tokens, class_ids = tokens_of(batch)
        seen.append((batch["image"], tokens))
        return tokens, class_ids

    trainer._tokens = recording
    frozen = {k: v.clone() for k, v in trainer.tokenizer.state_dict().items()}
    trainer.train()

    reference = load_pretrained(build_tokenizer(cfg), data["tokenizer"])
    for images, tokens in seen[:2]:  # tokens are the tokenizer's indices of the augmented images
        with torch.no_grad():
            assert torch.equal(tokens, reference(images)[1]["min_encoding_indices"].reshape(len(images), -1))
    assert len(seen) == 4 and all(t.shape == (8, 16) for _, t in seen)
    assert not trainer.tokenizer.training and "tokenizer" not in trainer.models
    assert all(torch.equal(v, frozen[k]) for k, v in trainer.tokenizer.state_dict().items())

    out = tmp_path
    grid = Image.open(out / "train_generated_images" / "00000004.png")
    assert grid.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)  # 2 classes (rows) x 2 seeds (columns), padding 2
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt"):
        assert (out / "checkpoint-4" / name).is_file(), name
    record = read_metrics(out / "metrics.jsonl")[-1]
    for key in ("train/mlm_loss", "train/masked_token_loss", "train/masked_correct_tokens",
                "train/correct_tokens", "lr", "perf/samples_per_sec"):
        assert np.isfinite(record[key]), key
    exported = load_pretrained(build_generator(cfg), out / "pytorch_model.bin")
    ema = torch.load(out / "checkpoint-4" / "ema_model" / "pytorch_model.bin", weights_only=True)
    assert all(torch.equal(v, ema[k]) for k, v in exported.state_dict().items())
    from safetensors.torch import load_file  # the same final weights, also as safetensors
    safetensors_state = load_file(str(out / "model.safetensors"))
    assert safetensors_state.keys() == ema.keys() and all(torch.equal(v, ema[k]) for k, v in safetensors_state.items())


def test_grids_are_reproducible_from_the_checkpoint(data, tmp_path):
    cfg = config(data, tmp_path, training={"max_train_steps": 4})
    trainer = GeneratorTrainer(cfg)
    trainer.train()
    first = np.asarray(Image.open(tmp_path / "train_generated_images" / "00000004.png"))
    trainer.visualize({})  # same EMA weights, same classes and seeds -> the same grid
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "train_generated_images" / "00000004.png")))


def test_tokenizer_checkpoint_errors_name_the_file_and_config(data, tmp_path):
    with pytest.raises(TokenizerCheckpointError, match=r"experiment.vqgan_checkpoint is not set.*token_size=10"):
        GeneratorTrainer(config(data, tmp_path, experiment={"vqgan_checkpoint": ""}))
    with pytest.raises(TokenizerCheckpointError, match=r"'/no/such/tokenizer.bin' does not exist"):
        GeneratorTrainer(config(data, tmp_path, experiment={"vqgan_checkpoint": "/no/such/tokenizer.bin"}))
    wider = config(data, tmp_path, model={"vq_model": {"hidden_channels": 64}})
    save_random_tokenizer(wider, tmp_path / "wide.bin")
    mismatch = r"(?s)wide.bin' does not load.*hidden_channels=32.*shape mismatches"
    with pytest.raises(TokenizerCheckpointError, match=mismatch):
        GeneratorTrainer(config(data, tmp_path, experiment={"vqgan_checkpoint": str(tmp_path / "wide.bin")}))


def test_token_folder_must_come_from_this_tokenizer_and_grid(data, tmp_path):
    other = config(data, tmp_path)
    save_random_tokenizer(other, tmp_path / "other.bin", seed=1)
    with pytest.raises(ValueError, match="other tokenizer weights"):
        GeneratorTrainer(config(data, tmp_path, experiment={"vqgan_checkpoint": str(tmp_path / "other.bin")}))
    with pytest.raises(ValueError, match=r"holds 10-bit tokens on a \(4, 4\) grid.*expects 10 bits x 64 tokens"):
        GeneratorTrainer(config(data, tmp_path, dataset={"preprocessing": {"resolution": 32}}))


def test_script_reports_a_missing_tokenizer_without_traceback(data, tmp_path):
    path = write_yaml(config(data, tmp_path / "out"), tmp_path / "cfg.yaml")
    result = run([sys.executable, str(REPO / "scripts" / "train_maskbit.py"), f"config={path}",
                  "experiment.vqgan_checkpoint=MODEL_PATH/maskbit_tokenizer_12bit.bin"], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "train_maskbit.py: error: experiment.vqgan_checkpoint is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_vq_tokenizer_with_the_embedding_generator(data, tmp_path):
    """The `bert` baseline on VQ tokens: indices split from log2(codebook_size) bits the same way."""
    cfg = config(data, tmp_path, tokens=False, training={"max_train_steps": 2},
                 model={"vq_model": {"quantizer_type": "lookup", "codebook_size": 1024, "token_size": 8},
                        "mlm_model": {"model_cls": "bert"}}, experiment={"vqgan_checkpoint": str(tmp_path / "vq.bin")})
    save_random_tokenizer(cfg, tmp_path / "vq.bin")
    trainer = GeneratorTrainer(cfg)
    trainer.train()
    generator = trainer.unwrap("generator")
    assert type(generator).__name__ == "EmbeddingTokenTransformer" and generator.mask_token == 32
    record = read_metrics(tmp_path / "metrics.jsonl")[-1]
    assert record["step"] == 2 and np.isfinite(record["train/mlm_loss"])


def test_resume_with_dropout_and_on_the_fly_tokens_is_bitwise(data, tmp_path):
    """Straight 4 steps == the step-2 checkpoint resumed to step 4, with dropout drawing from the global RNG: the
    resumed run must not draw the image DataLoader's seed a second time."""
    import shutil

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    overrides = dict(tokens=False, model={"mlm_model": {"dropout": 0.1}}, training={"max_train_steps": 4},
                     experiment={"save_every": 2, "generate_every": 100})
    GeneratorTrainer(config(data, straight, **overrides)).train()
    reset_accelerate_state()
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    GeneratorTrainer(config(data, resumed, **overrides)).train()
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin"):
        a = torch.load(straight / "checkpoint-4" / name, weights_only=True)
        b = torch.load(resumed / "checkpoint-4" / name, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), name
