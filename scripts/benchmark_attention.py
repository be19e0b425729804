"""Forward + backward time of the attention kernel alone, per dtype and SDPA backend, and of `modeling.attention`.

    python scripts/benchmark_attention.py --shape 16 8 65 16 --threads 1 --repeats 100

Shape = (batch, heads, tokens, head size); the default is the quickstart generator's step (batch 16 per process,
8 heads, 64 tokens + the class token, head size 16). Rows: PyTorch's FLASH_ATTENTION and MATH backends on float32
and bf16 inputs, and `modeling.attention.scaled_dot_product_attention` on bf16 inputs under bf16 autocast (what a
bf16 training step runs; on a CPU it upcasts to float32). Each row: 10 untimed runs, then the median of
`--repeats` timed runs of forward + backward (forward only with `--forward-only`), CUDA synchronised.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from modeling.attention import scaled_dot_product_attention
from utils.errors import run_main


def median_ms(fn, repeats: int, device: torch.device) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 8, 65, 16], metavar=("B", "H", "L", "D"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    base = [torch.randn(*args.shape, generator=generator) for _ in range(4)]  # q, k, v, output gradient

    def case(dtype, attend, autocast=False):
        q, k, v = (t.to(device, dtype).requires_grad_(not args.forward_only) for t in base[:3])
        grad = base[3].to(device, dtype)
        context = torch.autocast(device.type, dtype=dtype) if autocast else nullcontext()

        def run():
            with context, (torch.no_grad() if args.forward_only else nullcontext()):
                out = attend(q, k, v)
            if not args.forward_only:
                out.backward(grad)
        return run

    def backend(which):
        def attend(q, k, v):
            with sdpa_kernel(which):
                return F.scaled_dot_product_attention(q, k, v)
        return attend

    rows = [(f"{name} {str(dtype).replace('torch.', '')}", case(dtype, backend(which)))
            for dtype in (torch.float32, torch.bfloat16)
            for name, which in (("FLASH_ATTENTION", SDPBackend.FLASH_ATTENTION), ("MATH", SDPBackend.MATH))]
    rows.append(("modeling.attention, bf16 autocast", case(torch.bfloat16, scaled_dot_product_attention, True)))
    phase = "forward" if args.forward_only else "forward + backward"
    print(f"attention {tuple(args.shape)} (batch, heads, tokens, head size), device {device}, "
          f"{torch.get_num_threads()} threads, {phase}, median of {args.repeats}")
    for name, run in rows:
        try:
            print(f"{name:36s} {median_ms(run, args.repeats, device):8.2f} ms")
        except RuntimeError as err:  # a backend this device or dtype does not have
            print(f"{name:36s} {'n/a':>8s} ({str(err).splitlines()[0][:60]})")


if __name__ == "__main__":
    run_main(main, prog="benchmark_attention.py")
