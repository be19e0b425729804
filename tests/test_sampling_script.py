"""scripts/sample.py end to end with a tiny random tokenizer + generator written to checkpoint files."""
import importlib.util
import os

import pytest
import torch
from PIL import Image

from modeling import build_generator, build_tokenizer
from utils.config import load_config
from utils.errors import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["model.vq_model.token_size=6", "model.vq_model.hidden_channels=32", "model.vq_model.channel_mult=[1,2]",
        "model.vq_model.num_resolutions=2", "model.vq_model.num_res_blocks=1", "model.mlm_model.hidden_dim=32",
        "model.mlm_model.depth=1", "model.mlm_model.heads=4", "model.mlm_model.mlp_dim=64",
        "model.mlm_model.num_steps=4", "dataset.preprocessing.resolution=16", "sample.device=cpu"]




def _script():
    spec = importlib.util.spec_from_file_location("sample_script", os.path.join(ROOT, "scripts", "sample.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkpoints(tmp_path):
    cfg = load_config(TINY)
    torch.manual_seed(0)
    torch.save(build_tokenizer(cfg).state_dict(), tmp_path / "tokenizer.bin")
    generator = build_generator(cfg).state_dict()
    released = {k.replace("input_proj", "token_emb"): v for k, v in generator.items()}  # released key names
    torch.save(released, tmp_path / "generator.bin")
    return [f"experiment.vqgan_checkpoint={tmp_path / 'tokenizer.bin'}",
            f"experiment.generator_checkpoint={tmp_path / 'generator.bin'}"]


def test_sample_script_writes_grid_independent_of_batch_size(tmp_path, checkpoints):
    script = _script()
    args = TINY + checkpoints + ["sample.classes=[3,5]", "sample.per_class=3"]
    output = script.main(args + [f"sample.output={tmp_path / 'grid.png'}", "sample.batch_size=4"])
    width, height = Image.open(output).size
    assert (width, height) == (2 + 3 * (16 + 2), 2 + 2 * (16 + 2))  # 3 columns, one row per class

    cfg = load_config(args + ["sample.batch_size=2"])
    generator, tokenizer = script.load_models(cfg, torch.device("cpu"))
    small_batches = script.generate_grid(generator, tokenizer, cfg, torch.device("cpu"))
    one_batch = script.generate_grid(generator, tokenizer, load_config(args + ["sample.batch_size=6"]),
                                     torch.device("cpu"))
    assert small_batches.shape == (6, 3, 16, 16) and 0 <= small_batches.min() and small_batches.max() <= 1
    torch.testing.assert_close(small_batches, one_batch)


def test_sample_script_requires_real_checkpoint_paths(capsys):
    script = _script()
    with pytest.raises(SystemExit) as exit_info:  # what `python scripts/sample.py ...` runs
        run_main(lambda: script.main(TINY + ["experiment.generator_checkpoint=MODEL_PATH/maskbit_generator_12bit.bin"]),
                 prog="sample.py")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sample.py: error: Set experiment.vqgan_checkpoint") and "Traceback" not in err
