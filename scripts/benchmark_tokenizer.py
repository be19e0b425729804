r"""Speed and peak memory of the Stage-I tokenizer, and of the LFQ entropy loss: ours vs the official full softmax.

    python scripts/benchmark_tokenizer.py --config configs/tokenizer/maskbit_tokenizer_12bit.yaml \
        --resolution 256 --batch 2 --steps 3 --device cpu

Every figure comes from a fresh subprocess, so that memory cached by an earlier run cannot hide a peak.
Peak memory is the extra memory of one call after a warm-up call: CUDA max_memory_allocated, or on CPU the peak
resident set size (VmHWM, reset through /proc/self/clear_refs) above the resident size before the call, with glibc
told to return freed blocks to the system. Times are medians over --steps calls after the warm-up call.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from utils.errors import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "configs/tokenizer/maskbit_tokenizer_12bit.yaml"))
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per run (0: PyTorch's default)")
    parser.add_argument("--tables", nargs="*", default=["model", "entropy"], choices=["model", "entropy"])
    parser.add_argument("--entropy-bits", type=int, nargs="*", default=[12, 14, 16, 18],
                        help="token bits for the entropy-loss table (none: skip it)")
    parser.add_argument("--entropy-positions", type=int, default=4096,
                        help="latent positions for the entropy table (4096 = 16 images of 256x256)")
    parser.add_argument("--entropy-scales", type=float, nargs="*", default=[0.5, 0.004],
                        help="std of the random latents: 0.5 ~ trained (sharp bits), 0.004 = our worst case")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------- measuring
def _cpu_rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(fn, device: str, steps: int, what: str) -> dict:
    """Median time (ms) of fn() over `steps` calls, or the peak extra memory (MB) of one call."""
    import torch
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()  # warm-up (allocator, kernels, lazy inits)
    sync()
    if what == "time":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - start) * 1000)
        return {"ms": sorted(times)[len(times) // 2]}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        sync()
        return {"peak_mb": (torch.cuda.max_memory_allocated() - before) / 2 ** 20}
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS counter
    before = _cpu_rss_mb("VmRSS")
    fn()
    return {"peak_mb": _cpu_rss_mb("VmHWM") - before}


def run_worker(task: dict) -> dict:
    import torch
    torch.manual_seed(0)
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    device = task["device"]
    if task["kind"] == "model":
        from modeling import build_tokenizer
        from utils.config import load_config
        model = build_tokenizer(load_config([f"config={task['config']}"])).to(device)
        x = torch.rand(task["batch"], 3, task["resolution"], task["resolution"], device=device)
        if task["what"] == "forward+backward":
            model.train()

            def fn():
                x_rec, info = model(x)
                ((x_rec - x) ** 2).mean().add(info["quantizer_loss"]).backward()
                model.zero_grad(set_to_none=True)
        else:
            model.eval()
            z_q = model.encode(x)[0].detach()
            step = (lambda: model.encode(x)) if task["what"] == "encode" else (lambda: model.decode(z_q))

            def fn():
                with torch.no_grad():
                    step()
        return measure(fn, device, task["steps"], task["measure"])
    from modeling.quantizers import indices_to_bits, lfq_entropy, softmax_entropy
    bits = task["bits"]
    z = (torch.randn(task["positions"], bits, device=device) * task["scale"]).requires_grad_(True)
    if task["what"] == "ours":
        loss_fn = lambda: lfq_entropy(z, 0.01, 1.0)
    else:
        codebook = indices_to_bits(torch.arange(2 ** bits, device=device), bits)
        loss_fn = lambda: softmax_entropy(2 * z @ codebook.T, 0.01, 1.0)

    def fn():
        per_sample, avg = loss_fn()
        (per_sample - avg).backward()
        z.grad = None
    return measure(fn, device, task["steps"], task["measure"])


def in_subprocess(task: dict) -> dict:
    """Time and peak memory of a task, each from a fresh process. For the CPU memory run, glibc returns every
    block over 64 KiB to the system when freed, so that the resident size follows the live tensors."""
    result = {}
    for what in ("time", "memory"):
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536") if what == "memory" else None
        command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(dict(task, measure=what))]
        out = subprocess.run(command, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return result


def available_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch
        return torch.cuda.mem_get_info()[0] / 2 ** 20
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable"))


def fmt(result: dict) -> str:
    if "error" in result:
        return f"{'failed: ' + result['error'][:40]:>22}"
    return f"{result['ms']:10.1f} ms {result['peak_mb']:8.0f} MB"


def main():
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    common = dict(device=args.device, steps=args.steps, threads=args.threads)
    print(f"device={args.device} ({os.cpu_count()} cpus, threads={args.threads or 'default'}) "
          f"config={os.path.relpath(args.config, ROOT)} batch={args.batch} resolution={args.resolution} "
          f"steps={args.steps}")
    if "model" in args.tables:
        print(f"\n{'tokenizer':<18}{'median time':>13}{'peak extra':>11}")
        for what in ("encode", "decode", "forward+backward"):
            task = dict(common, kind="model", what=what, config=args.config, batch=args.batch,
                        resolution=args.resolution)
            print(f"{what:<18}{fmt(in_subprocess(task))}", flush=True)
    if "entropy" not in args.tables or not args.entropy_bits:
        return
    positions = args.entropy_positions
    print(f"\nLFQ entropy loss, forward+backward, {positions} latent positions, T=0.01")
    print(f"{'bits':<6}{'latent std':>11}{'ours':>24}{'official full softmax':>26}")
    for bits in args.entropy_bits:
        # the official version holds ~8 (positions x 2^K) fp32 tensors during forward+backward
        naive_mb = 8 * positions * 2 ** bits * 4 / 2 ** 20
        for i, scale in enumerate(args.entropy_scales):
            ours = in_subprocess(dict(common, kind="entropy", what="ours", bits=bits, positions=positions,
                                      scale=scale))
            if i > 0:
                naive = "       (independent of the latents)"
            elif naive_mb > 0.5 * available_mb(args.device):
                naive = f"   skipped: needs ~{naive_mb / 1024:.1f} GB"
            else:
                naive = fmt(in_subprocess(dict(common, kind="entropy", what="naive", bits=bits,
                                               positions=positions, scale=scale)))
            print(f"{bits:<6}{scale:>11}{fmt(ours):>24}{naive:>26}", flush=True)


if __name__ == "__main__":
    run_main(main, prog="benchmark_tokenizer.py")
