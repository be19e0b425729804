"""Every official tokenizer config loads, and its model has exactly the official state-dict layout and size.

Full-size models are built on the meta device (no memory, no compute).
"""
import json
import os
from pathlib import Path

import pytest
import torch

from modeling import build_discriminator, build_tokenizer
from utils.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "tokenizer").glob("*.yaml")) + sorted((ROOT / "configs/external").glob("*.yaml"))


def layout(layout_dir, name):
    with open(os.path.join(layout_dir, f"{name}.json")) as f:
        return json.load(f)


def entries(module):
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()]


def test_all_official_configs_are_present():
    assert {c.stem for c in CONFIGS} == {
        "maskbit_tokenizer_10bit", "maskbit_tokenizer_12bit", "maskbit_tokenizer_14bit", "maskbit_tokenizer_16bit",
        "maskbit_tokenizer_18bit", "vqgan_plus_10bit", "vqgan_plus_12bit", "maskgit_tokenizer",
        "taming_vqgan_tokenizer"}


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
def test_tokenizer_state_dict_equals_official_layout(config_path, layout_dir):
    cfg = load_config([f"config={config_path}"])
    with torch.device("meta"):
        model = build_tokenizer(cfg)
    expected = layout(layout_dir, config_path.stem)
    assert entries(model) == expected["keys"]  # names, shapes, dtypes and order
    assert sum(p.numel() for p in model.parameters()) == expected["params"]
    for name, count in expected["params_by_submodule"].items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == count, name
    assert sum(b.numel() for b in model.buffers()) == expected["buffer_elements"]


@pytest.mark.parametrize("config_path", [c for c in CONFIGS if "external" not in str(c)], ids=lambda p: p.stem)
def test_discriminator_state_dict_equals_official_layout(config_path, layout_dir):
    cfg = load_config([f"config={config_path}"])
    with torch.device("meta"):
        discriminator = build_discriminator(cfg)
    expected = layout(layout_dir, f"{config_path.stem}__discriminator")
    assert entries(discriminator) == expected["keys"]
    assert sum(p.numel() for p in discriminator.parameters()) == expected["params"] == 7_431_297


def test_headline_parameter_count_and_config_values():
    cfg = load_config([f"config={ROOT / 'configs/tokenizer/maskbit_tokenizer_12bit.yaml'}"])
    with torch.device("meta"):
        model = build_tokenizer(cfg)
    assert sum(p.numel() for p in model.parameters()) == 54_479_247
    vq = cfg.model.vq_model
    assert (vq.codebook_size, vq.entropy_loss_weight, vq.entropy_loss_temperature) == (4096, 0.02, 0.01)
    assert cfg.losses.entropy_annealing_factor == 2.0 and cfg.optimizer.params.learning_rate == 1e-4
    assert cfg.lr_scheduler.params.learning_rate == 1e-4  # interpolated from the optimizer


def test_known_slips_of_the_official_configs_are_fixed():
    name = load_config([f"config={ROOT / 'configs/tokenizer/vqgan_plus_12bit.yaml'}"]).experiment.name
    assert name == "vqgan_plus_12bit"
    shards = load_config([f"config={ROOT / 'configs/tokenizer/maskbit_tokenizer_18bit.yaml'}"]).dataset.params
    assert shards.eval_shards_path_or_url.startswith("DATA_PATH/imagenet_shards/")
