"""Our SAME-padded conv (`modeling.layers.Conv2dSame`) against timm's `Conv2dSame`: equality and speed.

    python scripts/benchmark_conv_same.py [--batch 2] [--channels 128] [--size 64] [--repeats 30]

Copies the same weights into both, checks the forward outputs are bitwise equal for stride 1 and 2 in NCHW and
channels_last, and prints the median forward time (no grad) and forward+backward time of each, in ms.
"""
import argparse
import statistics
import time

import torch
from timm.layers import Conv2dSame as TimmConv2dSame

from modeling.layers import Conv2dSame
from utils.errors import run_main


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"3x3 conv {args.channels}->{args.channels} on {args.batch}x{args.channels}x{args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'stride':>6} {'layout':>14} {'equal':>6} {'ours fwd':>9} {'timm fwd':>9} {'ours f+b':>9} {'timm f+b':>9}")
    for stride in (1, 2):
        ours = Conv2dSame(args.channels, args.channels, 3, stride=stride)
        timm = TimmConv2dSame(args.channels, args.channels, 3, stride=stride)
        timm.load_state_dict(ours.state_dict())
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(args.batch, args.channels, args.size, args.size).contiguous(memory_format=layout)
            with torch.no_grad():
                equal = torch.equal(ours(x), timm(x))
                fwd = [median_ms(lambda m=m: m(x), args.repeats) for m in (ours, timm)]
            xg = x.clone().requires_grad_(True)
            both = [median_ms(lambda m=m: m(xg).sum().backward(), args.repeats) for m in (ours, timm)]
            name = "NCHW" if layout is torch.contiguous_format else "channels_last"
            print(f"{stride:>6} {name:>14} {str(equal):>6} {fwd[0]:9.2f} {fwd[1]:9.2f} {both[0]:9.2f} {both[1]:9.2f}")


if __name__ == "__main__":
    run_main(main, prog="benchmark_conv_same.py")
