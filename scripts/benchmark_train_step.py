"""Seconds per Stage-I training step (tokenizer + discriminator updates, EMA) of a tokenizer config.

    python scripts/benchmark_train_step.py --config configs/tokenizer/maskbit_tokenizer_12bit.yaml \
        --resolution 256 --batch 1 --steps 3

Runs the real `TokenizerTrainer.train_step` on random images in three variants: reconstruction + quantizer
losses only; + GAN (discriminator step and LeCAM); + GAN + perceptual loss (ResNet-50 with RANDOM weights:
same cost, no download). Prints the median time per optimizer step and the peak memory. Each variant runs in a
fresh process: in one process the later variants inherit a warmed-up allocator and look faster than they are.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


import torch
from accelerate.state import AcceleratorState, GradientState

from training import TokenizerTrainer
from utils.config import load_config
from utils.errors import run_main

VARIANTS = {
    "rec + quantizer": {"losses.perceptual_loss": "none", "losses.discriminator_start": 10**9},
    "+ GAN": {"losses.perceptual_loss": "none", "losses.discriminator_start": 0},
    "+ GAN + perceptual": {"losses.perceptual_loss": "resnet50", "losses.perceptual_random_init": True,
                           "losses.discriminator_start": 0},
}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def time_variant(args, overrides: dict, output_dir: str) -> tuple[float, float]:
    argv = [f"config={args.config}", f"experiment.output_dir={output_dir}", "experiment.resume=false",
            "dataset.params.eval_shards_path_or_url=''",
            f"dataset.preprocessing.resolution={args.resolution}", f"training.per_gpu_batch_size={args.batch}",
            f"training.mixed_precision={args.mixed_precision}", "training.use_ema=true"]
    argv += [f"{k}={v}" for k, v in overrides.items()]
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"
    trainer = TokenizerTrainer(load_config(argv))
    for model in trainer.models.values():
        model.train()
    images = torch.rand(args.batch, 3, args.resolution, args.resolution)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        with trainer.accelerator.accumulate(*trainer.models.values()):
            trainer.train_step({"image": images})
        trainer.ema.update(trainer.unwrap("tokenizer"))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    trainer.accelerator.end_training()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return statistics.median(times), peak_memory_mb(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tokenizer/maskbit_tokenizer_12bit.yaml")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", dest="mixed_precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    print(f"config {args.config}, {args.resolution}px, batch {args.batch}, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads, mixed precision {args.mixed_precision}")
    if len(args.variants) == 1:
        with tempfile.TemporaryDirectory() as output_dir:
            seconds, memory = time_variant(args, VARIANTS[args.variants[0]], output_dir)
        print(f"{args.variants[0]:<22}{seconds:>10.3f}{memory:>12.0f}", flush=True)
        return
    print(f"{'variant':<22}{'s/step':>10}{'peak MiB':>12}", flush=True)
    for name in args.variants:
        argv = [a for a in sys.argv[1:] if a != "--variants" and a not in VARIANTS]
        result = subprocess.run([sys.executable, __file__, *argv, "--variants", name], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"variant '{name}' failed:\n{result.stderr[-3000:]}")
        print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    run_main(main, prog="benchmark_train_step.py")
