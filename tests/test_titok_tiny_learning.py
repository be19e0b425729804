"""The tiny TiTok of configs/quickstart/titok_tiny_*.yaml learns on a CPU, on the built-in synthetic data: a trained
proxy (scripts/titok_tiny_proxy.py), stage 1 on its codes, stage 2 from the stage-1 weights and the proxy's decoder,
then the generator on the stage-2 tokenizer's 1D tokens, each with its config's own recipe and step count. The
stage-2 tokenizer's held-out PSNR (scripts/eval_tokenizer.py) must pass the mean-colour PSNR of the same images,
and the generator's loss must fall. Figures and margins: docs/quickstart_experiments.md, "Tiny TiTok".
"""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import reset_accelerate_state
from data import write_synthetic_shards
from evaluation import mean_colour_psnr
from modeling import build_tokenizer, load_pretrained
from train_utils import REPO, load_script
from training.titok_generator_trainer import TiTokGeneratorTrainer
from training.titok_trainer import TiTokTokenizerTrainer
from utils.config import load_config
from utils.run_layout import read_metrics

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
CONFIGS = "configs/quickstart/titok_tiny_{}.yaml"
NUM_TRAIN, NUM_VAL = 1024, 64


def write_proxy(path, *args: str) -> dict:
    """Run scripts/titok_tiny_proxy.py; returns its held-out report of the proxy's quantized reconstructions."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "titok_tiny_proxy.py"), "--output", str(path),
                             *args], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.splitlines()[0])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("titok_tiny")
    shards = write_synthetic_shards(str(root / "shards"), NUM_TRAIN, NUM_VAL, resolution=32, seed=0)
    return {"root": root, "shards": shards}


def config(stage, assets, proxy, output_dir=None, **overrides):
    args = [f"config={CONFIGS.format(stage)}", "experiment.logger=tensorboard",
            f"experiment.output_dir={output_dir or assets['root'] / stage}", "dataset.params.num_workers_per_gpu=0",
            f"dataset.params.train_shards_path_or_url={assets['shards']['train']}",
            f"dataset.params.eval_shards_path_or_url={assets['shards']['val']}",
            f"model.vq_model.pretrained_tokenizer_weight={proxy}",
            "evaluation.compute_inception=false", "evaluation.compute_lpips=false",
            *[f"{k}={v}" for k, v in overrides.items()]]
    return load_config(args)


def losses(run_dir, key):
    return [r[key] for r in read_metrics(run_dir / "metrics.jsonl") if key in r]


@pytest.mark.slow  # 432 s on one thread, 400 s on two (shared 2-core machine): proxy + 1,300 tokenizer steps
def test_tiny_titok_learns_past_the_mean_colour_on_a_cpu(assets):
    root = assets["root"]
    proxy = root / "proxy.bin"
    report = write_proxy(proxy)  # the script's defaults: 300 autoencoder steps, spread codebook
    held_out = load_script("titok_tiny_proxy").synthetic_images("val", NUM_VAL, 0)  # the images of the val shard
    baseline = float(mean_colour_psnr(held_out).mean())
    assert report["psnr"] > baseline + 0.5 and report["codes_used"] > 500, (report, baseline)

    stage1 = config("stage1", assets, proxy)
    TiTokTokenizerTrainer(stage1).train()
    s1 = losses(root / "stage1", "train/reconstruction_loss")  # cross-entropy of the proxy codes
    assert s1[-1] < s1[0] - 2.0 and math.isfinite(s1[-1]), s1
    reset_accelerate_state()

    stage2 = config("stage2", assets, proxy, **{"experiment.init_weight": root / "stage1" / "pytorch_model.bin"})
    TiTokTokenizerTrainer(stage2).train()
    reset_accelerate_state()
    evaluated = load_script("eval_tokenizer").main([
        f"config={CONFIGS.format('stage2')}", f"experiment.vqgan_checkpoint={root / 'stage2' / 'pytorch_model.bin'}",
        f"dataset.params.eval_shards_path_or_url={assets['shards']['val']}", "dataset.params.num_workers_per_gpu=0",
        f"model.vq_model.pretrained_tokenizer_weight={proxy}", f"experiment.output_dir={root / 'eval'}",
        "evaluation.compute_inception=false", "evaluation.compute_lpips=false"])
    assert evaluated["PSNR"] > baseline, (evaluated["PSNR"], baseline)
    reset_accelerate_state()

    stage2_weights = root / "stage2" / "pytorch_model.bin"
    generator = config("generator", assets, proxy, **{"experiment.vqgan_checkpoint": stage2_weights})
    TiTokGeneratorTrainer(generator).train()
    g = losses(root / "generator", "train/loss")
    assert np.mean(g[-2:]) < 0.9 * g[0], g


def test_stage2_runs_its_gan_and_decodes_proxy_grids(assets, tmp_path):
    """The hinge GAN of stage 2 from `discriminator_start` (the learning run above ends before it), from a few
    stage-1 steps on the codes of a random proxy."""
    proxy = tmp_path / "random_proxy.bin"
    write_proxy(proxy, "--train-steps", "0", "--num-images", "256", "--num-val", "8")
    small = {"training.per_gpu_batch_size": 4, "experiment.log_every": 2}
    stage1 = config("stage1", assets, proxy, tmp_path / "s1", **small, **{"training.max_train_steps": 4})
    TiTokTokenizerTrainer(stage1).train()
    tokenizer = load_pretrained(build_tokenizer(stage1), tmp_path / "s1" / "pytorch_model.bin").eval()
    with torch.no_grad():
        logits, _ = tokenizer(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 1024, 8, 8)  # one logit per proxy code and cell: the proxy's 8x8 grid
    reset_accelerate_state()
    stage2 = config("stage2", assets, proxy, tmp_path / "s2", **small, **{
        "training.max_train_steps": 4, "losses.discriminator_start": 2,
        "experiment.init_weight": tmp_path / "s1" / "pytorch_model.bin"})
    TiTokTokenizerTrainer(stage2).train()
    assert "train/discriminator_loss" in read_metrics(tmp_path / "s2" / "metrics.jsonl")[-1]
