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


MASKGIT_V2 = ["config=" + os.path.join(ROOT, "configs", "maskgit_pytorch", "maskgit_pytorch_v2_tiny_256.yaml"),
              "model.maskgit.hidden_dim=32", "model.maskgit.depth=1", "model.maskgit.heads=2",
              "model.maskgit.mlp_dim=64", "model.maskgit.nclass=10", "model.vq_model.codebook_size=16",
              "model.vq_model.hidden_channels=32", "model.vq_model.channel_mult=[1,2,2]",
              "model.vq_model.num_res_blocks=1", "dataset.preprocessing.resolution=16", "sample.device=cpu",
              "model.maskgit_sampler.step=4", "model.maskgit_sampler.w=2.0", "sample.classes=[3,5]",
              "sample.per_class=2"]


def test_sample_script_runs_the_generator_family_sampler(tmp_path, checkpoints):
    """A MaskGIT-pytorch v2 transformer (released .pth / LlamaGen .pt formats) with its Halton sampler, and MaskBit's
    generator switched to the Halton sampler: the script's grid is each sampler's output for seeds seed + k."""
    from modeling.maskgit_pytorch import BitTokenGrid, sample

    cfg = load_config(MASKGIT_V2)
    torch.manual_seed(0)
    vqgan, transformer = build_tokenizer(cfg), build_generator(cfg)
    torch.save({"model": vqgan.state_dict()}, tmp_path / "vq_ds16_c2i.pt")
    torch.save({"iter": 1, "model_state_dict": transformer.state_dict()}, tmp_path / "ImageNet_256_tiny.pth")
    args = MASKGIT_V2 + [f"experiment.vqgan_checkpoint={tmp_path / 'vq_ds16_c2i.pt'}",
                         f"experiment.generator_checkpoint={tmp_path / 'ImageNet_256_tiny.pth'}"]
    script = _script()
    cfg = load_config(args + ["sample.batch_size=3"])
    generator, tokenizer = script.load_models(cfg, torch.device("cpu"))
    images = script.generate_grid(generator, tokenizer, cfg, torch.device("cpu"))
    code = sample(generator, [3, 3, 5, 5], version=2, scheduler="halton", step=4, w=2.0, seeds=[0, 1, 2, 3])["code"]
    expected = ((tokenizer.decode_code(code.clamp(0, 15)) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)  # decoded in batches of 3 + 1 vs 4
    assert script.main(args + [f"sample.output={tmp_path / 'v2.png'}"]).is_file()

    switched = load_config(TINY + checkpoints + ["model.mlm_model.sampler=halton", "model.maskgit_sampler.step=4",
                                                 "sample.classes=[3]", "sample.per_class=2"])
    generator, tokenizer = script.load_models(switched, torch.device("cpu"))
    images = script.generate_grid(generator, tokenizer, switched, torch.device("cpu"))
    grid_model = BitTokenGrid(generator)
    code = sample(grid_model, [3, 3], version=2, scheduler="halton", step=4, seeds=[0, 1])["code"]
    expected = tokenizer.decode_tokens(code.clamp(0, grid_model.codebook_size - 1)).clamp(0, 1)
    torch.testing.assert_close(images, expected, rtol=0, atol=0)
    default = load_config(TINY + checkpoints + ["sample.classes=[3]", "sample.per_class=2"])
    assert not torch.equal(images, script.generate_grid(generator, tokenizer, default, torch.device("cpu")))
