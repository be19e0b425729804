"""scripts/reconstruct.py on a folder of the user's own images, with a tiny random tokenizer."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.transforms import EvalTransform, to_float
from evaluation import psnr, ssim
from modeling import build_tokenizer, load_pretrained
from utils.config import ConfigError, load_config
from utils.errors import MaskbitError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.vq_model.token_size=6", "model.vq_model.hidden_channels=32", "model.vq_model.channel_mult=[1,2]",
        "model.vq_model.num_resolutions=2", "model.vq_model.num_res_blocks=1", "dataset.preprocessing.resolution=16",
        "training.per_gpu_batch_size=2"]


def _script():
    spec = importlib.util.spec_from_file_location("reconstruct_script", ROOT / "scripts" / "reconstruct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    torch.save(build_tokenizer(load_config(TINY)).state_dict(), tmp_path / "tok.bin")
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (20, 24)), ("b.jpg", (16, 16)), ("sub/c.png", (40, 18))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.png").write_bytes(b"not an image")
    return tmp_path, photos, TINY + [f"experiment.vqgan_checkpoint={tmp_path / 'tok.bin'}"]


def test_writes_reconstructions_grid_and_true_metrics(setup, capsys):
    tmp_path, photos, args = setup
    out = tmp_path / "recon"
    metrics = _script().main(args + [f"input={photos}", f"output={out}"])
    throughput = metrics["throughput"]  # the 3 readable images, one process
    assert throughput["images"] == 3 and throughput["num_processes"] == 1 and throughput["seconds"] > 0
    rate = throughput["images_per_sec"]  # seconds are recorded rounded to 1 ms
    assert abs(rate * throughput["seconds"] - 3) <= rate * 0.0005 + 1e-9
    assert "images/s over 1 process(es)" in capsys.readouterr().out
    assert [r["file"] for r in metrics["images"]] == ["a.png", "b.jpg", "sub/c.png"]
    assert [s["file"] for s in metrics["skipped"]] == ["broken.png"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert Image.open(out / "grid.png").size == (2 + 6 * (16 + 2), 2 + 16 + 2)  # 3 pairs in one row
    # the metrics are those of the cropped original against the tokenizer's reconstruction, recomputed here
    tokenizer = load_pretrained(build_tokenizer(load_config(args)), tmp_path / "tok.bin")
    x = to_float(EvalTransform(16)(Image.open(photos / "sub" / "c.png").convert("RGB")))[None]
    with torch.no_grad():
        rec = tokenizer(x)[0].clamp(0, 1)
    record = metrics["images"][2]
    assert record["PSNR"] == pytest.approx(psnr(x, rec).item(), rel=1e-9)
    assert record["SSIM"] == pytest.approx(ssim(x, rec).item(), rel=1e-6)
    saved = to_float(torch.from_numpy(np.array(Image.open(out / "sub" / "c.png"))).permute(2, 0, 1))
    assert (saved - rec[0]).abs().max() <= 1 / 255 + 1e-6  # written as an 8-bit PNG


def test_bad_input_says_what_to_pass(setup, tmp_path):
    _, photos, args = setup
    script = _script()
    with pytest.raises(ConfigError, match="output=PATH"):
        script.main(args + [f"input={photos}"])
    with pytest.raises(MaskbitError, match="does not exist"):
        script.main(args + [f"input={tmp_path / 'nope'}", f"output={tmp_path / 'o'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskbitError, match="no images"):
        script.main(args + [f"input={tmp_path / 'empty'}", f"output={tmp_path / 'o'}"])
