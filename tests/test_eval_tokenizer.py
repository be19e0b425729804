"""TokenizerEvaluator bookkeeping and scripts/eval_tokenizer.py end to end (1 vs 2 processes)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from eval_stand_ins import TinyFeatureNet, assert_job_throughput, free_port, init_gloo
from evaluation import TokenizerEvaluator, frechet_distance, inception_score, mae, mse, psnr, ssim, to_uint8

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TOKENIZER = {"hidden_channels": 32, "channel_mult": [1, 2], "num_resolutions": 2, "num_res_blocks": 1,
                  "token_size": 4}


def test_evaluator_averages_per_image_metrics_and_counts_codes():
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(5, 3, 16, 16, generator=gen)
    fake = (real + 0.1 * torch.randn(5, 3, 16, 16, generator=gen)).clamp(0, 1)
    indices = torch.randint(0, 8, (5, 4, 4), generator=gen)
    evaluator = TokenizerEvaluator(codebook_size=16, num_bits=4)
    evaluator.update(real[:2], fake[:2], indices[:2])
    evaluator.update(real[2:], fake[2:], indices[2:])
    out = evaluator.result()
    assert list(out) == ["MAE", "MSE", "PSNR", "SSIM", "CodebookUsage", "CodebookEntropy", "BitUsage"]
    for name, fn in (("MAE", mae), ("MSE", mse), ("PSNR", psnr), ("SSIM", ssim)):
        assert out[name] == pytest.approx(fn(fake, real).mean().item(), rel=1e-12)
    assert out["CodebookUsage"] == pytest.approx(len(indices.unique()) / 16)
    assert out["BitUsage"][3] == 0.0  # indices < 8 never set bit 3
    with pytest.raises(ValueError, match="min_encoding_indices"):
        evaluator.update(real, fake)


def fixed_batch(n: int = 6):
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(n, 3, 16, 16, generator=gen)
    fake = (real + 0.2 * torch.randn(n, 3, 16, 16, generator=gen)).clamp(0, 1)
    return real, fake, torch.randint(0, 16, (n, 4, 4), generator=gen)


def test_rfid_and_is_equal_direct_computation_on_the_features():
    real, fake, indices = fixed_batch()
    net = TinyFeatureNet()
    evaluator = TokenizerEvaluator(16, 4, inception=net)
    evaluator.update(real[:4], fake[:4], indices[:4])
    evaluator.update(real[4:], fake[4:], indices[4:])
    out = evaluator.result()
    (real_feats, _), (fake_feats, fake_logits) = net(to_uint8(real)), net(to_uint8(fake))
    stats = [(f.detach().numpy().mean(0), np.cov(f.detach().numpy(), rowvar=False)) for f in (real_feats, fake_feats)]
    assert out["rFID"] == pytest.approx(frechet_distance(*stats[0], *stats[1]), rel=1e-8)
    assert out["InceptionScore"] == pytest.approx(inception_score(fake_logits.detach()), rel=1e-10)


def _evaluate_share(rank, world_size, port, queue):
    init_gloo(rank, world_size, port)
    real, fake, indices = fixed_batch()
    evaluator = TokenizerEvaluator(16, 4, inception=TinyFeatureNet())
    for i in range(rank, len(real), world_size):  # interleaved shares, uneven batch counts are fine
        evaluator.update(real[i:i + 1], fake[i:i + 1], indices[i:i + 1])
    evaluator.all_reduce()
    queue.put((rank, evaluator.result()))
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_metrics():
    real, fake, indices = fixed_batch()
    single = TokenizerEvaluator(16, 4, inception=TinyFeatureNet())
    single.update(real, fake, indices)
    expected = single.result()
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_evaluate_share, args=(2, free_port(), queue), nprocs=2, start_method="spawn")
    results = dict(queue.get() for _ in range(2))
    for rank in (0, 1):
        assert results[rank].keys() == expected.keys()
        for key, value in expected.items():
            assert results[rank][key] == pytest.approx(value, rel=1e-6, abs=1e-12), key  # float32 SSIM/MSE


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory):
    """Synthetic eval shards, a random tiny tokenizer checkpoint and a config file using them."""
    from data import write_synthetic_shards
    from modeling import build_tokenizer

    root = tmp_path_factory.mktemp("eval_tok")
    patterns = write_synthetic_shards(str(root / "data"), 0, 5, resolution=32, seed=0)
    torch.manual_seed(0)
    torch.save(build_tokenizer({"model": {"vq_model": TINY_TOKENIZER}}).state_dict(), root / "tok.bin")
    config = root / "tiny.yaml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "model": {"vq_model": TINY_TOKENIZER},
        "dataset": {"params": {"eval_shards_path_or_url": patterns["val"], "num_workers_per_gpu": 1,
                               "pin_memory": False, "persistent_workers": False},
                    "preprocessing": {"resolution": 32}},
        "training": {"per_gpu_batch_size": 2},
        "evaluation": {"random_init": True, "compute_inception": False},
    }))
    return root, [f"config={config}", f"experiment.vqgan_checkpoint={root / 'tok.bin'}"]


def assert_metrics_close(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_script_one_and_two_processes_agree(eval_setup):
    """Inception is off here (its 2048-d sqrtm alone takes tens of seconds on CPU); its statistics are
    covered by the gloo test above."""
    root, args = eval_setup
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import eval_tokenizer

    single = eval_tokenizer.main(args + [f"experiment.output_dir={root / 'one'}"])
    record = json.loads((root / "one" / "metrics.json").read_text())
    protocol = record.pop("protocol")  # what the rFID was measured on
    assert_job_throughput(record.pop("throughput"), images=5, processes=1)
    assert protocol["num_images"] == 5 and protocol["reference_set"].endswith(".tar")
    assert "resized to 32" in protocol["preprocessing"] and "center crop 32x32" in protocol["preprocessing"]
    assert_metrics_close(record, single)
    assert (root / "one" / "reconstructions.png").is_file()
    assert list(single) == ["MAE", "MSE", "PSNR", "SSIM", "LPIPS", "CodebookUsage", "CodebookEntropy", "BitUsage",
                            "SkippedSamples"]
    assert len(single["BitUsage"]) == 4

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           os.path.join(REPO, "scripts", "eval_tokenizer.py"), *args, f"experiment.output_dir={root / 'two'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EVALUATION" in result.stdout and "Evaluating tokenizer model at 32 resolution." in result.stdout
    two = json.loads((root / "two" / "metrics.json").read_text())
    assert two.pop("protocol")["num_images"] == 5
    throughput = two.pop("throughput")  # `accelerate launch --cpu` may start a single process here
    assert_job_throughput(throughput, images=5, processes=throughput["num_processes"], output=result.stdout)
    assert_metrics_close(two, single)


def test_config_builds_the_requested_networks():
    from evaluation.builders import inception_from_config, lpips_from_config
    from utils.config import with_defaults

    config = with_defaults({"evaluation": {"random_init": True, "inception_dtype": "float32"}})
    assert inception_from_config(config, torch.device("cpu")).dtype == torch.float32
    assert lpips_from_config(config, torch.device("cpu")) is not None
    off = with_defaults({"evaluation": {"compute_inception": False, "compute_lpips": False}})
    assert inception_from_config(off, "cpu") is None and lpips_from_config(off, "cpu") is None
    with pytest.raises(ValueError, match="inception_dtype"):
        inception_from_config(with_defaults({"evaluation": {"inception_dtype": "fp16"}}), "cpu")
