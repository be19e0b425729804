"""Write the stand-in proxy tokenizer of the tiny TiTok (configs/quickstart/titok_tiny_*.yaml).

    python scripts/titok_tiny_proxy.py --output runs/titok_tiny/proxy.bin

No released MaskGIT-VQGAN exists at 32 px: this one is a seeded random 3-level MaskGIT-VQGAN of width 64 (32 px ->
8x8 codes) whose codebook is its own encoder features of random cells of synthetic training images
(`modeling.titok.init_codebook_from_images`), so that its codes follow the image.
"""
from __future__ import annotations

import argparse

import torch

from data.synthetic import SyntheticImages
from data.transforms import pil_to_uint8, to_float
from modeling.titok import build_maskgit_vqgan, init_codebook_from_images
from utils.atomic import atomic_path
from utils.errors import run_main


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="where to write the state dict (.bin)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=256, help="synthetic training images for the codebook")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    proxy = build_maskgit_vqgan(64, [1, 1, 2]).eval()
    data = SyntheticImages(10, 32, args.seed, num_samples=args.num_images, split="train")
    images = torch.stack([to_float(pil_to_uint8(data[i][0])) for i in range(args.num_images)])
    init_codebook_from_images(proxy, images, torch.Generator().manual_seed(args.seed))
    with atomic_path(args.output) as tmp:
        torch.save(proxy.state_dict(), tmp)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    run_main(main, prog="titok_tiny_proxy.py")
