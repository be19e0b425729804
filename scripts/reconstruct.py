"""Reconstruct your own images with a tokenizer: one PNG per image, a side-by-side grid, per-image PSNR/SSIM.

    python scripts/reconstruct.py config=configs/tokenizer/maskbit_tokenizer_12bit.yaml \
        experiment.vqgan_checkpoint=maskbit_tokenizer_12bit.bin input=photos/ output=recon/

`input` is an image file or a folder (searched recursively for .jpg/.jpeg/.png/.webp/.bmp). Each image gets the
evaluation transform of `dataset.preprocessing` (shorter side resized to `resolution`, center crop), is encoded and
decoded in fp32, and the reconstruction (clamped to [0, 1]) is written as `<output>/<relative path>.png`. Also
written: `<output>/grid.png` (pairs original | reconstruction, for the first `MAX_GRID` images) and
`<output>/metrics.json` (PSNR and SSIM of every image against its cropped original, their means, any files that
could not be read, and images/s of the whole job: decoding, reconstruction, metrics and writing, also printed).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from data.image_folder import list_image_files
from data.transforms import EvalTransform, decode_image, to_float
from evaluation import psnr, ssim
from modeling import build_tokenizer, load_pretrained
from training.throughput import job_throughput, throughput_line
from utils.atomic import atomic_write_json
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import MaskbitError, run_main

MAX_GRID = 32  # image pairs shown in grid.png


def split_paths(argv: list[str]) -> tuple[Path, Path, list[str]]:
    """(`input=`, `output=`, the remaining config arguments)."""
    paths, rest = {}, []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("input", "output"):
            paths[key] = Path(value).expanduser()
        else:
            rest.append(arg)
    missing = [k for k in ("input", "output") if k not in paths]
    if missing:
        raise ConfigError(f"set {' and '.join(f'{k}=PATH' for k in missing)} (input: an image or a folder of images; "
                          f"output: the folder for the reconstructions)")
    return paths["input"], paths["output"], rest


def main(argv=None) -> dict:
    source, out_dir, rest = split_paths(list(sys.argv[1:] if argv is None else argv))
    config = parse_args_or_exit(rest, prog="reconstruct.py")
    if not config.experiment.vqgan_checkpoint:
        raise ConfigError("set experiment.vqgan_checkpoint=PATH (the tokenizer weights)")
    files = list_image_files(source)
    root = source if source.is_dir() else source.parent
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_pretrained(build_tokenizer(config), config.experiment.vqgan_checkpoint).to(device).eval()
    prep = config.dataset.preprocessing
    transform = EvalTransform(prep.resolution, prep.interpolation)
    batch_size = config.training.per_gpu_batch_size

    records, skipped, pairs = [], [], []
    start_time = time.perf_counter()
    for start in tqdm(range(0, len(files), batch_size), desc="reconstruct", unit="batch"):
        batch, names = [], []
        for path in files[start:start + batch_size]:
            try:
                batch.append(transform(decode_image(path.read_bytes())))
                names.append(path)
            except Exception as err:  # unreadable or damaged file: report it, keep going
                skipped.append({"file": str(path.relative_to(root)), "error": f"{type(err).__name__}: {err}"})
        if not batch:
            continue
        x = to_float(torch.stack(batch)).to(device)
        with torch.no_grad():
            x_rec = tokenizer(x)[0].float().clamp(0.0, 1.0)
        for path, original, rec, p, s in zip(names, x.cpu(), x_rec.cpu(), psnr(x, x_rec).tolist(),
                                             ssim(x, x_rec).tolist()):
            target = (out_dir / path.relative_to(root)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            save_image(rec, target)
            records.append({"file": str(path.relative_to(root)), "output": str(target), "PSNR": p, "SSIM": s})
            if len(pairs) < 2 * MAX_GRID:
                pairs += [original, rec]

    if not records:
        raise MaskbitError(f"none of the {len(files)} files under '{source}' could be read: {skipped[:3]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(torch.stack(pairs), out_dir / "grid.png", nrow=min(8, len(pairs)), padding=2, pad_value=1.0)
    metrics = {"num_images": len(records), "resolution": prep.resolution,
               "tokenizer": str(config.experiment.vqgan_checkpoint),
               "mean_PSNR": sum(r["PSNR"] for r in records) / len(records),
               "mean_SSIM": sum(r["SSIM"] for r in records) / len(records),
               "throughput": job_throughput(len(records), time.perf_counter() - start_time, 1),
               "images": records, "skipped": skipped}
    atomic_write_json(out_dir / "metrics.json", metrics)
    print(f"{len(records)} reconstructions in {out_dir} (mean PSNR {metrics['mean_PSNR']:.2f} dB, mean SSIM "
          f"{metrics['mean_SSIM']:.4f}); {len(skipped)} file(s) skipped")
    print(throughput_line(metrics["throughput"], "decoding, reconstruction, metrics and writing"))
    return metrics


if __name__ == "__main__":
    run_main(main, prog="reconstruct.py")
