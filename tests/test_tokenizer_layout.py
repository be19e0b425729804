"""Official tokenizer config values that the layout test (tests/test_registry.py) does not see."""
from pathlib import Path

from utils.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_headline_config_values():
    cfg = load_config([f"config={ROOT / 'configs/tokenizer/maskbit_tokenizer_12bit.yaml'}"])
    vq = cfg.model.vq_model
    assert (vq.codebook_size, vq.entropy_loss_weight, vq.entropy_loss_temperature) == (4096, 0.02, 0.01)
    assert cfg.losses.entropy_annealing_factor == 2.0 and cfg.optimizer.params.learning_rate == 1e-4
    assert cfg.lr_scheduler.params.learning_rate == 1e-4  # interpolated from the optimizer


def test_known_slips_of_the_official_configs_are_fixed():
    name = load_config([f"config={ROOT / 'configs/tokenizer/vqgan_plus_12bit.yaml'}"]).experiment.name
    assert name == "vqgan_plus_12bit"
    shards = load_config([f"config={ROOT / 'configs/tokenizer/maskbit_tokenizer_18bit.yaml'}"]).dataset.params
    assert shards.eval_shards_path_or_url.startswith("DATA_PATH/imagenet_shards/")
