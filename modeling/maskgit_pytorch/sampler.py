"""The samplers of MaskGIT-pytorch (v1) and Halton-MaskGIT (v2) on any masked-token model over a square token grid.

    out = sample(model, labels, version=1, scheduler="confidence", seeds=[0, 1])      # v1 `MaskGIT.sample`
    out = sample(model, labels, version=2, scheduler="confidence", step=32, w=3.0)    # v2 `ConfidenceSampler`
    out = sample(model, labels, version=2, scheduler="halton", w=1.5, randomize=True) # v2 `HaltonSampler`
    tokens = out["code"].clamp(0, codebook_size - 1)                                  # what gets decoded
    edited = infill(model, tokens, editable, labels, seeds=[0, 1], scheduler="halton")  # editing (modeling.edit)

The model contract: `model(tokens [B, G, G] int64, labels [B] int64, drop_label [B] bool) -> logits [B, G*G, K+1]`
with codes 0..K-1 and the mask id K (= codebook size) a predictable class. Every setting left None takes the
official default of the chosen sampler (`official_defaults`, facts §6-7). The three procedures (facts §6, §7.1,
§7.2-7.3):

- v1 confidence: step i reveals `confidence_schedule(..., version=1)[i]` tokens (clamped to each sample's remaining
  count, which reveals what the official clamp to the batch's count does; stopping when the batch has none left);
  guidance w*i/(S-1); probs = softmax(logits * sm_temp); a draw at every position;
  confidence = log prob of the draw + r_temp * Gumbel * (1 - i/(S-1)) (float64), -inf where decided; the still
  masked positions at or above the per-sample t-th confidence take their draw and the top-t indices are unmasked.
- v2 confidence: cumulative targets t_i = max(target_i, i+1); decided positions get confidence +inf, so every
  step re-samples them and the result is the last step's full draw; a drawn mask id re-masks its position.
- Halton: step i writes the cells of a fixed Halton order (`halton_schedule`), optionally rolled per sample; constant
  guidance (1+w)*cond - w*uncond; softmax temperature linspace(sm_temp_min, sm_temp_max, S)[i]^temp_pow, halved
  for i < temp_warmup; optional top-k draw. No confidence ranking.

`init_code` [B, G, G] follows each sampler's official semantics (facts §8): v1 inpaints the positions equal to K
and never changes the others; v2 confidence treats known tokens as decided (+inf) and re-samples them; Halton
overwrites every cell in order. The caller's tensor is never modified (the official samplers write into it).
Image editing (`modeling.edit`) uses `infill` instead: the same step code, with each schedule run over every
sample's editable tokens and the other positions never ranked, written or re-masked.

Randomness (conventions §2): `noise(kind, index, shape)` supplies every draw, asked in the official order, per
step `index = step`: "categorical" standard Gumbel [B, G*G, K+1] (draw = argmax(log probs + noise)) or, for
Halton with top_k > 0, "topk_categorical" Gumbel [B*G*G, top_k]; then for the confidence samplers "confidence"
standard Gumbel float64 [B, G*G] (scaled here by r_temp * (1 - i/(S-1))), or "uniform" [B, G*G] for
randomize="random" / "warm_up". Halton with randomize asks "roll" int64 [B] (offsets in [0, G*G)) once before the
loop (index 0); v1 with mask_value < 0 asks "random_code" int64 [B, G, G] once. Without `noise`, sample b draws
from its own generator seeded with seeds[b], so it depends only on (seed, label), never on its batch.
"""
from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from modeling.maskgit_pytorch.halton import halton_order
from modeling.maskgit_pytorch.schedules import confidence_schedule, halton_schedule
from modeling.sampling import Seeds, _categorical, _gumbel, per_sample_generators
from utils.errors import MaskbitError

NoiseFn = Callable[[str, int, Tuple[int, ...]], torch.Tensor]
SCHEDULERS = ("confidence", "halton")
DEFAULT_SCHEDULER = {1: "confidence", 2: "halton"}  # of each version (its config default)

_CONFIDENCE = dict(w=3.0, sm_temp=1.0, r_temp=4.5, randomize="linear", sched_mode="arccos")
OFFICIAL_DEFAULTS: Dict[Tuple[int, str], dict] = {
    (1, "confidence"): dict(step=8, **_CONFIDENCE),  # main.py (the README 256 px settings)
    (2, "confidence"): dict(step=32, **_CONFIDENCE),  # Config/base_cls2img.yaml, ConfidenceSampler arguments
    (2, "halton"): dict(step=32, w=3.0, sm_temp_min=1.0, sm_temp_max=1.0, temp_pow=1.0, temp_warmup=0, top_k=-1,
                        randomize=False, sched_pow=2.0, cumulative=False),  # Config/base_cls2img.yaml
}


class SamplerSettingError(MaskbitError, ValueError):
    """A MaskGIT-pytorch sampler setting that does not exist for the chosen sampler or has a bad value."""


def official_defaults(version: int, scheduler: str) -> dict:
    """The official default settings of a sampler (a copy)."""
    if (version, scheduler) not in OFFICIAL_DEFAULTS:
        raise SamplerSettingError(f"no sampler for version={version!r}, scheduler={scheduler!r}; choose version 1 "
                                  f"with 'confidence', or version 2 with 'confidence' or 'halton'")
    return dict(OFFICIAL_DEFAULTS[(version, scheduler)])


def resolve_settings(version: int, scheduler: str, **given) -> dict:
    """The official defaults of (version, scheduler) with the given non-None settings applied; a setting that the
    sampler does not have is an error (None values are ignored, so a config can list every field)."""
    settings = official_defaults(version, scheduler)
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise SamplerSettingError(f"the {scheduler} sampler (v{version}) has no setting {unknown}; its settings are "
                                  f"{sorted(settings)}")
    settings.update(given)
    if scheduler == "confidence" and not isinstance(settings["randomize"], str):
        raise SamplerSettingError(f"randomize of the confidence sampler is a mode ('linear', 'warm_up', 'random' or "
                                  f"'none'), got {settings['randomize']!r}")
    if scheduler == "halton" and not isinstance(settings["randomize"], bool):
        raise SamplerSettingError(f"randomize of the Halton sampler is true/false (roll the order per sample), got "
                                  f"{settings['randomize']!r}")
    if scheduler == "confidence" and settings["step"] < 2:
        raise SamplerSettingError("the confidence samplers need step >= 2 (their ramps divide by step - 1)")
    return settings


class _Draws:
    """Every random draw of a sampler: from the noise hook, or per-sample seeded generators."""

    def __init__(self, noise: Optional[NoiseFn], seeds: Seeds, batch: int, device: torch.device):
        self.noise, self.batch, self.device = noise, batch, device
        self.generators = per_sample_generators(seeds, batch) if noise is None else None
        self.calls: Dict[str, int] = {}

    def _hook(self, kind: str, shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        index = self.calls.get(kind, 0)
        self.calls[kind] = index + 1
        values = self.noise(kind, index, shape)
        if tuple(values.shape) != tuple(shape):
            raise ValueError(f"noise('{kind}', {index}, {shape}) returned shape {tuple(values.shape)}; it must "
                             f"return exactly the requested shape")
        return values.to(device=self.device, dtype=dtype)

    def _per_sample(self, fn) -> torch.Tensor:
        return torch.stack([fn(g) for g in self.generators]).to(self.device)

    def categorical(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, N, V] -> draws [B, N]."""
        if self.noise is not None:
            return (probs.log() + self._hook("categorical", tuple(probs.shape), torch.float32)).argmax(-1)
        uniform = self._per_sample(lambda g: torch.rand(probs.shape[1], generator=g))
        return _categorical(probs, uniform)

    def topk_categorical(self, probs: torch.Tensor) -> torch.Tensor:
        """Renormalised top-k probs [B*N, k] -> column drawn in each row [B*N]."""
        if self.noise is not None:
            return (probs.log() + self._hook("topk_categorical", tuple(probs.shape), torch.float32)).argmax(-1)
        per_sample = probs.shape[0] // self.batch
        uniform = self._per_sample(lambda g: torch.rand(per_sample, generator=g)).view(-1)
        return _categorical(probs, uniform)

    def gumbel64(self, shape: Tuple[int, int]) -> torch.Tensor:
        """Standard Gumbel noise [B, N] in float64 (the official numpy draw)."""
        if self.noise is not None:
            return self._hook("confidence", shape, torch.float64)
        return _gumbel(self._per_sample(lambda g: torch.rand(shape[1], generator=g, dtype=torch.float64)))

    def uniform(self, shape: Tuple[int, int]) -> torch.Tensor:
        if self.noise is not None:
            return self._hook("uniform", shape, torch.float32)
        return self._per_sample(lambda g: torch.rand(shape[1], generator=g))

    def integers(self, kind: str, high: int, shape: Tuple[int, ...]) -> torch.Tensor:
        """int64 values in [0, high) of shape [B, *shape] ("roll", "random_code")."""
        if self.noise is not None:
            return self._hook(kind, (self.batch, *shape), torch.int64)
        return self._per_sample(lambda g: torch.randint(0, high, shape, generator=g))


def _logits(model, code: torch.Tensor, labels: torch.Tensor, w: float, autocast) -> Tuple[torch.Tensor, ...]:
    """(conditional, unconditional or None) logits [B, N, K+1] in float32; the unconditional half comes from the
    same forward of the doubled batch, as the official samplers."""
    drop = torch.ones_like(labels, dtype=torch.bool)
    with autocast:
        if w == 0:
            return model(code.clone(), labels, ~drop).float(), None
        logits = model(torch.cat([code, code]), torch.cat([labels, labels]), torch.cat([~drop, drop])).float()
    return logits.chunk(2)


StepHook = Optional[Callable[[int, torch.Tensor, torch.Tensor], None]]  # (step, drawn [B, N], code after it [B, N])


def _per_sample(sizes: torch.Tensor, schedule: Callable[[int], list]) -> torch.Tensor:
    """Each sample's schedule over its own number of tokens: sizes [B] -> int64 [B, S, ...]."""
    table = {n: schedule(n) for n in set(sizes.tolist())}
    return torch.tensor([table[n] for n in sizes.tolist()], dtype=torch.long, device=sizes.device)


def _top_t(confidence: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample top-t of confidence [B, N] for counts t [B]: (the t-th largest value [B, 1], +inf where t is 0;
    the top-t positions, bool [B, N]). With one t for the batch this is the official `torch.topk(confidence, t)`."""
    k = int(t.max())
    if k == 0:
        return confidence.new_full((confidence.shape[0], 1), math.inf), torch.zeros_like(confidence, dtype=torch.bool)
    values, indices = torch.topk(confidence, k, dim=-1)
    threshold = values.gather(1, (t - 1).clamp(min=0).unsqueeze(1)).masked_fill(t.unsqueeze(1) == 0, math.inf)
    first_t = torch.arange(k, device=t.device) < t.unsqueeze(1)
    return threshold, torch.zeros_like(confidence, dtype=torch.bool).scatter(1, indices, first_t)


def _confidence_v1(model, labels, code, masked, counts, s, draws, autocast, grid, after_step: StepHook = None):
    """code, masked [B, N]; counts [B, S]: tokens each step reveals in each sample (clamped to what it has left)."""
    batch, steps = code.shape[0], counts.shape[1]
    codes, masks = [], []
    for i in range(steps):
        remaining = masked.sum(1)
        if int(remaining.sum()) == 0:
            break
        t = torch.minimum(counts[:, i], remaining).clamp(min=0)
        drawn, confidence = _draw_with_confidence(model, code.view(batch, grid, grid), labels, s, i, steps, draws,
                                                  autocast)
        confidence = confidence.masked_fill(~masked, -math.inf)
        threshold, top = _top_t(confidence, t)
        code = torch.where(masked & (confidence >= threshold), drawn, code)
        masked = masked & ~top
        codes.append(drawn.view(batch, grid, grid))
        masks.append(masked.view(batch, grid, grid))
        if after_step is not None:
            after_step(i, drawn, code)
    return code, codes, masks


def _confidence_v2(model, labels, code, masked, editable, targets, s, draws, autocast, grid, codebook_size,
                   after_step: StepHook = None):
    """code, masked, editable [B, N] (the positions it may write); targets [B, S]: decided tokens after each step."""
    batch, steps = code.shape[0], targets.shape[1]
    codes, masks = [], []
    for i in range(steps):
        drawn, confidence = _draw_with_confidence(model, code.view(batch, grid, grid), labels, s, i, steps, draws,
                                                  autocast)
        confidence = confidence.masked_fill(~masked, math.inf).masked_fill(~editable, -math.inf)
        threshold, _ = _top_t(confidence, targets[:, i])
        code = torch.where(editable & (confidence >= threshold), drawn, code)
        masked = code == codebook_size
        codes.append(drawn.view(batch, grid, grid))
        masks.append(masked.view(batch, grid, grid))
        if after_step is not None:
            after_step(i, drawn, code)
    return code, codes, masks


def _draw_with_confidence(model, code, labels, s, i, steps, draws, autocast) -> Tuple[torch.Tensor, torch.Tensor]:
    """Step i of both confidence samplers up to the ranking: guidance ramped as w * i/(S-1), probs =
    softmax(logits * sm_temp), a draw at every position [B, N], and its confidence [B, N], randomised as
    `randomize` says (official order of operations: log(p) in float32 + (r_temp * gumbel) * (1 - ratio) in
    float64)."""
    conditional, unconditional = _logits(model, code, labels, s["w"], autocast)
    if unconditional is None:
        logits = conditional
    else:
        w_i = s["w"] * (i / (steps - 1))
        logits = (1 + w_i) * conditional - w_i * unconditional
    probs = torch.softmax(logits * s["sm_temp"], -1)
    drawn = draws.categorical(probs)
    confidence = probs.gather(-1, drawn.unsqueeze(-1)).squeeze(-1)
    mode = s["randomize"]
    if mode == "linear":
        ratio = i / (steps - 1)
        return drawn, torch.log(confidence) + s["r_temp"] * draws.gumbel64(tuple(confidence.shape)) * (1 - ratio)
    if mode == "random" or (mode == "warm_up" and i < 2):
        return drawn, draws.uniform(tuple(confidence.shape))
    return drawn, confidence


def _halton(model, labels, code, editable, bounds, s, draws, autocast, grid, after_step: StepHook = None):
    """code, editable [B, N]; bounds [B, S, 2]: the slice [start, stop) of the sample's order of editable cells
    that step i writes (all cells: the official order slices)."""
    batch, cells = code.shape
    order = halton_order(grid).to(code.device)  # [L, 2]
    length = order.shape[0]
    flat_order = (order[:, 0] * grid + order[:, 1]).expand(batch, length)
    if s["randomize"]:  # torch.roll per sample: entry j moves to (j + offset) mod L
        offsets = draws.integers("roll", grid * grid, ()).view(batch, 1)
        source = (torch.arange(length, device=code.device) - offsets) % length
        flat_order = flat_order.gather(1, source)
    listed = editable.gather(1, flat_order)  # the order filtered to the editable cells: each cell's rank in it
    never = torch.iinfo(torch.long).max
    position = (listed.long().cumsum(1) - 1).masked_fill(~listed, never)
    rank = torch.full_like(code, never).scatter(1, flat_order, position)
    temperatures = torch.linspace(s["sm_temp_min"], s["sm_temp_max"], s["step"])
    codes, masks = [], []
    for i in range(bounds.shape[1]):
        written = (rank >= bounds[:, i, :1]) & (rank < bounds[:, i, 1:])
        temperature = temperatures[i] ** s["temp_pow"]
        if i < s["temp_warmup"]:
            temperature = temperature * 0.5
        conditional, unconditional = _logits(model, code.view(batch, grid, grid), labels, s["w"], autocast)
        logits = conditional if unconditional is None else (1 + s["w"]) * conditional - s["w"] * unconditional
        probs = torch.softmax(logits * temperature.to(logits.device), -1)
        if s["top_k"] > 0:
            top_probs, top_indices = torch.topk(probs, s["top_k"])
            top_probs = top_probs / top_probs.sum(dim=-1, keepdim=True)
            column = draws.topk_categorical(top_probs.view(-1, s["top_k"]))
            drawn = top_indices.gather(-1, column.view(batch, -1, 1)).squeeze(-1)
        else:
            drawn = draws.categorical(probs)
        code = torch.where(written, drawn, code)
        codes.append(drawn.view(batch, grid, grid))
        masks.append(written.view(batch, grid, grid))
        if after_step is not None:
            after_step(i, drawn, code)
    return code, codes, masks


def _generate(model, labels, code, masked, editable, version, scheduler, s, draws, autocast, grid, codebook_size,
              after_step: StepHook = None):
    """The chosen sampler on code [B, N] (masked [B, N]: what the confidence samplers generate; editable [B, N]:
    the positions any step may write), its schedule run over each sample's editable count. -> (code [B, N],
    each step's drawn grid, each step's mask grid)."""
    sizes = editable.sum(1)
    if scheduler == "halton":
        bounds = _per_sample(sizes, lambda n: halton_schedule(s["step"], grid, s["cumulative"], cells=n))
        return _halton(model, labels, code, editable, bounds, s, draws, autocast, grid, after_step)
    if version == 1:
        counts = _per_sample(sizes, lambda n: confidence_schedule(s["step"], grid, s["sched_mode"], 1, cells=n))
        return _confidence_v1(model, labels, code, masked, counts, s, draws, autocast, grid, after_step)
    targets = _per_sample(sizes, lambda n: [min(n, max(t, i + 1)) for i, t in enumerate(
        confidence_schedule(s["step"], grid, s["sched_mode"], 2, cells=n))])
    return _confidence_v2(model, labels, code, masked, editable, targets, s, draws, autocast, grid, codebook_size,
                          after_step)


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def sample(model, labels: Union[torch.Tensor, Sequence[int]], *, version: int = 2, scheduler: str = "halton",
           step: Optional[int] = None, w: Optional[float] = None, sm_temp: Optional[float] = None,
           r_temp: Optional[float] = None, randomize: Union[None, str, bool] = None, sched_mode=None,
           sm_temp_min: Optional[float] = None, sm_temp_max: Optional[float] = None, temp_pow: Optional[float] = None,
           temp_warmup: Optional[int] = None, top_k: Optional[int] = None, sched_pow: Optional[float] = None,
           cumulative: Optional[bool] = None, mask_value: Optional[int] = None, codebook_size: Optional[int] = None,
           grid: Optional[int] = None, init_code: Optional[torch.Tensor] = None, noise: Optional[NoiseFn] = None,
           seeds: Seeds = None, autocast_dtype: Optional[torch.dtype] = None) -> Dict[str, object]:
    """Sample one token grid per label with the chosen official sampler (module docstring).

    `codebook_size` K (default `model.codebook_size`), `mask_value` (default K), `grid` G (default: the side of
    `init_code`, else `model.grid_size`). `autocast_dtype` runs the forward under autocast (the official v1 ran
    under CUDA fp16 autocast, v2 under bf16 when training in bf16; default: none). Returns {"code": the final
    grid [B, G, G] int64 before the official clamp to [0, K-1], "codes": each step's drawn grid, "masks": each
    step's bool grid (confidence: still masked after the step; Halton: written at the step)}.
    """
    if scheduler not in SCHEDULERS:
        raise SamplerSettingError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    s = resolve_settings(version, scheduler, step=step, w=w, sm_temp=sm_temp, r_temp=r_temp, randomize=randomize,
                         sched_mode=sched_mode, sm_temp_min=sm_temp_min, sm_temp_max=sm_temp_max,
                         temp_pow=temp_pow, temp_warmup=temp_warmup, top_k=top_k, sched_pow=sched_pow,
                         cumulative=cumulative)
    device = next(model.parameters()).device
    codebook_size = int(codebook_size if codebook_size is not None else model.codebook_size)
    mask_value = codebook_size if mask_value is None else int(mask_value)
    labels = torch.as_tensor(labels).reshape(-1).long().to(device)
    batch = labels.numel()
    if init_code is not None:
        if init_code.dim() != 3 or init_code.shape[0] != batch or init_code.shape[1] != init_code.shape[2]:
            raise ValueError(f"init_code must be [B, G, G] with B = {batch} labels, got {tuple(init_code.shape)}")
        grid = init_code.shape[1]
    grid = int(grid if grid is not None else getattr(model, "grid_size", 0))
    if grid < 1:
        raise ValueError("pass grid=G (the token-grid side) or init_code; the model has no grid_size attribute")
    if version == 2 and scheduler == "confidence" and s["step"] > grid * grid:
        raise SamplerSettingError(f"step ({s['step']}) must not exceed the number of tokens ({grid * grid})")
    draws = _Draws(noise, seeds, batch, device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with _eval_mode(model):
        if init_code is not None:
            code = init_code.to(device=device, dtype=torch.long).clone()
        elif version == 1 and mask_value < 0:  # the "noise" models start from uniform random codes
            code = draws.integers("random_code", codebook_size, (grid, grid))
        else:
            code = torch.full((batch, grid, grid), mask_value, dtype=torch.long, device=device)
        code = code.view(batch, grid * grid)
        everywhere = torch.ones_like(code, dtype=torch.bool)
        if version == 1:  # v1 inpaints the mask ids of init_code; v2 re-samples known tokens (facts §8)
            masked = code == codebook_size if init_code is not None else everywhere
        else:
            masked = code == mask_value
        code, codes, masks = _generate(model, labels, code, masked, everywhere, version, scheduler, s, draws,
                                       autocast, grid, codebook_size)
    return {"code": code.view(batch, grid, grid), "codes": codes, "masks": masks}


@torch.no_grad()
def infill(model, tokens: torch.Tensor, editable: torch.Tensor, class_ids: torch.Tensor, seeds: Seeds = None,
           settings: Optional[dict] = None, *, noise: Optional[NoiseFn] = None, on_step: StepHook = None,
           splits: Optional[Sequence[int]] = None, **overrides) -> torch.Tensor:
    """This family's infill step (`modeling.edit`): tokens (B, N) int64 VQ codes of a square grid, editable (B, N)
    bool -> tokens (B, N) with the editable ones generated by the chosen sampler and the others never touched.

    `settings` (a dict as `generation_settings` returns: "version", "scheduler" and the sampler's settings) and
    `overrides` (the same keys) over the official defaults; version defaults to the model's, scheduler to the
    version's default (v1 confidence, v2 Halton). The sampler runs as in `sample`, on the input with the mask id at
    the editable positions only, with its schedule over each sample's editable count; positions outside `editable`
    are never written, chosen or re-masked: the confidence samplers rank the editable positions only, Halton writes
    its fixed order filtered to the editable cells (rolled per sample before filtering when `randomize`). This is
    not `sample(init_code=...)`, which keeps each official sampler's semantics (v2 re-samples the context). The
    result is clamped to [0, K-1] as the official samplers' output before decoding. `noise` / `seeds` as in
    `sample` (full-grid draws, used at editable positions only); `on_step(step, sampled, code)` gets each step's
    draw at the editable positions (the input elsewhere) and the code after the step (mask id K = not yet decided),
    both (B, N). The v1 "noise" models (mask_value < 0) are not supported: editing starts from the mask id.
    """
    if splits is not None:
        raise SamplerSettingError(f"splits={list(splits)}: the MaskGIT-pytorch samplers decide whole tokens, with "
                                  f"no bit splits; pass splits=None (edit.splits=[])")
    given = {**(settings or {}), **overrides}
    version = given.pop("version", None) or getattr(model, "version", None)  # the transformers' "v1" / "v2"
    if version is None:
        raise SamplerSettingError(f"{type(model).__name__} has no version: pass version=1 or 2")
    version = int(str(version).lstrip("v"))
    scheduler = given.pop("scheduler", None) or DEFAULT_SCHEDULER[version]
    s = resolve_settings(version, scheduler, **given)
    if scheduler == "confidence" and not isinstance(s["sched_mode"], str):
        raise SamplerSettingError(f"sched_mode={s['sched_mode']!r}: a list of counts schedules the whole grid; "
                                  f"editing schedules the editable tokens, so choose a named mode (e.g. 'arccos')")
    device = next(model.parameters()).device
    tokens, editable = tokens.to(device).long(), editable.to(device).bool()
    grid, codebook_size = model.grid_size, model.codebook_size
    if tokens.shape != editable.shape or tokens.shape[1] != grid * grid:
        raise ValueError(f"tokens and editable must both be (B, {grid * grid}), got {tuple(tokens.shape)} and "
                         f"{tuple(editable.shape)}")
    if scheduler == "halton":
        order = halton_order(grid).to(device)
        listed = torch.zeros(grid * grid, dtype=torch.bool, device=device)
        listed[order[:, 0] * grid + order[:, 1]] = True
        if (editable & ~listed).any():
            raise SamplerSettingError(f"the Halton order of a {grid}x{grid} grid misses some cells (grid >= 64), "
                                      f"and the mask covers some of them; edit with scheduler='confidence'")
    labels = torch.as_tensor(class_ids).reshape(-1).long().to(device)
    draws = _Draws(noise, seeds, tokens.shape[0], device)
    after_step = None
    if on_step is not None:
        def after_step(i, drawn, code):
            on_step(i, torch.where(editable, drawn, tokens), code)
    with _eval_mode(model):
        code = _generate(model, labels, tokens.masked_fill(editable, codebook_size), editable, editable, version,
                         scheduler, s, draws, nullcontext(), grid, codebook_size, after_step)[0]
    return code.clamp(0, codebook_size - 1)


__all__: List[str] = ["DEFAULT_SCHEDULER", "OFFICIAL_DEFAULTS", "SamplerSettingError", "infill",
                      "official_defaults", "resolve_settings", "sample"]
