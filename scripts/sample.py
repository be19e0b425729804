"""Class-conditional samples from a MaskBit generator, saved as a PNG grid (one row per class).

    python scripts/sample.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=/models/maskbit_tokenizer_12bit.bin \
        experiment.generator_checkpoint=/models/maskbit_generator_12bit.bin \
        sample.classes=[1,7,282] sample.per_class=4 sample.seed=0 sample.output=grid.png

Sampling settings (steps, guidance, temperatures) come from `model.mlm_model`; grid image k uses seed
`sample.seed + k`, so the grid does not depend on `sample.batch_size`. Faster, opt-in: `sample.dtype=bf16` (bf16
autocast; slightly different samples) and `sample.compile=true` (torch.compile of the generator; same tokens up to
last-bit float differences, eager with one warning where no compiler backend is installed).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from modeling import build_generator, build_tokenizer, load_pretrained, sample_grid, sampling_config
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import run_main

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _checkpoint_path(value: str, key: str) -> str:
    if not value or "MODEL_PATH" in value:
        raise ConfigError(f"Set {key}=/path/to/checkpoint.bin (got '{value}'); the released checkpoints are on "
                          f"https://huggingface.co/markweber")
    return value


def load_models(cfg, device: torch.device):
    """(generator, tokenizer) with their weights, in eval mode, on `device`."""
    tokenizer = load_pretrained(build_tokenizer(cfg), _checkpoint_path(cfg.experiment.vqgan_checkpoint,
                                                                        "experiment.vqgan_checkpoint"))
    generator = load_pretrained(build_generator(cfg), _checkpoint_path(cfg.experiment.generator_checkpoint,
                                                                        "experiment.generator_checkpoint"))
    return generator.to(device).eval(), tokenizer.to(device).eval()


def generate_grid(generator, tokenizer, cfg, device: torch.device) -> torch.Tensor:
    """(len(classes) * per_class, 3, H, W) images in [0, 1], row-major by class."""
    opts = cfg.sample
    if opts.dtype not in DTYPES:
        raise ConfigError(f"sample.dtype must be one of {sorted(DTYPES)}, got '{opts.dtype}'")
    settings = sampling_config(cfg).replace(autocast_dtype=DTYPES[opts.dtype], compile=opts.compile)
    return sample_grid(generator, tokenizer, opts.classes, opts.per_class, opts.seed, opts.batch_size, settings)


def main(argv=None) -> Path:
    cfg = parse_args_or_exit(argv, prog="sample.py")
    device = torch.device(cfg.sample.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.training.enable_tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    generator, tokenizer = load_models(cfg, device)
    start = time.perf_counter()
    images = generate_grid(generator, tokenizer, cfg, device)
    output = Path(cfg.sample.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, output, nrow=cfg.sample.per_class, padding=2)
    print(f"{len(images)} images in {time.perf_counter() - start:.1f}s -> {output}")
    return output


if __name__ == "__main__":
    run_main(main, prog="sample.py")
