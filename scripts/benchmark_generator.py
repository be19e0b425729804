"""Speed and memory of the MaskBit generator over the fast-path flags: one training step and iterative sampling.

    python scripts/benchmark_generator.py --config configs/generator/maskbit_generator_12bit.yaml \
        --batch 2 --steps 3 --sample-steps 8 --num-images 1 --device cpu \
        --flags "fp32 eager" bf16 compile grad_ckpt --set model.mlm_model.depth=4

Train step = masking + forward + MLM loss + backward + grad clip + AdamW step (the config's hyper-parameters and
kernel, as the trainer builds it: `--set optimizer.params.fused=true` for the fused one on a CPU).
Sampling = `modeling.sampling.sample` with the config's guidance settings and `--sample-steps` steps (classifier-free
guidance runs as one batched forward); the tokenizer decode is excluded unless `--decode` (then a randomly
initialised tokenizer of the config decodes). Flags, one row each, the others off: fp32 eager (the official
numerics), bf16 autocast, torch.compile of the forward (`utils.compile`), gradient checkpointing of the transformer
blocks (training only), and bf16 with compile together. Every row builds the model afresh with the same seed.

Per row: median time (warm-up excluded, CUDA synchronised), images/s and tokens/s, peak memory (CUDA:
max_memory_allocated of the row; CPU: n/a, the process RSS only grows) and, for training, MFU = images/s x 3 x
forward FLOPs per image (`torch.utils.flop_counter`) / the FLOP/s of a large matmul measured at the start of the
same run in the row's precision (as nanoGPT's bench). Weights are random: timings do not depend on them.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from modeling import build_generator, build_tokenizer, label_drop_mask, mask_tokens, sample, sampling_config
from modeling.recompute import set_gradient_checkpointing
from training.losses import MLMLoss
from training.optim import build_adamw
from training.throughput import forward_flops, measure_matmul_flops
from utils.compile import compile_forward
from utils.config import load_config
from utils.errors import run_main

FLAGS = {  # name: (autocast dtype, compile, gradient checkpointing)
    "fp32 eager": (None, False, False),
    "bf16": (torch.bfloat16, False, False),
    "compile": (None, True, False),
    "grad_ckpt": (None, False, True),
    "bf16 compile": (torch.bfloat16, True, False),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f}" if device.type == "cuda" else "n/a"


def time_train_steps(model, cfg, batch: int, steps: int, warmup: int, dtype, device) -> float:
    """Median seconds per optimizer step after `warmup` untimed steps."""
    optimizer = build_adamw(model.parameters(), cfg.optimizer.params.learning_rate, cfg.optimizer)
    loss_fn = MLMLoss(cfg.losses.mlm.label_smoothing, cfg.losses.mlm.sum_splits)
    mlm = cfg.model.mlm_model
    tokens = torch.randint(0, model.effective_codebook_size, (batch, model.seq_len, model.splits), device=device)
    labels = torch.randint(0, model.num_classes, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    model.train()
    times = []
    for step in range(warmup + steps):
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
        if step >= warmup:  # the first steps pay allocation / kernel selection / compilation
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_sampling(model, tokenizer, cfg, num_images: int, sample_steps: int, dtype, compile_step: bool,
                  device) -> float:
    """Seconds to generate `num_images` images in one batch (after a full warm-up run)."""
    settings = sampling_config(cfg).replace(num_steps=sample_steps, autocast_dtype=dtype, compile=compile_step)
    classes = torch.arange(num_images) % model.num_classes
    sample(model, tokenizer, classes, seeds=0, settings=settings)  # warm-up (and compilation)
    synchronize(device)
    start = time.perf_counter()
    sample(model, tokenizer, classes, seeds=0, settings=settings)
    synchronize(device)
    return time.perf_counter() - start


def fresh_model(cfg, device, compile_model: bool, checkpointing: bool):
    torch.manual_seed(0)
    model = build_generator(cfg).to(device)
    set_gradient_checkpointing(model, checkpointing)
    return compile_forward(model, "the generator forward") if compile_model else model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/generator/maskbit_generator_12bit.yaml")
    parser.add_argument("--batch", type=int, default=2, help="training batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    parser.add_argument("--sample-steps", type=int, default=8)
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--flags", nargs="+", choices=list(FLAGS), default=list(FLAGS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--decode", action="store_true", help="include the tokenizer decode in sampling")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-sample", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. --set model.mlm_model.depth=4")
    args = parser.parse_args()

    device = torch.device(args.device)
    cfg = load_config([f"config={args.config}", *args.set])
    if cfg.training.enable_tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = build_tokenizer(cfg).to(device).eval() if args.decode else None
    model = fresh_model(cfg, device, False, False)
    tokens = torch.full((1, model.seq_len, model.splits), model.mask_token, device=device)
    flops_per_image = 3.0 * forward_flops(model, tokens, torch.zeros(1, dtype=torch.long, device=device))
    peaks = {None: measure_matmul_flops(device, torch.float32), torch.bfloat16: measure_matmul_flops(device, torch.bfloat16)}
    params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.experiment.name}: {params / 1e6:.1f}M parameters, {model.seq_len} tokens x {model.splits} "
          f"splits of {model.effective_codebook_size} values, device {device}, {torch.get_num_threads()} threads; "
          f"train FLOPs/image {flops_per_image / 1e9:.2f} G; measured matmul peak fp32 {peaks[None] / 1e12:.3f}, "
          f"bf16 {peaks[torch.bfloat16] / 1e12:.3f} TFLOP/s")
    print(f"{'flags':<13} {'phase':<30} {'time':>10} {'images/s':>9} {'tokens/s':>10} {'peak MiB':>9} {'MFU':>7}")
    for name in args.flags:
        dtype, compile_model, checkpointing = FLAGS[name]
        if not args.skip_train:
            reset_peak(device)
            model = fresh_model(cfg, device, compile_model, checkpointing)
            seconds = time_train_steps(model, cfg, args.batch, args.steps, args.warmup, dtype, device)
            images = args.batch / seconds
            label = f"{name} (eager!)" if compile_model and not model.forward.is_compiled else name  # fell back
            print(f"{label:<13} {f'train step (batch {args.batch})':<30} {seconds * 1e3:>8.1f}ms {images:>9.2f} "
                  f"{images * model.seq_len:>10.0f} {peak_memory(device):>9} "
                  f"{images * flops_per_image / peaks[dtype]:>7.1%}", flush=True)
        if args.skip_sample or checkpointing:  # checkpointing changes nothing without a backward pass
            continue
        reset_peak(device)
        model = fresh_model(cfg, device, False, False)
        seconds = time_sampling(model, tokenizer, cfg, args.num_images, args.sample_steps, dtype, compile_model,
                                device)
        phase = f"sample {args.num_images} img, {args.sample_steps} steps" + (" +dec" if args.decode else "")
        images = args.num_images / seconds
        print(f"{name:<13} {phase:<30} {seconds:>9.2f}s {images:>9.3f} {images * model.seq_len:>10.0f} "
              f"{peak_memory(device):>9} {'':>7}", flush=True)


if __name__ == "__main__":
    run_main(main, prog="benchmark_generator.py")
