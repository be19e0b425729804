"""Write the stand-in proxy tokenizer of the tiny TiTok (configs/quickstart/titok_tiny_*.yaml).

    python scripts/titok_tiny_proxy.py --output runs/titok_tiny/proxy.bin [--train-steps 300]

No released MaskGIT-VQGAN exists at 32 px: this one is a seeded 3-level MaskGIT-VQGAN of width 64 (32 px -> 8x8
codes), trained for `--train-steps` as an L2 autoencoder on synthetic training images
(`training.titok_proxy.train_maskgit_autoencoder`), whose codebook is then its own encoder features of cells of
those images in farthest-point order (`modeling.titok.init_codebook_from_images`; `--codebook random`: random
cells), so its codes follow the image and its decoder decodes them. `--train-steps 0 --codebook random` gives a
random proxy like that of the first experiments. Prints the held-out PSNR of its quantized
reconstructions (clamped, 8-bit rounded), the mean-colour PSNR of the same images and the codes they use.
"""
from __future__ import annotations

import argparse
import json

import torch

from data.synthetic import SyntheticImages
from data.transforms import pil_to_uint8, to_float
from evaluation import mean_colour_psnr, psnr
from modeling.titok import MaskGITVQGAN, build_maskgit_vqgan, init_codebook_from_images
from training.titok_proxy import train_maskgit_autoencoder
from utils.atomic import atomic_path
from utils.errors import run_main


def synthetic_images(split: str, count: int, seed: int) -> torch.Tensor:
    """(count, 3, 32, 32) in [0, 1]: the built-in synthetic images (10 classes) of `split`."""
    data = SyntheticImages(10, 32, seed, num_samples=count, split=split)
    return torch.stack([to_float(pil_to_uint8(data[i][0])) for i in range(count)])


@torch.no_grad()
def held_out_report(proxy: MaskGITVQGAN, images: torch.Tensor) -> dict:
    """PSNR of the proxy's quantized reconstructions (rounded to 8 bits) vs the mean-colour PSNR, codes used."""
    codes = proxy.encode(images)
    reconstructions = torch.round(proxy.decode(codes) * 255.0) / 255.0
    return {"psnr": float(psnr(reconstructions, images).mean()),
            "mean_colour_psnr": float(mean_colour_psnr(images).mean()),
            "codes_used": int(codes.unique().numel()), "images": len(images)}


def make_proxy(*, seed: int, train_steps: int, num_images: int, batch_size: int, learning_rate: float,
               spread: bool = True, codebook_images: int = 256) -> MaskGITVQGAN:
    torch.manual_seed(seed)
    proxy = build_maskgit_vqgan(64, [1, 1, 2]).eval()
    images = synthetic_images("train", num_images, seed)
    if train_steps:
        train_maskgit_autoencoder(proxy, images, steps=train_steps, batch_size=batch_size,
                                  learning_rate=learning_rate, generator=torch.Generator().manual_seed(seed))
    init_codebook_from_images(proxy, images[:codebook_images], torch.Generator().manual_seed(seed), spread=spread)
    return proxy


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="where to write the state dict (.bin)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=300, help="autoencoder steps (0: a random proxy)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of the autoencoder steps")
    parser.add_argument("--codebook", choices=("spread", "random"), default="spread",
                        help="codebook cells in farthest-point order (spread) or at random")
    parser.add_argument("--num-images", type=int, default=512, help="synthetic training images (codebook: 256)")
    parser.add_argument("--num-val", type=int, default=64, help="held-out synthetic images for the report")
    args = parser.parse_args(argv)
    if args.num_images < 256:
        parser.error("--num-images must be at least 256 (the codebook draws its 1024 codes from 256 images' cells)")
    proxy = make_proxy(seed=args.seed, train_steps=args.train_steps, num_images=args.num_images,
                       batch_size=args.batch_size, learning_rate=args.lr, spread=args.codebook == "spread")
    with atomic_path(args.output) as tmp:
        torch.save(proxy.state_dict(), tmp)
    report = held_out_report(proxy, synthetic_images("val", args.num_val, args.seed))
    print(json.dumps(report))
    print(f"wrote {args.output}")
    return report


if __name__ == "__main__":
    run_main(main, prog="titok_tiny_proxy.py")
