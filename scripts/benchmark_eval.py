"""Throughput of the evaluation pieces: Inception features, the tokenizer eval loop, the Fréchet distance.

The Inception rows time `FIDInceptionV3.features` (pool, ADM spatial and logits in one pass), the network of
scripts/evaluate_samples.py and the gFID / rFID scripts; the input is resized to 299x299 whatever --resolution.

    python scripts/benchmark_eval.py [--device cpu|cuda] [--batch 4] [--batches 3] [--resolution 256] [--reduced]
    python scripts/benchmark_eval.py --inception-only      # ADM feature extraction (pool + spatial + logits) only

All networks use random weights (timing only). The tokenizer is the full VQGAN+ 12-bit model (54M params)
unless --reduced (hidden 32, two levels). The eval loop row is tokenizer forward + every metric (Inception on
originals and reconstructions, LPIPS, PSNR, SSIM, codebook) per image.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from evaluation import TokenizerEvaluator, build_inception, frechet_distance, to_uint8
from evaluation.lpips import LPIPS
from modeling import build_tokenizer
from utils.errors import run_main

REDUCED = {"hidden_channels": 32, "channel_mult": [1, 2], "num_resolutions": 2, "num_res_blocks": 1}


def timed(fn, batches: int, device: torch.device) -> float:
    """Seconds per call of fn() (one warm-up call first)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / batches


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--reduced", action="store_true", help="small tokenizer instead of the full 12-bit one")
    parser.add_argument("--inception-only", action="store_true", help="only the Inception feature rows")
    args = parser.parse_args()
    device, b, r = torch.device(args.device), args.batch, args.resolution
    images = torch.rand(b, 3, r, r, device=device)
    rows = []

    for dtype in (torch.float64, torch.float32):
        inception = build_inception(random_init=True, dtype=dtype, device=device)
        seconds = timed(lambda: inception.features(to_uint8(images)), args.batches, device)
        rows.append((f"Inception features, one pass ({str(dtype)[6:]})", b / seconds))
    if args.inception_only:
        return report(args, device, rows)

    vq = {"token_size": 12, **(REDUCED if args.reduced else {})}
    tokenizer = build_tokenizer({"model": {"vq_model": vq}}).to(device).eval()
    name = "reduced" if args.reduced else "full 12-bit"
    rows.append((f"tokenizer forward ({name})", b / timed(lambda: tokenizer(images), args.batches, device)))
    evaluator = TokenizerEvaluator(2 ** 12, 12, build_inception(random_init=True, device=device),
                                   LPIPS(random_init=True).to(device), device)

    def eval_step():
        reconstructions, info = tokenizer(images)
        evaluator.update(images, reconstructions.clamp(0, 1), info["min_encoding_indices"])

    rows.append((f"eval loop, all metrics ({name})", b / timed(eval_step, args.batches, device)))

    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(2100, 2048)) for _ in range(2)]
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in feats]
    start = time.perf_counter()
    frechet_distance(*stats[0], *stats[1])
    fid_seconds = time.perf_counter() - start

    report(args, device, rows)
    print(f"{'Frechet distance, 2048-d (scipy sqrtm)':<42}{fid_seconds:>9.1f}s")


def report(args, device: torch.device, rows: list) -> None:
    print(f"device {device}, batch {args.batch}, {args.resolution}x{args.resolution}, {args.batches} timed batches, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'what':<42}{'images/s':>10}")
    for what, rate in rows:
        print(f"{what:<42}{rate:>10.2f}")


if __name__ == "__main__":
    run_main(main, prog="benchmark_eval.py")
