"""Edit your own images with a generator: inpaint a mask or a box, outpaint, or change the class of all but a box.

    python scripts/edit.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=/models/maskbit_tokenizer_12bit.bin \
        experiment.generator_checkpoint=/models/maskbit_generator_12bit.bin \
        edit.image=in.png edit.box=[64,64,128,128] edit.class_id=207 edit.num_samples=4 edit.output=edits/
    # instead of edit.box: edit.mask=mask.png (white = regenerate) | edit.outpaint=[0,0,64,64] (top, bottom, left,
    # right) | edit.keep=[64,64,128,128] (class editing); edit.image may be a folder; options: edit.grow,
    # edit.splits=[0] (low bits only), edit.blend=false, edit.seed

Each image is resized (shorter side) and centre-cropped to the model's R x R view (for outpainting: to the part of
the R x R canvas that the padding leaves); boxes are in pixels of that view. Writes `<output>/grid.png` (one row per
image: input, mask overlay, reconstruction, the edits) and `<output>/<image name>/{input, mask_overlay,
reconstruction, edit_<k>}.png`. Edit k of image i uses seed `edit.seed + i * edit.num_samples + k`, so the result
does not depend on the batch size or on the number of processes (`accelerate launch` shares the images out).
Sampling settings are the generator's own (`model.mlm_model` for MaskBit). Prints the edited images/s (overall and
per process) at the end.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from PIL import Image
from torchvision.utils import save_image
from tqdm.auto import tqdm

from data.image_folder import list_image_files
from data.transforms import decode_image, pil_to_uint8, to_float
from modeling import build_generator, build_tokenizer, edit, generation_settings, load_pretrained
from modeling.editing import EditError, canvas_and_mask, edit_geometry, reconstruct
from training.throughput import job_throughput, throughput_line
from training.token_source import load_frozen_tokenizer
from utils.atomic import atomic_path
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import run_main

OVERLAY = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # masked pixels are tinted red in mask_overlay.png


def fit(image: Image.Image, height: int, width: int,
        interpolation: TF.InterpolationMode = TF.InterpolationMode.BICUBIC) -> Image.Image:
    """Resize `image` to cover height x width (aspect kept), then centre-crop to exactly that."""
    scale = max(height / image.height, width / image.width)
    size = [max(height, math.ceil(image.height * scale)), max(width, math.ceil(image.width * scale))]
    return TF.center_crop(TF.resize(image, size, interpolation=interpolation), [height, width])


def mask_spec(opts):
    """The one mask option set: 'mask' (a PNG path), or a dict spec of `modeling.editing.canvas_and_mask`."""
    given = [k for k in ("mask", "box", "keep", "outpaint") if opts[k]]
    if len(given) != 1:
        raise ConfigError(f"set exactly one of edit.mask=MASK.png, edit.box=[top,left,height,width], "
                          f"edit.keep=[top,left,height,width] or edit.outpaint=[top,bottom,left,right]; got "
                          f"{given or 'none'}")
    return "mask" if given[0] == "mask" else {given[0]: list(opts[given[0]])}


def read_mask(mask_path: str) -> Image.Image:
    try:
        return Image.open(mask_path).convert("L")
    except OSError as err:
        raise EditError(f"cannot read edit.mask '{mask_path}' ({err}); pass a PNG, white = regenerate") from None


def check_inputs(files: list, spec, mask_path: str, size: int) -> None:
    """Refuse a mask spec that fits no image before any model is loaded (sizes from the image headers only)."""
    if spec == "mask":
        mask = read_mask(mask_path)
        if not mask.getextrema()[1] > 127:
            raise EditError(f"edit.mask '{mask_path}' selects no pixel to regenerate; paint the pixels to "
                            f"regenerate white")
        for path in files:
            with Image.open(path) as image:
                if mask.size not in ((size, size), image.size):
                    raise EditError(f"edit.mask is {mask.width}x{mask.height} (width x height) but '{path.name}' "
                                    f"is {image.width}x{image.height}; give a mask of the image's size or of the "
                                    f"model's {size}x{size} view")
    elif "outpaint" in spec:
        top, bottom, left, right = (int(v) for v in spec["outpaint"])
        if size - top - bottom <= 0 or size - left - right <= 0:
            raise EditError(f"edit.outpaint={spec['outpaint']} leaves no room for the image in the {size}x{size} "
                            f"canvas; pad by less")
        canvas_and_mask(torch.zeros(1, 3, size - top - bottom, size - left - right), spec, size)
    else:
        pixels = canvas_and_mask(torch.zeros(1, 3, size, size), spec, size)[1]
        if not pixels.any():
            raise EditError(f"edit.{next(iter(spec))}={spec[next(iter(spec))]} leaves no pixel to regenerate")


def load_input(path: Path, spec, mask_path: str, size: int):
    """(canvas (1, 3, R, R) in [0, 1], pixel mask (1, R, R) bool) of one input image."""
    try:
        image = decode_image(path.read_bytes())
    except Exception as err:  # unreadable or damaged file
        raise EditError(f"cannot read image '{path}' ({type(err).__name__}: {err}); pass a PNG/JPEG file") from None
    if isinstance(spec, dict) and "outpaint" in spec:
        top, bottom, left, right = (int(v) for v in spec["outpaint"])
        pixels = to_float(pil_to_uint8(fit(image, size - top - bottom, size - left - right))).unsqueeze(0)
        return canvas_and_mask(pixels, spec, size)
    pixels = to_float(pil_to_uint8(fit(image, size, size))).unsqueeze(0)
    if spec != "mask":
        return canvas_and_mask(pixels, spec, size)
    mask = fit(read_mask(mask_path), size, size, TF.InterpolationMode.NEAREST)
    return canvas_and_mask(pixels, TF.pil_to_tensor(mask)[0] > 127, size)


def overlay(canvas: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """(3, R, R), (R, R) -> the canvas with masked pixels tinted red."""
    return torch.where(pixels, 0.5 * canvas + 0.5 * OVERLAY, canvas)


def load_models(cfg, device: torch.device):
    """(generator, tokenizer) with their weights, in eval mode, on `device`. A request the models cannot carry
    out (1D tokenizer, class out of range) is refused first, on layout-only (meta) models."""
    with torch.device("meta"):
        generator = build_generator(cfg)
        edit_geometry(generator, build_tokenizer(cfg))
    if not 0 <= cfg.edit.class_id < generator.num_classes:
        raise EditError(f"edit.class_id={cfg.edit.class_id} is outside [0, {generator.num_classes}) of this "
                        f"generator; choose a class it was trained on")
    path = cfg.experiment.generator_checkpoint
    if not path or "MODEL_PATH" in path:
        raise ConfigError(f"Set experiment.generator_checkpoint=/path/to/generator.bin (got '{path}')")
    tokenizer = load_frozen_tokenizer(cfg, device)
    generator = load_pretrained(build_generator(cfg), path)
    return generator.to(device).eval().requires_grad_(False), tokenizer


def main(argv=None) -> Path:
    cfg = parse_args_or_exit(argv, prog="edit.py")
    opts = cfg.edit
    spec = mask_spec(opts)
    if opts.class_id is None:
        raise ConfigError("set edit.class_id=ID, the class the masked region is generated as")
    if not opts.image:
        raise ConfigError("set edit.image=PATH, an image file or a folder of images")
    if opts.num_samples < 1 or opts.batch_size < 1:
        raise ConfigError(f"edit.num_samples and edit.batch_size must be >= 1, got {opts.num_samples} and "
                          f"{opts.batch_size}")
    files = list_image_files(Path(opts.image).expanduser())
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    device = torch.device(opts.device) if opts.device else state.device
    generator, tokenizer = load_models(cfg, device)
    side, factor = edit_geometry(generator, tokenizer)
    check_inputs(files, spec, opts.mask, side * factor)
    settings = generation_settings(cfg)  # the family's sampler settings, as keyword overrides of its infill step
    output, root = Path(opts.output), Path(opts.image).expanduser()
    names = [p.stem if p == root else str(p.relative_to(root).with_suffix("")).replace("/", "__") for p in files]

    mine = range(state.process_index, len(files), state.num_processes)
    start = time.perf_counter()
    for i in tqdm(mine, desc="edit", unit="image", disable=not state.is_main_process):
        canvas, pixels = load_input(files[i], spec, opts.mask, side * factor)
        canvas, pixels = canvas.to(device), pixels.to(device)
        _, recon = reconstruct(tokenizer, canvas)
        seeds = [opts.seed + i * opts.num_samples + k for k in range(opts.num_samples)]
        edits = torch.cat([edit(generator, tokenizer, canvas, pixels, opts.class_id, seeds=seeds[s:s + opts.batch_size],
                                grow=opts.grow, splits=list(opts.splits) or None, blend=opts.blend, **settings)
                           for s in range(0, len(seeds), opts.batch_size)])
        folder = output / names[i]
        folder.mkdir(parents=True, exist_ok=True)
        panels = {"input": canvas[0], "mask_overlay": overlay(canvas[0], pixels[0]), "reconstruction": recon[0],
                  **{f"edit_{k}": image for k, image in enumerate(edits)}}
        for name, image in panels.items():
            with atomic_path(folder / f"{name}.png") as tmp:
                save_image(image.float().clamp(0, 1).cpu(), tmp, format="png")
    state.wait_for_everyone()
    throughput = job_throughput(len(files) * opts.num_samples, time.perf_counter() - start, state.num_processes)

    if state.is_main_process:  # the grid from the PNGs every process wrote
        columns = ["input", "mask_overlay", "reconstruction"] + [f"edit_{k}" for k in range(opts.num_samples)]
        rows = [TF.to_tensor(Image.open(output / name / f"{c}.png").convert("RGB")) for name in names for c in columns]
        with atomic_path(output / "grid.png") as tmp:
            save_image(torch.stack(rows), tmp, nrow=len(columns), padding=2, pad_value=1.0, format="png")
        print(f"edit.py: {len(files)} image(s) x {opts.num_samples} edits as class {opts.class_id} -> "
              f"{output / 'grid.png'} and {output}/<image>/*.png")
        print(throughput_line(throughput, f"edited images: {len(files)} input(s) x {opts.num_samples}, with "
                                          f"loading, reconstruction and saving"))
    return output


if __name__ == "__main__":
    run_main(main, prog="edit.py")
