"""Inputs validated up front (issue 18, item 6): each bad input gives a MaskbitError naming it (scripts: exit 2, no
traceback), before anything is written; odd image modes decode correctly; damaged shards are named."""
import io
import logging
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reset_accelerate_state
from data import write_synthetic_shards
from data.shards import ClassIdError, ShardWriter, encode_image
from data.tar_index import ShardPatternError, index_tar
from data.transforms import decode_image
from training import TokenizerTrainer
from train_utils import run_script, tiny_config, write_yaml
from utils.config import ConfigError, load_config
from utils.errors import MaskbitError

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(str(tmp_path_factory.mktemp("shards")), num_train=32, num_val=4, resolution=16,
                                  seed=0)


def test_repeated_command_line_key_says_to_quote_the_pattern():
    # what bash makes of an unquoted key=DIR/imagenet-train-{0000..0001}.tar
    argv = ["dataset.params.train_shards_path_or_url=d/imagenet-train-0000.tar",
            "dataset.params.train_shards_path_or_url=d/imagenet-train-0001.tar"]
    with pytest.raises(ConfigError, match=r"given more than once: \['dataset.params.train_shards_path_or_url'\].*quote"):
        load_config(argv)


@pytest.mark.parametrize("key,value", [("training.per_gpu_batch_size", 0), ("training.max_train_steps", -1),
                                       ("experiment.save_every", 0), ("experiment.log_every", 0),
                                       ("training.gradient_accumulation_steps", 0)])
def test_non_positive_counts_are_refused_before_anything_is_written(shards, tmp_path, key, value):
    cfg = tiny_config(shards, tmp_path / "run")
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError, match=rf"{key} must be a positive integer, got {value}"):
        TokenizerTrainer(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key,value,message", [
    ("training.ddp_bucket_cap_mb", 0, "training.ddp_bucket_cap_mb must be > 0"),
    ("training.mixed_precision", "fp8", "training.mixed_precision must be no, bf16 or fp16, got 'fp8'")])
def test_bad_process_settings_are_refused_before_anything_is_written(shards, tmp_path, key, value, message):
    cfg = tiny_config(shards, tmp_path / "run")
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError, match=message):
        TokenizerTrainer(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_resolution_the_tokenizer_cannot_tile(shards, tmp_path):
    cfg = tiny_config(shards, tmp_path / "run")
    cfg["dataset"]["preprocessing"]["resolution"] = 17  # tiny tokenizer downsamples by 2
    with pytest.raises(ConfigError, match="image size 17 is not divisible by the tokenizer's downsampling factor 2"):
        TokenizerTrainer(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "run.json").exists()


def test_shard_pattern_matching_nothing_exits_2_without_traceback(shards, tmp_path):
    cfg = tiny_config(shards, tmp_path / "run", training={"max_train_steps": 1})
    cfg["dataset"]["params"]["train_shards_path_or_url"] = str(tmp_path / "nowhere" / "imagenet-train-{0000..0003}.tar")
    result = run_script([f"config={write_yaml(cfg, tmp_path / 'c.yaml')}"], timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "No shard file matches the pattern" in result.stderr and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()
    with pytest.raises(ShardPatternError):
        from data.tar_index import expand_shards
        expand_shards(str(tmp_path / "nowhere" / "*.tar"))


def test_class_ids_outside_the_generator_are_refused_on_the_first_batch(shards, tmp_path):
    from training.trainer import Trainer

    class Stub(Trainer):  # the check lives in the base class: any class-conditional trainer gets it
        def build(self):
            model = torch.nn.Linear(1, 1)
            model.num_classes = 5
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            self.register("generator", {"generator": model}, {"generator": opt},
                          {"generator": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)})

    trainer = Stub(tiny_config(shards, tmp_path / "run"))
    with pytest.raises(ClassIdError, match=r"class id\(s\) \[5, 9\] outside \[0, 5\)"):
        trainer.check_first_batch({"class_id": torch.tensor([0, 9, 5, 1])})
    trainer.check_first_batch({"class_id": torch.tensor([0, 4])})
    trainer.release()


def test_shard_writer_refuses_out_of_range_class_ids_and_keeps_finished_shards(tmp_path):
    image = encode_image(Image.new("RGB", (4, 4)))
    with pytest.raises(ClassIdError, match="class id 10, outside \\[0, 10\\)"):
        with ShardWriter(str(tmp_path), "train", maxcount=1, num_classes=10) as writer:
            writer.write("0000000", image, 3, ext="png")
            writer.write("0000001", image, 10, ext="png")
    assert (tmp_path / "imagenet-train-0000.tar").is_file()  # the finished shard is kept, complete
    assert len(index_tar(str(tmp_path / "imagenet-train-0000.tar"))) == 1


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_sixteen_bit_palette_and_cmyk_images_decode_correctly():
    values = (np.arange(16 * 16).reshape(16, 16) * 256).astype(np.uint16)  # 0 .. 65280
    decoded = np.asarray(decode_image(png_bytes(Image.fromarray(values))))
    assert decoded.shape == (16, 16, 3)
    assert np.array_equal(decoded[..., 0], np.rint(values / 257).astype(np.uint8))  # scaled, not clipped at 255
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(colors=16)
    assert np.array_equal(np.asarray(decode_image(png_bytes(palette))), np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=100)
    decoded = np.asarray(decode_image(buffer.getvalue())).astype(int)
    assert decoded.shape == (8, 8, 3) and np.abs(decoded - rgb).mean() < 12  # colours kept, not inverted
    eight_bit = Image.fromarray(rgb)
    assert np.array_equal(np.asarray(decode_image(png_bytes(eight_bit))), rgb)  # unchanged path


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_truncated_shard_is_named(tmp_path):
    shards = write_synthetic_shards(str(tmp_path), num_train=6, num_val=0, resolution=16, seed=0)
    path = shards["train"].replace("{0000..0000}", "0000")
    data = open(path, "rb").read()
    with tarfile.open(path) as tar:
        cut = tar.getmembers()[5].offset_data + 10  # inside the third sample's image
    open(path, "wb").write(data[:cut])
    handler = Collect()
    logging.getLogger("data.tar_index").addHandler(handler)
    try:
        samples = index_tar(path)
    finally:
        logging.getLogger("data.tar_index").removeHandler(handler)
    assert any(f"shard {path} is truncated" in m for m in handler.messages), handler.messages
    assert len(samples) == 3  # two complete samples, the cut one fails when read (and is skipped, counted)


def test_skipped_samples_are_counted_in_the_training_metrics(tmp_path):
    from utils.run_layout import read_metrics

    shards = write_synthetic_shards(str(tmp_path / "s"), num_train=16, num_val=4, resolution=16, seed=0)
    path = shards["train"].replace("{0000..0000}", "0000")
    with tarfile.open(path) as tar:
        member = [m for m in tar.getmembers() if m.name.endswith(".png")][2]
    raw = bytearray(open(path, "rb").read())
    raw[member.offset_data:member.offset_data + member.size] = b"\0" * member.size  # an undecodable image
    open(path, "wb").write(bytes(raw))
    cfg = tiny_config(shards, tmp_path / "run", training={"max_train_steps": 4},
                      experiment={"save_every": 4, "eval_every": 100, "generate_every": 100, "log_every": 2,
                                  "max_train_examples": 8})
    TokenizerTrainer(cfg).train()
    records = read_metrics(tmp_path / "run")
    assert records[-1]["data/skipped_samples"] >= 1
    log = (tmp_path / "run" / "logs" / "log.txt").read_text()
    assert "Epoch 1 finished at step 2" in log and "unreadable sample(s) skipped so far" in log
