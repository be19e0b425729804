"""Throughput of Stage-II token sources: tokenizing augmented images every step (official) vs pre-tokenized shards.

    python scripts/benchmark_tokens.py --config configs/quickstart/generator_tiny.yaml --batch 32 --steps 20
    python scripts/benchmark_tokens.py --config configs/generator/maskbit_generator_12bit.yaml --batch 2 --steps 3 \
        --images 16 --train-steps 0

Uses synthetic shards at the config's resolution and a tokenizer with random weights (speed does not depend on
the weights). Prints, per source, images/s of the token source alone (data loading + tokenizer encode, or token
reads) and, with --train-steps > 0, samples/s of whole GeneratorTrainer steps (forward, backward, AdamW, EMA).
The one-off cost of pretokenizing is printed too. Timings on a shared machine are noisy: repeat and compare.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from accelerate import PartialState

from data import build_train_dataloader, build_token_stream, write_synthetic_shards
from data.pretokenize import pretokenize
from modeling import build_tokenizer
from modeling.tokenizer import tokenize
from training.generator_trainer import GeneratorTrainer
from training.token_source import load_frozen_tokenizer
from utils.config import load_config
from utils.errors import run_main
from utils.run_layout import read_metrics


def source_throughput(batches, tokens_of, steps: int, batch: int) -> float:
    """images/s over `steps` batches after one warm-up batch."""
    tokens_of(next(batches))
    start = time.perf_counter()
    for _ in range(steps):
        tokens_of(next(batches))
    return steps * batch / (time.perf_counter() - start)


def train_throughput(cfg, output_dir: Path, steps: int) -> float:
    """samples/s logged by GeneratorTrainer over `steps` steps, after `steps` warm-up steps."""
    cfg.experiment.update(output_dir=str(output_dir), log_every=steps, save_every=10**9, generate_every=10**9)
    cfg.training.max_train_steps = 2 * steps
    GeneratorTrainer(cfg).train()
    return read_metrics(output_dir / "metrics.jsonl")[-1]["perf/samples_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart/generator_tiny.yaml")
    parser.add_argument("--batch", type=int, default=32, help="images per batch")
    parser.add_argument("--steps", type=int, default=20, help="timed batches of the token sources")
    parser.add_argument("--train-steps", type=int, default=20, help="timed trainer steps (0: skip)")
    parser.add_argument("--images", type=int, default=512, help="synthetic train images")
    parser.add_argument("--views", type=int, default=2, help="pretokenized views per image")
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers of the image source")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    root = Path(tempfile.mkdtemp(prefix="benchmark_tokens_"))
    cfg = load_config([f"config={args.config}"])
    resolution = cfg.dataset.preprocessing.resolution
    shards = write_synthetic_shards(str(root / "shards"), num_train=args.images, num_val=0, resolution=resolution)
    torch.manual_seed(0)
    torch.save(build_tokenizer(cfg).state_dict(), root / "tokenizer.bin")
    cfg.experiment.vqgan_checkpoint = str(root / "tokenizer.bin")
    cfg.dataset.params.update(train_shards_path_or_url=shards["train"], num_workers_per_gpu=args.workers,
                              pretokenized_shards_path_or_url=str(root / "tokens"), pretokenize_num_views=args.views)
    cfg.training.per_gpu_batch_size = args.batch
    state = PartialState()
    tokenizer = load_frozen_tokenizer(cfg, state.device)
    print(f"{args.config}: {resolution} px, batch {args.batch}, device {state.device}, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers")

    start = time.perf_counter()
    summary = pretokenize(cfg.dataset, tokenizer, state, cfg.training.per_gpu_batch_size, cfg.training.seed,
                          show_progress=False)
    print(f"pretokenize (one-off): {args.images} images x {args.views} views in {time.perf_counter() - start:.2f} s "
          f"({summary['bytes'] / args.images:.0f} bytes per image on disk)")

    images = iter(build_train_dataloader(cfg.dataset, cfg.training.per_gpu_batch_size, cfg.training.seed))
    on_the_fly = source_throughput(images, lambda b: tokenize(tokenizer, b["image"].to(state.device)), args.steps,
                                   args.batch)
    tokens = iter(build_token_stream(cfg.dataset.params.pretokenized_shards_path_or_url,
                                     cfg.training.per_gpu_batch_size, cfg.training.seed))
    stored = source_throughput(tokens, lambda b: b["tokens"].to(state.device), args.steps, args.batch)
    print(f"token source   on the fly: {on_the_fly:10.1f} images/s | pretokenized: {stored:10.1f} images/s "
          f"| x{stored / on_the_fly:.1f}")
    if args.train_steps:  # alternate the two sources (twice each, best run kept) against machine noise
        fly_cfg = cfg.copy()
        fly_cfg.dataset.params.pretokenized_shards_path_or_url = ""
        runs = {"fly": [], "pre": []}
        for i in range(2):
            runs["fly"].append(train_throughput(fly_cfg.copy(), root / f"train_on_the_fly_{i}", args.train_steps))
            runs["pre"].append(train_throughput(cfg.copy(), root / f"train_pretokenized_{i}", args.train_steps))
        fly, pre = max(runs["fly"]), max(runs["pre"])
        print(f"training step  on the fly: {fly:10.1f} samples/s | pretokenized: {pre:10.1f} samples/s "
              f"| x{pre / fly:.2f}")
    print(f"(files in {root}; the machine may be shared: timings are noisy)")


if __name__ == "__main__":
    run_main(main, prog="benchmark_tokens.py")
