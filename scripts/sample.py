"""Class-conditional samples from any registered generator, saved as a PNG grid (one row per class).

    python scripts/sample.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=/models/maskbit_tokenizer_12bit.bin \
        experiment.generator_checkpoint=/models/maskbit_generator_12bit.bin \
        sample.classes=[1,7,282] sample.per_class=4 sample.seed=0 sample.output=grid.png
    python scripts/sample.py config=configs/maskgit_pytorch/maskgit_pytorch_v2_base_256.yaml \
        experiment.vqgan_checkpoint=vq_ds16_c2i.pt experiment.generator_checkpoint=ImageNet_256_base.pth

The generator family's registered sampler (`modeling.build_sampler`) with the config's settings: MaskBit's from
`model.mlm_model` (`model.mlm_model.sampler=halton | confidence_v1 | confidence_v2` switches to the MaskGIT-pytorch
samplers), TiTok's from `model.generator`, MaskGIT-pytorch's from `model.maskgit_sampler`. Grid image k uses seed
`sample.seed + k`, so the grid does not depend on `sample.batch_size`. Faster, opt-in, for every family:
`sample.dtype=bf16` (the generator's forward under bf16 autocast; slightly different samples) and
`sample.compile=true` (torch.compile of the generator's forward; same tokens up to last-bit float differences, eager
with one warning where no compiler backend is installed).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from modeling import build_generator, build_sampler, build_tokenizer, class_grid, load_pretrained
from utils.compile import compile_forward
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import run_main

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _checkpoint_path(value: str, key: str) -> str:
    if not value or "MODEL_PATH" in value:
        raise ConfigError(f"Set {key}=/path/to/checkpoint (got '{value}'); the config's header names the released "
                          f"file (e.g. MaskBit's on https://huggingface.co/markweber)")
    return value


def load_models(cfg, device: torch.device):
    """(generator, tokenizer) with their weights, in eval mode, on `device`; with `sample.dtype=bf16` the generator's
    forward runs under bf16 autocast, with `sample.compile=true` it is compiled (eager fallback with one warning)."""
    if cfg.sample.dtype not in DTYPES:
        raise ConfigError(f"sample.dtype must be one of {sorted(DTYPES)}, got '{cfg.sample.dtype}'")
    tokenizer = load_pretrained(build_tokenizer(cfg), _checkpoint_path(cfg.experiment.vqgan_checkpoint,
                                                                        "experiment.vqgan_checkpoint"))
    generator = load_pretrained(build_generator(cfg), _checkpoint_path(cfg.experiment.generator_checkpoint,
                                                                        "experiment.generator_checkpoint"))
    generator, tokenizer = generator.to(device).eval(), tokenizer.to(device).eval()
    if DTYPES[cfg.sample.dtype] is not None:
        _autocast_forward(generator, DTYPES[cfg.sample.dtype])
    if cfg.sample.compile:
        compile_forward(generator, "the generator forward (sample.compile)")
    return generator, tokenizer


def _autocast_forward(generator, dtype: torch.dtype):
    """Run `generator`'s forward under autocast from now on (bf16 opt-in), whatever its family's sampler: the
    samplers take the logits in float32, and decoding stays float32."""
    forward = generator.forward
    device_type = next(generator.parameters()).device.type

    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            return forward(*args, **kwargs)
    generator.forward = autocast_forward


def generate_grid(generator, tokenizer, cfg, device: torch.device) -> torch.Tensor:
    """(len(classes) * per_class, 3, H, W) images in [0, 1], row-major by class."""
    opts = cfg.sample
    return class_grid(build_sampler(cfg, generator, tokenizer), opts.classes, opts.per_class, opts.seed,
                      opts.batch_size)


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
