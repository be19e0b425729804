"""Image editing with a spatial masked-token generator: inpainting, outpainting and class editing.

    from modeling import edit
    edited = edit(generator, tokenizer, images, dict(box=(8, 8, 16, 16)), class_id=3)   # inpaint a box
    edited = edit(generator, tokenizer, image, mask, 207, seeds=range(4))       # pixel mask (True = regenerate),
                                                                                 # 4 edits of one image
    edited = edit(generator, tokenizer, image, dict(outpaint=(0, 0, 64, 64)), 207)  # pad 64 px left and right
    edited = edit(generator, tokenizer, image, dict(keep=(64, 64, 128, 128)), 88)   # class editing: keep a box,
                                                                                     # regenerate the rest as 88
The procedure:
1. `image` (B, 3, H, W) in [0, 1] (or a PIL image) and the mask spec become a canvas (B, 3, R, R) and a pixel mask
   (B, R, R), True = regenerate. R is the generator's image size: its token grid side times the tokenizer's pixels
   per token. Outpainting pads the image with copies of its edge pixels and masks the padding.
2. Pixel mask -> token mask (B, h, w): a token is regenerated when any of its pixels is masked; `grow` dilates the
   token mask by that many tokens in every direction (including diagonals).
3. The canvas is tokenized and the generator family's infill step (`modeling.registry.register_infill`) generates
   the masked tokens with the family's sampler; `splits` (bit-token generators) restricts the regeneration to some
   splits of the masked tokens ("edit the low bits only": `splits=[0]`).
4. The edited tokens are decoded and, unless `blend=False`, blended with the tokenizer's reconstruction of the
   input (the decoded input tokens): `out = lerp(reconstruction, decoded edit, w)` with w = 1 on the pixels of
   regenerated tokens and w = 1 - d / (blend_pixels + 1) at Chebyshev pixel distance d from them, so every pixel
   farther than `blend_pixels` (default: one token) from a regenerated token equals the reconstruction exactly.
   Without blending, the decoder's receptive field lets an edit shift pixels slightly beyond the mask.

Invariant (every family's infill step must keep it; `edit` checks the result): tokens outside the mask are never
changed, at any step, and the number of tokens revealed per step follows the family's schedule over the masked
tokens only (not the whole grid), so an edit of k tokens takes all `num_steps` steps to reveal those k tokens.

1D tokenizers (TiTok) have no spatial layout: each of their tokens describes the whole image, so no token lies
"under" a masked region, and `edit` refuses them with an error that says so.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from modeling.registry import infill_step
from modeling.tokenizer import tokenize
from utils.errors import MaskbitError

MASK_SPECS = ("box", "keep", "outpaint", "extend")


class EditError(MaskbitError, ValueError):
    """An edit request that cannot be carried out as given (the message names the fix)."""


def edit_geometry(generator, tokenizer) -> Tuple[int, int]:
    """(token grid side, pixels per token) of a generator on a 2D tokenizer's square token grid."""
    factor = getattr(tokenizer, "downsample_factor", None)
    if factor is None:
        raise EditError(f"{type(tokenizer).__name__} makes 1D tokens (as TiTok) with no spatial layout: every token "
                        f"describes the whole image, so no token lies under a masked region. Edit with a 2D "
                        f"tokenizer and its generator (MaskBit/VQGAN+ lfq_bert or bert, MaskGIT-pytorch).")
    if infill_step(generator) is None:
        raise EditError(f"no infill step is registered for {type(generator).__name__}, so it cannot edit images; "
                        f"the family's module must register one (modeling.registry.register_infill).")
    side = math.isqrt(generator.seq_len)
    if side * side != generator.seq_len:
        raise EditError(f"the generator models {generator.seq_len} tokens, not a square grid; editing needs the "
                        f"square token grid of a 2D tokenizer")
    return side, int(factor)


def _as_images(image) -> torch.Tensor:
    """A PIL image, (3, H, W) or (B, 3, H, W) tensor -> (B, 3, H, W) float."""
    if not isinstance(image, torch.Tensor):
        from torchvision.transforms.functional import to_tensor  # PIL image
        image = to_tensor(image.convert("RGB"))
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] != 3:
        raise EditError(f"image must be (B, 3, H, W) or (3, H, W) in [0, 1], or a PIL image; got shape "
                        f"{tuple(image.shape)}")
    return image.float()


def _as_pixel_mask(mask) -> torch.Tensor:
    """A bool/0-1 tensor (H, W), (B, H, W) or (B, 1, H, W), or a PIL image (white = regenerate) -> (B, H, W) bool."""
    if not isinstance(mask, torch.Tensor):
        from torchvision.transforms.functional import pil_to_tensor
        mask = pil_to_tensor(mask.convert("L"))[0] > 127
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() != 3:
        raise EditError(f"a pixel mask must be (H, W) or (B, H, W) with True = regenerate; got shape "
                        f"{tuple(mask.shape)}")
    return mask > 0.5 if mask.is_floating_point() else mask.bool()


def _ints(spec: dict, key: str, count: int) -> Tuple[int, ...]:
    values = tuple(int(v) for v in spec[key])
    if len(values) != count:
        names = {"box": "(top, left, height, width)", "keep": "(top, left, height, width)",
                 "outpaint": "(top, bottom, left, right)", "extend": "(height, width)"}[key]
        raise EditError(f"{key} takes {count} integers {names} in pixels, got {spec[key]}")
    return values


def _need_size(images: torch.Tensor, size: int, what: str) -> None:
    if tuple(images.shape[-2:]) != (size, size):
        raise EditError(f"{what}: the generator edits {size}x{size} images, got {images.shape[-2]}x"
                        f"{images.shape[-1]}; resize the image to {size}x{size} (scripts/edit.py resizes and "
                        f"centre-crops), or outpaint a smaller image to that size")


def canvas_and_mask(image: torch.Tensor, mask, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) and one mask spec -> canvas (B, 3, size, size) and pixel mask (B or 1, size, size).

    Specs: a pixel mask (see `_as_pixel_mask`); dict(box=(top, left, height, width)) regenerates the box (clipped
    to the image); dict(keep=(top, left, height, width)) regenerates everything else; dict(outpaint=(top, bottom,
    left, right)) pads the image by that many pixels (edges repeated) and regenerates the padding; dict(extend=(H,
    W)) centres the image in an H x W canvas (= outpaint). Outpainted canvases must come out `size` x `size`.
    """
    if not isinstance(mask, dict):
        pixels = _as_pixel_mask(mask)
        if tuple(pixels.shape[-2:]) != tuple(image.shape[-2:]):
            raise EditError(f"the mask is {pixels.shape[-2]}x{pixels.shape[-1]} but the image is {image.shape[-2]}x"
                            f"{image.shape[-1]}; give a mask of the image's size (True = regenerate)")
        _need_size(image, size, "pixel mask")
        return image, pixels.to(image.device)
    if len(mask) != 1 or next(iter(mask)) not in MASK_SPECS:
        raise EditError(f"a mask dict has exactly one key of {list(MASK_SPECS)}, got {sorted(mask)}")
    kind = next(iter(mask))
    if kind in ("box", "keep"):
        top, left, height, width = _ints(mask, kind, 4)
        _need_size(image, size, kind)
        if height <= 0 or width <= 0 or top >= size or left >= size or top + height <= 0 or left + width <= 0:
            raise EditError(f"{kind}=({top}, {left}, {height}, {width}) covers nothing of the {size}x{size} image; "
                            f"give (top, left, height, width) in pixels with a positive size inside the image")
        inside = torch.zeros(1, size, size, dtype=torch.bool, device=image.device)
        inside[:, max(top, 0):top + height, max(left, 0):left + width] = True
        return image, inside if kind == "box" else ~inside
    if kind == "extend":
        height, width = _ints(mask, kind, 2)
        if (height, width) != (size, size) or height < image.shape[-2] or width < image.shape[-1]:
            raise EditError(f"extend=({height}, {width}): the generator edits {size}x{size} images, so extend an "
                            f"image of at most that size to ({size}, {size})")
        top, left = (height - image.shape[-2]) // 2, (width - image.shape[-1]) // 2
        pads = (top, height - image.shape[-2] - top, left, width - image.shape[-1] - left)
    else:
        pads = _ints(mask, kind, 4)
    top, bottom, left, right = pads
    if min(pads) < 0 or sum(pads) == 0:
        raise EditError(f"outpaint=({top}, {bottom}, {left}, {right}) pads nothing; give non-negative pixel counts "
                        f"(top, bottom, left, right), at least one positive")
    content = (size - top - bottom, size - left - right)
    if tuple(image.shape[-2:]) != content:
        raise EditError(f"outpainting by (top {top}, bottom {bottom}, left {left}, right {right}) makes a "
                        f"{size}x{size} canvas from a {content[0]}x{content[1]} image, got {image.shape[-2]}x"
                        f"{image.shape[-1]}; resize the image to {content[0]}x{content[1]} (scripts/edit.py does)")
    canvas = F.pad(image, (left, right, top, bottom), mode="replicate")
    padding = torch.ones(1, size, size, dtype=torch.bool, device=image.device)
    padding[:, top:size - bottom, left:size - right] = False
    return canvas, padding


def token_mask(pixel_mask: torch.Tensor, factor: int, grow: int = 0) -> torch.Tensor:
    """Pixel mask (B, H, W) -> token mask (B, H/factor, W/factor): a token is True when any of its factor x factor
    pixels is, then dilated by `grow` tokens (square neighbourhood)."""
    tokens = F.max_pool2d(pixel_mask.float().unsqueeze(1), factor)
    if grow > 0:
        tokens = F.max_pool2d(tokens, 2 * grow + 1, stride=1, padding=grow)
    return tokens.squeeze(1) > 0


def blend_weights(tokens: torch.Tensor, factor: int, width: int) -> torch.Tensor:
    """Token mask (B, h, w) -> weights (B, 1, h*factor, w*factor): 1 on regenerated tokens' pixels, 1 - d / (width
    + 1) at Chebyshev distance d <= width from them, 0 farther away."""
    region = tokens.float().repeat_interleave(factor, 1).repeat_interleave(factor, 2).unsqueeze(1)
    total = region.clone()
    for _ in range(width):  # after k dilations `region` marks d <= k; the sum over k = 0..width is width + 1 - d
        region = F.max_pool2d(region, 3, stride=1, padding=1)
        total += region
    return total / (width + 1)


def _class_ids(class_id, batch: int, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(class_id).reshape(-1).long()
    if labels.numel() == 1:
        labels = labels.expand(batch)
    if labels.numel() != batch:
        raise EditError(f"give one class id, or one per image ({batch}); got {labels.numel()}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise EditError(f"class ids must be in [0, {num_classes}) for this generator, got {labels.tolist()}; "
                        f"choose a class the generator was trained on")
    return labels


def _batch_size(*sizes: int) -> int:
    batch = max(sizes)
    if any(s not in (1, batch) for s in sizes):
        raise EditError(f"images, masks, class ids and seeds give batch sizes {list(sizes)}; each must be 1 "
                        f"(shared) or the same number")
    return batch


@torch.no_grad()
def reconstruct(tokenizer, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, R, R) in [0, 1] -> (tokens (B, N) int64, the tokenizer's reconstruction (B, 3, R, R))."""
    tokens = encode(tokenizer, images)
    return tokens, decode(tokenizer, tokens)


def encode(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, R, R) in [0, 1] -> tokens (B, N) int64 (row-major), in eval mode and float32."""
    was_training = tokenizer.training
    tokens = tokenize(tokenizer.eval(), images)
    tokenizer.train(was_training)
    return tokens


def decode(tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """Tokens (B, N) of a square grid -> images (B, 3, R, R) in float32 (unclamped), in eval mode."""
    was_training = tokenizer.training
    with torch.autocast(tokens.device.type, enabled=False):
        images = tokenizer.eval().decode_tokens(tokens).float()
    tokenizer.train(was_training)
    return images


@torch.no_grad()
def edit(generator, tokenizer, image, mask, class_id: Union[int, Sequence[int], torch.Tensor], settings=None, *,
         seeds=None, noise=None, return_tokens: bool = False, on_step=None, grow: int = 0,
         splits: Optional[Sequence[int]] = None, blend: bool = True, blend_pixels: Optional[int] = None,
         **overrides):
    """Regenerate the masked part of `image` as class `class_id`; see the module docstring.

    image: (B, 3, H, W) or (3, H, W) in [0, 1], or a PIL image. mask: a pixel mask (H, W) / (B, H, W) bool, True =
    regenerate, or a dict spec (`canvas_and_mask`). class_id: int or one per image. Images, masks, class ids and a
    sequence of seeds broadcast along the batch (one image with `seeds=range(4)` gives 4 edits). settings /
    overrides / seeds / noise / on_step: as the family's sampler (`modeling.sample` for MaskBit; per-sample seeds
    make each edit depend only on its seed, class, image and mask). grow: dilate the token mask by that many
    tokens. splits: bit-token generators only, the splits to regenerate (None = whole tokens; [0] = low bits).
    Returns edited images (B, 3, R, R) (unclamped decoder output, blended) or `(images, tokens (B, N))`.
    """
    side, factor = edit_geometry(generator, tokenizer)
    size = side * factor
    device = next(generator.parameters()).device
    images = _as_images(image).to(device)
    canvas, pixels = canvas_and_mask(images, mask, size)
    seed_count = len(seeds) if isinstance(seeds, (list, tuple, range, torch.Tensor)) else 1
    labels_in = torch.as_tensor(class_id).reshape(-1)
    batch = _batch_size(canvas.shape[0], pixels.shape[0], labels_in.numel(), seed_count)
    canvas, pixels = canvas.expand(batch, -1, -1, -1), pixels.expand(batch, -1, -1)
    labels = _class_ids(labels_in, batch, generator.num_classes).to(device)
    empty = [i for i in range(batch) if not pixels[i].any()]
    if empty:
        raise EditError(f"the mask of image(s) {empty} selects no pixel to regenerate; mark the pixels to "
                        f"regenerate with True (white in a mask PNG), or give a box")
    editable = token_mask(pixels, factor, grow)  # (B, side, side)

    tokens = encode(tokenizer, canvas)
    infill = infill_step(generator)
    edited = infill(generator, tokens, editable.flatten(1), labels, seeds, settings, noise=noise, on_step=on_step,
                    splits=splits, **overrides)
    kept = ~editable.flatten(1)
    if not torch.equal(edited[kept], tokens[kept]):
        raise RuntimeError(f"{infill.__qualname__} changed tokens outside the mask; an infill step must never do "
                           f"that (modeling.editing)")
    out = decode(tokenizer, edited)
    if blend:
        weights = blend_weights(editable, factor, factor if blend_pixels is None else blend_pixels)
        out = torch.lerp(decode(tokenizer, tokens), out, weights)  # exactly the reconstruction where w is 0
    return (out, edited) if return_tokens else out
