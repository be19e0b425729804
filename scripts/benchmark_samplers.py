"""Time per sampling step of each sampler on one MaskBit generator: MaskBit's own, v1 confidence, v2 confidence, Halton.

    python scripts/benchmark_samplers.py --config configs/generator/maskbit_generator_12bit.yaml \
        --hidden-dim 256 --depth 4 --batch 8 --steps 8 --repeats 5 --device cpu

The generator (random weights, widths reduced by the flags; 0 keeps the config's) is the same for every row; the
MaskGIT-pytorch samplers see it through `BitTokenGrid` (joint logits over the 2^bits full tokens), with guidance on
and per-sample seeds, decode excluded. Each row: one warm-up run, then `--repeats` timed runs of `--steps` steps;
reported is the median run time divided by the steps. "forward" is one guided forward of the generator alone
(doubled batch), the floor every sampler pays per step.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from modeling import build_generator, sample
from modeling.maskgit_pytorch import BitTokenGrid
from modeling.maskgit_pytorch import sample as maskgit_sample
from utils.config import load_config
from utils.errors import run_main

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocation, kernel selection
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/generator/maskbit_generator_12bit.yaml")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="sampling steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="generator autocast dtype")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    overrides = [f"config={args.config}"]
    if args.hidden_dim:
        heads = max(1, args.hidden_dim // 64)
        overrides += [f"model.mlm_model.hidden_dim={args.hidden_dim}", f"model.mlm_model.heads={heads}",
                      f"model.mlm_model.mlp_dim={4 * args.hidden_dim}"]
    if args.depth:
        overrides.append(f"model.mlm_model.depth={args.depth}")
    cfg = load_config(overrides)
    torch.manual_seed(0)
    generator = build_generator(cfg).to(device).eval()
    grid_model = BitTokenGrid(generator).to(device)
    labels = torch.arange(args.batch) % generator.num_classes
    seeds = list(range(args.batch))
    steps = args.steps
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def forward():
        tokens = torch.full((2 * args.batch, generator.seq_len, generator.splits), generator.mask_token,
                            device=device)
        keep = torch.zeros(args.batch, dtype=torch.bool, device=device)
        with torch.no_grad(), autocast:
            generator(tokens, torch.cat([labels, labels]).to(device), torch.cat([keep, ~keep]))

    mgp = dict(step=steps, w=3.0, seeds=seeds, autocast_dtype=dtype)
    rows = {
        "forward (guided, doubled batch)": (forward, 1),
        "MaskBit (modeling.sampling)": (lambda: sample(generator, None, labels, seeds=seeds, num_steps=steps,
                                                       autocast_dtype=dtype), steps),
        "v1 confidence": (lambda: maskgit_sample(grid_model, labels, version=1, scheduler="confidence", **mgp), steps),
        "v2 confidence": (lambda: maskgit_sample(grid_model, labels, version=2, scheduler="confidence", **mgp), steps),
        "v2 Halton": (lambda: maskgit_sample(grid_model, labels, version=2, scheduler="halton", **mgp), steps),
    }
    params = sum(p.numel() for p in generator.parameters())
    print(f"{cfg.experiment.name}: generator {params / 1e6:.1f}M parameters, {generator.seq_len} tokens x "
          f"{generator.splits} splits ({2 ** generator.bits} full tokens), batch {args.batch}, {steps} steps, "
          f"{args.dtype}, device {device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'sampler':<34} {'ms / step':>10}")
    for name, (fn, per_run) in rows.items():
        print(f"{name:<34} {median_seconds(fn, args.repeats, device) / per_run * 1e3:>10.1f}")


if __name__ == "__main__":
    run_main(main, prog="benchmark_samplers.py")
