"""Iterative MaskGIT-style decoding of split tokens with classifier-free guidance (MaskBit sampling).

    settings = SamplingConfig(num_steps=64, guidance_scale=7.1)          # or modeling.sampling_config(config)
    images = sample(generator, tokenizer, class_ids, seeds=range(8), settings=settings)
    images = sample(generator, tokenizer, class_ids, seeds=0, num_steps=16)   # keyword overrides of the settings

Starting from an all-masked grid, each of `num_steps` steps predicts every masked (position, split) element,
then keeps the most confident predictions and re-masks the rest, following the mask schedule. The procedure
and its constants follow the official sampler; on top of it, every sample draws its random numbers from its
own seeded stream, so a sample depends only on (seed, class), never on the rest of its batch.

Noise hook (the project's sampler protocol): `noise(kind, index, shape) -> Tensor` supplies every random draw
instead of the seeded streams. Per step `index = step` it is asked, in this order, for
    "categorical"  standard Gumbel noise (B, N, S, V): drawn value = argmax(log probs + noise)
    "confidence"   standard Gumbel noise (B, N, S): the confidence term, scaled by randomize_temperature * (1 - p)
With the official sampler's noise supplied this way, `sample` reproduces it token for token.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from modeling.masking import mask_ratio
from utils.compile import CompiledOrEager
from utils.errors import MaskbitError

Seeds = Union[None, int, Sequence[int], torch.Tensor, torch.Generator]
NoiseFn = Callable[[str, int, Tuple[int, ...]], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class SamplingConfig:
    """Sampler settings; defaults are the official MaskBit ones (`model.mlm_model` of the configs)."""
    num_steps: int = 64
    guidance_scale: float = 7.1
    guidance_annealing: str = "cosine"  # none | linear | cosine
    scale_pow: float = 3.0
    randomize_temperature: float = 8.2  # Gumbel scale of the confidence, annealed by (1 - progress)
    softmax_temperature: float = 1.0
    use_sampling_annealing: bool = False  # softmax temperature 0.5 + 0.8 (1 - progress) instead
    mask_schedule: str = "arccos"
    skip_unguided_pass: bool = True  # drop the null-class half of the batch where the guidance scale is exactly 0
    autocast_dtype: Optional[torch.dtype] = None  # e.g. torch.bfloat16: generator under autocast (opt-in)
    compile: bool = False  # torch.compile the generator forward of each step (utils.compile; eager fallback)

    def replace(self, **changes) -> "SamplingConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown sampling settings {unknown}; SamplingConfig has "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


def guidance_scale_at(step: int, num_steps: int, guidance_scale: float, annealing: str = "cosine",
                      scale_pow: float = 3.0) -> float:
    """CFG scale of step `step` (0-based). Annealing uses step/num_steps, so the first step is unguided.

    none: g; linear: g * i/S; cosine: g * (1 - cos(pi * (i/S)^scale_pow)) / 2 (in float32, as the official code).
    """
    if annealing == "none":
        return guidance_scale
    if annealing == "linear":
        return guidance_scale * (step / num_steps)
    if annealing == "cosine":
        power = torch.tensor(step / num_steps) ** torch.tensor(scale_pow)
        multiplier = (1 - torch.cos(power * math.pi)) * 0.5
        return (guidance_scale * multiplier).item()
    raise ValueError(f"Unknown guidance_annealing '{annealing}'; choose none, linear or cosine")


def num_to_keep_masked(step: int, num_steps: int, num_maskable: int, schedule: str = "arccos") -> int:
    """floor(ratio * num_maskable) after step `step`, ratio = schedule((step+1)/S) clamped to [1e-6, 1] (float32).

    The sampler then clamps it to [1, n_masked - 1]; with 256x2 elements and 64 arccos steps this gives
    506, 501, 496, ..., 115, 100, 81, 57.
    """
    ratio = mask_ratio(torch.tensor((step + 1) / num_steps), schedule).clamp(1e-6, 1.0)
    return int(torch.floor(ratio * num_maskable).item())


def per_sample_generators(seeds: Seeds, batch_size: int) -> List[torch.Generator]:
    """One CPU generator per sample: int s -> seeds s, s+1, ...; a sequence -> one seed each; a Generator ->
    seeds drawn from it (then results depend on batch order); None -> seeds from the global RNG."""
    if isinstance(seeds, torch.Generator):
        seeds = torch.randint(0, 2 ** 62, (batch_size,), generator=seeds, device=seeds.device).tolist()
    elif seeds is None:
        seeds = torch.randint(0, 2 ** 62, (batch_size,)).tolist()
    elif isinstance(seeds, int):
        seeds = [seeds + i for i in range(batch_size)]
    seeds = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
    if len(seeds) != batch_size:
        raise ValueError(f"got {len(seeds)} seeds for {batch_size} class ids; pass one seed per sample")
    return [torch.Generator().manual_seed(s) for s in seeds]


def _categorical(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: probs (..., V), uniform (...) in [0, 1) -> indices (...). Zero-probability values
    are never drawn."""
    cdf = probs.cumsum(-1)
    index = torch.searchsorted(cdf, (uniform * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(uniform.dtype).tiny
    return -torch.log(-torch.log(uniform.clamp(tiny, 1 - torch.finfo(uniform.dtype).eps)))


def _guided_logits(model, tokens, labels, scale: float, unconditional_pass: bool) -> torch.Tensor:
    """Conditional logits, guided by `scale` with one batched forward of [x; x] (second half null class)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    if not unconditional_pass:
        return model(tokens, labels, keep).float()
    logits = model(torch.cat([tokens, tokens]), torch.cat([labels, labels]), torch.cat([keep, ~keep])).float()
    conditional, unconditional = logits.chunk(2)
    return conditional + scale * (conditional - unconditional)


def checked_noise(noise: NoiseFn, kind: str, index: int, shape: Tuple[int, ...], device) -> torch.Tensor:
    """One draw of the noise hook, checked for the requested shape, as float32 on `device`."""
    values = noise(kind, index, shape)
    if tuple(values.shape) != tuple(shape):
        raise ValueError(f"noise('{kind}', {index}, {shape}) returned shape {tuple(values.shape)}; it must return "
                         f"exactly the requested shape")
    return values.to(device=device, dtype=torch.float32)


@torch.no_grad()
def sample(model, tokenizer, class_ids: Union[torch.Tensor, Sequence[int]], seeds: Seeds = None,
           settings: Optional[SamplingConfig] = None, *, noise: Optional[NoiseFn] = None,
           return_tokens: bool = False, on_step: Optional[StepCallback] = None, **overrides):
    """Generate one image per class id.

    Returns images (B, 3, H, W) from `tokenizer.decode_tokens` (unclamped), `(images, tokens)` with
    `return_tokens`, or only the tokens (B, N) int64 when `tokenizer` is None. `settings` (default
    `SamplingConfig()`) with `overrides` applied (`num_steps=16`, ...). `seeds`: see `per_sample_generators` (pass
    per-sample seeds for batch-independent results); ignored when `noise` supplies the draws (module docstring).
    `on_step(step, sampled, tokens)` sees each step's full prediction and the state after re-masking, (B, N, S).

    Per step i (progress p = (i+1)/S): guided logits; probs = softmax(logits / T) (T = 0.5 + 0.8 (1-p) with
    `use_sampling_annealing`); every masked element draws a value; confidence = log prob of the drawn value
    + Gumbel * randomize_temperature * (1-p), +inf for decided elements; the `num_to_keep_masked` least
    confident elements (ties included) are re-masked. The result is the last step's full prediction.

    The official code takes the keep-masked count from sample 0 for the whole batch; we count per sample,
    which is identical whenever all samples have the same masked count (always, barring exact confidence ties).
    `skip_unguided_pass` drops the null-class half of the batch on steps whose guidance scale is exactly 0
    (the first step under linear/cosine annealing): same logits, less work.
    """
    cfg = (settings or SamplingConfig()).replace(**overrides)
    _check_model(model)
    labels = torch.as_tensor(class_ids).reshape(-1).long()
    tokens = torch.full((labels.numel(), model.seq_len, model.splits), model.mask_token, dtype=torch.long)
    sampled = unmask(model, tokens, labels, seeds, cfg, noise=noise, on_step=on_step)
    full_tokens = model.combine_tokens(sampled)
    if tokenizer is None:
        return full_tokens
    tokenizer_was_training = tokenizer.training
    images = tokenizer.eval().decode_tokens(full_tokens)
    tokenizer.train(tokenizer_was_training)
    return (images, full_tokens) if return_tokens else images


def _check_model(model) -> None:
    if not hasattr(model, "splits"):
        raise MaskbitError(f"sample() runs MaskBit's sampler on split tokens; {type(model).__name__} has its own "
                           f"sampler (for TiTok generators: model.generate(...)).")


@torch.no_grad()
def unmask(model, tokens: torch.Tensor, class_ids: torch.Tensor, seeds: Seeds, cfg: SamplingConfig, *,
           noise: Optional[NoiseFn] = None, on_step: Optional[StepCallback] = None) -> torch.Tensor:
    """The decoding loop of `sample`, from any partly masked state: split tokens (B, N, S) with the mask id at the
    elements to generate -> the last step's full prediction (B, N, S). Elements that are not masked at the start
    are never changed (their confidence is +inf, so they are never re-masked), and the schedule counts come from
    each sample's own number of masked elements: from an all-masked grid this is exactly `sample`; from a partly
    masked one it is inpainting (`modeling.editing`)."""
    device = next(model.parameters()).device
    labels = class_ids.reshape(-1).long()
    if labels.numel() == 0 or labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError(f"class ids must be in [0, {model.num_classes}), got {labels.tolist()}")
    labels, tokens = labels.to(device), tokens.to(device)
    batch, n, splits, mask_id = tokens.shape[0], model.seq_len, model.splits, model.mask_token
    if tuple(tokens.shape) != (labels.numel(), n, splits):
        raise ValueError(f"tokens must have shape ({labels.numel()}, {n}, {splits}), got {tuple(tokens.shape)}")
    generators = per_sample_generators(seeds, batch) if noise is None else None
    autocast = (torch.autocast(device.type, dtype=cfg.autocast_dtype) if cfg.autocast_dtype is not None
                else nullcontext())
    was_training = model.training
    model.eval()
    forward = CompiledOrEager(model, "the generator sampling step", dynamic=True) if cfg.compile else model

    masked = tokens == mask_id
    maskable = masked.sum(dim=(1, 2)).tolist()  # the schedule's 100% of each sample
    sampled = tokens
    for step in range(cfg.num_steps):
        progress = (step + 1) / cfg.num_steps
        scale = guidance_scale_at(step, cfg.num_steps, cfg.guidance_scale, cfg.guidance_annealing, cfg.scale_pow)
        with autocast:
            logits = _guided_logits(forward, tokens, labels, scale,
                                    cfg.guidance_scale != 0.0 and not (cfg.skip_unguided_pass and scale == 0.0))
        temperature = 0.5 + 0.8 * (1 - progress) if cfg.use_sampling_annealing else cfg.softmax_temperature
        probs = torch.softmax(logits / temperature, dim=-1)

        if noise is None:
            uniforms = torch.stack([torch.rand((2, n, splits), generator=g) for g in generators]).to(device)
            drawn, gumbel = _categorical(probs, uniforms[:, 0]), _gumbel(uniforms[:, 1])
        else:
            drawn = (probs.log() + checked_noise(noise, "categorical", step, tuple(probs.shape), device)).argmax(-1)
            gumbel = checked_noise(noise, "confidence", step, (batch, n, splits), device)
        sampled = torch.where(masked, drawn, tokens)
        confidence = probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
        confidence = torch.where(masked, confidence, torch.inf)
        confidence = torch.log(confidence) + gumbel * cfg.randomize_temperature * (1 - progress)

        # keep-masked count clamped to [1, n_masked - 1]. With a single masked element left (very long
        # schedules only) the official code indexes position -1 and re-masks the whole grid; we commit it.
        counts = {m: max(num_to_keep_masked(step, cfg.num_steps, m, cfg.mask_schedule), 1) for m in set(maskable)}
        target = torch.tensor([counts[m] for m in maskable], device=device)
        keep = torch.minimum(masked.sum(dim=(1, 2)) - 1, target)
        ranked = confidence.view(batch, -1).sort(dim=-1).values
        threshold = ranked.gather(1, (keep - 1).clamp(min=0).unsqueeze(1)).view(batch, 1, 1)
        remask = (confidence <= threshold) & (keep > 0).view(batch, 1, 1)
        tokens = torch.where(remask, mask_id, sampled)
        masked = tokens == mask_id
        if on_step is not None:
            on_step(step, sampled, tokens)

    model.train(was_training)
    return sampled


@torch.no_grad()
def infill(model, tokens: torch.Tensor, editable: torch.Tensor, class_ids: torch.Tensor, seeds: Seeds = None,
           settings: Optional[SamplingConfig] = None, *, noise: Optional[NoiseFn] = None,
           on_step: Optional[StepCallback] = None, splits: Optional[Sequence[int]] = None,
           **overrides) -> torch.Tensor:
    """MaskBit's infill step (`modeling.edit`): tokenizer indices (B, N) int64, editable (B, N) bool -> (B, N).

    Every split of an editable token is masked (`splits`: only those split indices, split 0 = the low bits, e.g.
    `splits=[0]` regenerates the low bits only) and `unmask` runs with `settings` + `overrides`, so the schedule
    counts come from the masked elements only and the other elements never change. `on_step(step, sampled,
    tokens)` sees split tokens (B, N, S), as in `sample`; noise and seeds as in `sample`.

    `sampler` (a key of the settings `generation_settings` gives when `model.mlm_model.sampler` is not maskbit):
    confidence_v1 / confidence_v2 / halton edit with that MaskGIT-pytorch sampler through `BitTokenGrid`, with
    its settings as `overrides` (`modeling.maskgit_pytorch.sampler.infill`: whole tokens, (B, N) in `on_step`).
    """
    sampler = overrides.pop("sampler", "maskbit")
    if sampler != "maskbit":
        from modeling.maskgit_pytorch import BitTokenGrid
        from modeling.maskgit_pytorch.sampler import infill as grid_infill
        from modeling.maskgit_pytorch.sampling_recipe import MASKBIT_SWITCH

        if sampler not in MASKBIT_SWITCH or settings is not None:
            raise MaskbitError(f"sampler={sampler!r} with settings={settings!r}: choose sampler maskbit (with a "
                               f"SamplingConfig) or one of {sorted(MASKBIT_SWITCH)} with that sampler's settings as "
                               f"keywords")
        version, scheduler = MASKBIT_SWITCH[sampler]
        overrides = {"version": version, "scheduler": scheduler, **overrides}
        grid_model = BitTokenGrid(model).train(model.training)  # infill leaves the generator's mode as it was
        return grid_infill(grid_model, tokens, editable, class_ids, seeds, noise=noise, on_step=on_step,
                           splits=splits, **overrides)
    cfg = (settings or SamplingConfig()).replace(**overrides)
    _check_model(model)
    chosen = torch.zeros(model.splits, dtype=torch.bool)
    selected = range(model.splits) if splits is None else list(splits)
    if not selected or any(not 0 <= int(i) < model.splits for i in selected):
        raise MaskbitError(f"splits={list(selected)}: choose split indices in [0, {model.splits}) (split 0 holds the "
                           f"low bits), or None for whole tokens")
    chosen[list(selected)] = True
    split = model.split_tokens(tokens.long())
    editable = editable.bool().unsqueeze(-1) & chosen.to(editable.device)
    start = split.masked_fill(editable.to(split.device), model.mask_token)
    return model.combine_tokens(unmask(model, start, torch.as_tensor(class_ids), seeds, cfg, noise=noise,
                                       on_step=on_step))


@torch.no_grad()
def sample_grid(model, tokenizer, classes: Sequence[int], per_class: int, seed: int = 0, batch_size: int = 32,
                settings: Optional[SamplingConfig] = None, **overrides) -> torch.Tensor:
    """`per_class` images of every class in `classes`, row-major by class, clamped to [0, 1], on the CPU:
    (len(classes) * per_class, 3, H, W). Image k uses seed `seed + k`, so the grid does not depend on `batch_size`.
    """
    labels = torch.as_tensor(list(classes)).repeat_interleave(per_class)
    seeds = [seed + k for k in range(len(labels))]
    chunks = [sample(model, tokenizer, labels[i:i + batch_size], seeds=seeds[i:i + batch_size], settings=settings,
                     **overrides).float().clamp(0, 1).cpu()
              for i in range(0, len(labels), batch_size)]
    return torch.cat(chunks)
