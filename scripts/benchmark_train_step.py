"""Stage-I training step (tokenizer + discriminator updates, EMA) of a tokenizer config, over the fast-path flags.

    python scripts/benchmark_train_step.py --config configs/tokenizer/maskbit_tokenizer_12bit.yaml \
        --resolution 256 --batch 1 --steps 3 --flags "fp32 eager" bf16 channels_last compile grad_ckpt

Runs the real `TokenizerTrainer.train_step` on random images. Loss variants (`--variants`): reconstruction +
quantizer losses only; + GAN (discriminator step and LeCAM; the default); + GAN + perceptual loss (ResNet-50 with
RANDOM weights: same cost, no download). Fast paths (`--flags`): fp32 eager (the official numerics), bf16
autocast, channels_last, torch.compile, gradient checkpointing of the tokenizer's stages; each is one row, the
others off.

Per row: the median time per optimizer step (warm-up steps excluded, CUDA synchronised), images/s, peak memory
(CUDA: max_memory_allocated; CPU: the process peak RSS) and MFU = images/s x 3 x the tokenizer's forward FLOPs per
image (`torch.utils.flop_counter`; the discriminator is not counted) / the FLOP/s of a large matmul measured at the
start of the same run in the row's precision (as nanoGPT's bench). Each row runs in a fresh process: in one
process the later rows inherit a warmed-up allocator and look faster than they are.
"""
import argparse
import json
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
from training.throughput import measure_matmul_flops
from utils.config import load_config
from utils.errors import run_main

VARIANTS = {
    "rec + quantizer": {"losses.perceptual_loss": "none", "losses.discriminator_start": 10**9},
    "+ GAN": {"losses.perceptual_loss": "none", "losses.discriminator_start": 0},
    "+ GAN + perceptual": {"losses.perceptual_loss": "resnet50", "losses.perceptual_random_init": True,
                           "losses.discriminator_start": 0},
}

FLAGS = {
    "fp32 eager": {},
    "bf16": {"training.mixed_precision": "bf16"},
    "channels_last": {"training.channels_last": True},
    "compile": {"training.compile": True},
    "grad_ckpt": {"training.gradient_checkpointing": True},
}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def time_variant(args, overrides: dict, output_dir: str) -> dict:
    argv = [f"config={args.config}", f"experiment.output_dir={output_dir}", "experiment.resume=false",
            "dataset.params.eval_shards_path_or_url=''",
            f"dataset.preprocessing.resolution={args.resolution}", f"training.per_gpu_batch_size={args.batch}",
            "training.use_ema=true"]
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
    flops = trainer.flops_per_sample()
    compiled = all(getattr(trainer.unwrap(name).forward, "is_compiled", False) for name in trainer.models)
    trainer.accelerator.end_training()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return {"seconds": statistics.median(times), "peak_mib": peak_memory_mb(device), "flops_per_image": flops,
            "eager_fallback": bool(args.flags[0] == "compile" and not compiled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tokenizer/maskbit_tokenizer_12bit.yaml")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation happens here)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="*", default=["+ GAN"], choices=list(VARIANTS))
    parser.add_argument("--flags", nargs="*", default=list(FLAGS), choices=list(FLAGS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # one row, in this fresh process
        overrides = {"training.mixed_precision": "no", **VARIANTS[args.variants[0]], **FLAGS[args.flags[0]]}
        with tempfile.TemporaryDirectory() as output_dir:
            print(json.dumps(time_variant(args, overrides, output_dir)), flush=True)
        return
    device = torch.device(args.device)
    peaks = {"fp32": measure_matmul_flops(device, torch.float32), "bf16": measure_matmul_flops(device, torch.bfloat16)}
    print(f"config {args.config}, {args.resolution}px, batch {args.batch}, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads; measured matmul peak: fp32 {peaks['fp32'] / 1e12:.3f} TFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s")
    memory = "peak MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"{'losses':<20}{'flags':<15}{'ms/step':>10}{'images/s':>10}{memory:>14}{'MFU':>8}", flush=True)
    base = [a for a in sys.argv[1:]]
    for variant in args.variants:
        for flag in args.flags:
            argv = _without_lists(base) + ["--variants", variant, "--flags", flag, "--child"]
            result = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{variant:<20}{flag:<15} failed: {result.stderr.strip().splitlines()[-1][:200]}", flush=True)
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            images_per_s = args.batch / row["seconds"]
            peak = peaks["bf16" if flag == "bf16" else "fp32"]
            mfu = images_per_s * row["flops_per_image"] / peak
            flag = f"{flag} (eager!)" if row["eager_fallback"] else flag  # compile fell back to eager
            print(f"{variant:<20}{flag:<15}{row['seconds'] * 1e3:>10.1f}{images_per_s:>10.2f}{row['peak_mib']:>14.0f}"
                  f"{mfu:>8.1%}", flush=True)


def _without_lists(argv: list[str]) -> list[str]:
    """argv without the --variants / --flags lists (the child gets one value of each)."""
    out, skipping = [], False
    for arg in argv:
        if arg in ("--variants", "--flags"):
            skipping = True
        elif arg.startswith("--"):
            skipping = False
        if not skipping:
            out.append(arg)
    return out


if __name__ == "__main__":
    run_main(main, prog="benchmark_train_step.py")
