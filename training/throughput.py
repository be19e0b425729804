"""Throughput of a training run: images/s, tokens/s, the share of the step spent waiting for data, and MFU; and the
images/s of a finished job (evaluation, editing).

    meter = Throughput(batch_per_process=16, num_processes=8, tokens_per_sample=256)
    scalars = meter.scalars(steps=50, seconds=12.0, data_seconds=1.1, flops_per_sample=..., peak_flops=...)
    record = job_throughput(num_images=50000, seconds=600.0, num_processes=8)   # for metrics.json
    print(throughput_line(record, "generation and scoring"))

MFU (model FLOPs utilisation) = model training FLOPs per second / the device's dense bf16 (or fp32/TF32) peak. It is
reported only where the peak is known: CUDA devices named in `PEAK_TFLOPS` (vendor dense peaks, no sparsity). The
model FLOPs are 3 x the forward FLOPs of the trained model (forward + backward), counted by
`torch.utils.flop_counter` on one sample: the discriminator, the perceptual network and the frozen tokenizer are
not counted.
"""
from __future__ import annotations

from typing import Optional

import torch

DATA_WAIT_WARNING = 0.2  # a window whose data wait exceeds this share of the step time is reported once

# dense peak TFLOP/s by (name substring, precision); the first matching name wins (order: specific first)
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 494.0},  # fp32 = TF32 tensor cores
    "H100 PCIe": {"bf16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.0, "fp32": 494.0},
    "A100": {"bf16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.0, "fp32": 183.0},
    "RTX 4090": {"bf16": 165.2, "fp32": 82.6},  # bf16 with fp32 accumulation
}


def peak_flops(device: torch.device, mixed_precision: str, tf32: bool) -> Optional[float]:
    """Dense peak FLOP/s of `device` for the run's precision (bf16/fp16, else TF32 when enabled), or None where
    unknown (CPUs, unlisted GPUs, plain fp32 without TF32)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    precision = "bf16" if mixed_precision in ("bf16", "fp16") else ("fp32" if tf32 else None)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name and precision is not None:
            return peaks[precision] * 1e12
    return None


def forward_flops(module: torch.nn.Module, *inputs) -> int:
    """FLOPs of one forward of `module` on `inputs` (no grad), counted by `torch.utils.flop_counter`."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    forward = getattr(module.forward, "fn", module)  # the eager forward of a `utils.compile` model
    with torch.no_grad(), counter:
        forward(*inputs)
    return counter.get_total_flops()


class Throughput:
    """The `perf/*` scalars of one logging window."""

    def __init__(self, batch_per_process: int, num_processes: int, tokens_per_sample: int = 0):
        self.batch, self.processes, self.tokens_per_sample = batch_per_process, num_processes, tokens_per_sample

    def scalars(self, steps: int, seconds: float, data_seconds: float, flops_per_sample: Optional[float] = None,
                peak: Optional[float] = None) -> dict[str, float]:
        """`steps` optimizer steps of `batch_per_process` samples (accumulation included) in `seconds` of training,
        `data_seconds` of them waiting for the next batch."""
        seconds = max(seconds, 1e-9)
        per_process = steps * self.batch / seconds
        out = {"perf/images_per_sec": per_process * self.processes, "perf/images_per_sec_per_process": per_process,
               "perf/sec_per_step": seconds / max(1, steps), "perf/data_time_per_step": data_seconds / max(1, steps),
               "perf/data_wait_fraction": min(1.0, data_seconds / seconds)}
        if self.tokens_per_sample:
            out["perf/tokens_per_sec"] = out["perf/images_per_sec"] * self.tokens_per_sample
            out["perf/tokens_per_sec_per_process"] = per_process * self.tokens_per_sample
        if flops_per_sample and peak:
            out["perf/mfu"] = per_process * flops_per_sample / peak
        out["perf/samples_per_sec"] = out["perf/images_per_sec"]  # the older names, kept for existing readers
        out["perf/samples_per_sec_per_gpu"] = per_process
        return out


def job_throughput(num_images: int, seconds: float, num_processes: int) -> dict:
    """images/s of a job that handled `num_images` over all processes in `seconds` of wall time (the JSON record)."""
    rate = num_images / max(seconds, 1e-9)
    return {"images": int(num_images), "seconds": round(seconds, 3), "num_processes": int(num_processes),
            "images_per_sec": rate, "images_per_sec_per_process": rate / max(1, num_processes)}


def throughput_line(record: dict, what: str) -> str:
    """`throughput: 40.00 images/s over 2 process(es) (20.00 images/s per process; <what>)`."""
    return (f"throughput: {record['images_per_sec']:.2f} images/s over {record['num_processes']} process(es) "
            f"({record['images_per_sec_per_process']:.2f} images/s per process; {what})")


def data_wait_advice(fraction: float, workers: int, stage_two: bool) -> str:
    advice = (f"Waiting for data took {fraction:.0%} of the training step (over {DATA_WAIT_WARNING:.0%}): the "
              f"accelerator idles. Raise dataset.params.num_workers_per_gpu (now {workers}) up to the CPU cores per "
              f"process")
    if stage_two:
        advice += (", or train Stage II on pretokenized data (scripts/pretokenize.py, then "
                   "dataset.params.pretokenized_shards_path_or_url)")
    return advice + ". Reported once per run."


def measure_matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 0,
                         repeats: int = 5) -> float:
    """Achieved FLOP/s of a large square matmul on `device` (the best of `repeats`, after a warm-up): the reference
    a benchmark's MFU is taken against. `size` 0: 8192 on CUDA, 1024 on CPU."""
    import time
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first one pays kernel selection and allocation
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best
