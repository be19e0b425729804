"""Speed and memory of the MaskBit generator: one training step and iterative sampling, fp32 and bf16.

    python scripts/benchmark_generator.py --config configs/generator/maskbit_generator_12bit.yaml \
        --batch 2 --steps 2 --sample-steps 8 --num-images 1 --dtype fp32 bf16 --device cpu

Train step = masking + forward + MLM loss + backward + grad clip + AdamW step (official hyper-parameters).
Sampling = `modeling.sampling.sample` with the config's guidance settings and `--sample-steps` steps; the
tokenizer decode is excluded unless `--decode` (then a randomly initialised tokenizer of the config decodes).
Peak memory: CUDA max_memory_allocated per phase; on CPU the process peak RSS so far (monotonic).
Weights are random: timings do not depend on them.
"""
from __future__ import annotations

import argparse
import resource
import time
from contextlib import nullcontext

import torch

from modeling import build_generator, build_tokenizer, label_drop_mask, mask_tokens, sample, sampling_config
from training.losses import MLMLoss
from utils.config import load_config
from utils.errors import run_main

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def time_train_steps(model, cfg, batch: int, steps: int, dtype, device) -> float:
    """Mean seconds per optimizer step (after one warm-up step)."""
    opt = cfg.optimizer.params
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.learning_rate, betas=(opt.beta1, opt.beta2),
                                  weight_decay=opt.weight_decay, eps=opt.epsilon)
    loss_fn = MLMLoss(cfg.losses.mlm.label_smoothing, cfg.losses.mlm.sum_splits)
    mlm = cfg.model.mlm_model
    tokens = torch.randint(0, model.effective_codebook_size, (batch, model.seq_len, model.splits), device=device)
    labels = torch.randint(0, model.num_classes, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    model.train()
    times = []
    for step in range(steps + 1):
        synchronize(device)
        start = time.perf_counter()
        masked, mask = mask_tokens(tokens, model.mask_token, mlm.train_mask_schedule_strategy)
        with autocast:
            logits = model(masked, labels, label_drop_mask(batch, mlm.class_label_dropout, device=device))
            loss, _ = loss_fn(logits, tokens, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step:  # the first step pays allocation / kernel selection costs
            times.append(time.perf_counter() - start)
    del optimizer
    return sum(times) / len(times)


def time_sampling(model, tokenizer, cfg, num_images: int, sample_steps: int, dtype, device) -> float:
    """Seconds to generate `num_images` images in one batch."""
    settings = sampling_config(cfg).replace(num_steps=sample_steps, autocast_dtype=dtype)
    classes = torch.arange(num_images) % model.num_classes
    sample(model, tokenizer, classes, seeds=0, settings=settings, num_steps=1)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    sample(model, tokenizer, classes, seeds=0, settings=settings)
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/generator/maskbit_generator_12bit.yaml")
    parser.add_argument("--batch", type=int, default=2, help="training batch size")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps")
    parser.add_argument("--sample-steps", type=int, default=8)
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--decode", action="store_true", help="include the tokenizer decode in sampling")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    cfg = load_config([f"config={args.config}"])
    if cfg.training.enable_tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = build_generator(cfg).to(device)
    tokenizer = None
    if args.decode:
        tokenizer = build_tokenizer(cfg).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.experiment.name}: {params / 1e6:.1f}M parameters, {model.seq_len} tokens x {model.splits} "
          f"splits of {model.effective_codebook_size} values, device {device}, {torch.get_num_threads()} threads")
    print(f"{'dtype':<6} {'phase':<34} {'time':>12} {'throughput':>16} {'peak mem GB':>12}")
    for name in args.dtype:
        dtype = DTYPES[name]
        if not args.skip_train:
            reset_peak(device)
            seconds = time_train_steps(model, cfg, args.batch, args.steps, dtype, device)
            print(f"{name:<6} {f'train step (batch {args.batch})':<34} {seconds * 1e3:>10.1f}ms "
                  f"{args.batch / seconds:>10.2f} img/s {peak_memory_gb(device):>12.2f}")
        reset_peak(device)
        seconds = time_sampling(model, tokenizer, cfg, args.num_images, args.sample_steps, dtype, device)
        phase = f"sample {args.num_images} img, {args.sample_steps} steps" + (" +dec" if args.decode else "")
        print(f"{name:<6} {phase:<34} {seconds:>11.2f}s {args.num_images / seconds:>10.3f} img/s "
              f"{peak_memory_gb(device):>12.2f}")


if __name__ == "__main__":
    run_main(main, prog="benchmark_generator.py")
