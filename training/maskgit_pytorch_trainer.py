"""MaskGIT-pytorch v1 / Halton-MaskGIT v2 training (official `Trainer/vit.py` and `Trainer/cls_trainer.py`,
docs/design/maskgit-pytorch-facts.md §5).

    MaskGITPytorchTrainer(config).train()   # or scripts/train_maskbit.py config=configs/maskgit_pytorch/<name>.yaml

One optimizer step:
    1. code (B, G, G): the frozen VQGAN on the images ([0, 1] -> [-1, 1], official v1), or the stored codes of a
       token folder (scripts/pretokenize.py; official v2 pre-extracts them). `GeneratorTrainer`'s data path.
    2. labels dropped with probability `model.maskgit.drop_label`; per sample r ~ U(0, 1) and per token u ~ U(0, 1):
       a token is masked when u < p(r), p the version's `mask_schedule` (v1 square r^2, v2 square 1 - r^2);
       masked tokens take the mask id K (v1 `mask_value` <= 0: uniform random codes)
    3. logits (B, G*G, K + 1) = transformer(masked, labels, drop_label); cross-entropy against the original code
       over **all** positions, label smoothing `losses.mlm.label_smoothing` (v1 0.1, v2 0)
    4. backward -> clip -> AdamW (one group, every parameter) -> LR step -> zero grad (-> EMA if enabled)

The draws of step 2 (label-drop uniforms (B,), r (B,), u (B, G, G), random codes (B, G, G) for v1 noise models, in
this order) come from a CPU generator seeded by (seed, rank, micro-batch number), as in `GeneratorTrainer`: exact on
resume and the same on any device. The official draws them from the global RNG. Dropout uses the global RNG,
checkpointed per process.

Logged: `train/loss`, `train/masked_accuracy` (argmax accuracy over the masked tokens), `train/mask_ratio`.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from data.streams import derive_seed
from modeling import build_sampler, class_grid
from modeling.maskgit_pytorch import HaltonTransformer, MaskTransformer, mask_code
from training.generator_trainer import MASK_STREAM, GeneratorTrainer
from training.registry import register_trainer
from training.visualization import save_grid
from utils.errors import MaskbitError


class MaskGITPytorchLoss(torch.nn.Module):
    """Mean cross-entropy over every (B, N) position and the K + 1 classes, against the original codes."""

    def __init__(self, label_smoothing: float):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
        """logits (B, N, K + 1), targets (B, N) int64, mask (B, N) bool (True = masked) -> (loss, logs)."""
        vocab = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1),
                               label_smoothing=self.label_smoothing)
        with torch.no_grad():
            hits = (logits.detach().argmax(-1) == targets) & mask
            accuracy = hits.sum() / mask.sum().clamp(min=1)
        return loss, {"loss": loss.detach(), "masked_accuracy": accuracy.float(),
                      "mask_ratio": mask.float().mean()}


@register_trainer("generator", "v1", "v2")
class MaskGITPytorchTrainer(GeneratorTrainer):
    """`GeneratorTrainer`'s data path and loop with this family's masking, loss and optimiser (all parameters in one
    AdamW group: `GeneratorTrainer.parameter_groups`)."""

    main_loss = "loss"

    def check_models(self, generator) -> None:
        if not isinstance(generator, (MaskTransformer, HaltonTransformer)):
            raise MaskbitError(f"{type(generator).__name__} is not a MaskGIT-pytorch transformer "
                               f"(model.maskgit.version v1 / v2).")
        mask_value = self.config.model.maskgit.mask_value
        if mask_value is not None and mask_value <= 0 and generator.version != "v1":
            raise MaskbitError(f"model.maskgit.mask_value={mask_value} (random codes instead of the mask id) exists "
                               f"only in v1; use null (the mask id) for v2.")

    def describe(self, generator) -> str:
        return f"{generator.version}, {generator.codebook_size} codes on a {generator.grid_size}^2 grid"

    def build_loss(self) -> torch.nn.Module:
        return MaskGITPytorchLoss(self.config.losses.mlm.label_smoothing)

    def masking_draws(self, code: torch.Tensor):
        """(drop_label (B,), r (B,), u (B, G, G), random codes (B, G, G) or None) of the next micro-batch."""
        cfg, acc = self.config, self.accelerator
        rng = torch.Generator().manual_seed(
            derive_seed(MASK_STREAM, cfg.training.seed, acc.process_index, self._batch_number))
        self._batch_number += 1
        batch = code.shape[0]
        drop_label = torch.rand(batch, generator=rng) < cfg.model.maskgit.drop_label
        r = torch.rand(batch, generator=rng)
        u = torch.rand(code.shape, generator=rng)
        mask_value = cfg.model.maskgit.mask_value
        random_codes = None
        if mask_value is not None and mask_value <= 0:
            random_codes = torch.randint(0, self.unwrap("generator").codebook_size, code.shape, generator=rng)
        to = (lambda t: None if t is None else t.to(self.device))
        return to(drop_label), to(r), to(u), to(random_codes)

    def train_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        tokens, labels = self._tokens(batch)
        generator = self.unwrap("generator")
        side = generator.grid_size
        code = tokens.reshape(-1, side, side)
        drop_label, r, u, random_codes = self.masking_draws(code)
        value = self.config.model.maskgit.mask_value
        masked, mask = mask_code(code, version=generator.version, mode=self.config.model.maskgit.mask_schedule,
                                 value=generator.mask_token if value is None else value, r=r, u=u,
                                 random_codes=random_codes)
        with self.accelerator.autocast():
            logits = self.models["generator"](masked, labels, drop_label)
        loss, logs = self.loss_fn(logits, code.reshape(code.shape[0], -1), mask.reshape(code.shape[0], -1))
        self.accelerator.backward(loss)
        self.optimizer_step("generator")
        return logs

    @torch.no_grad()
    def visualize(self, batch: Mapping) -> None:
        """Samples of the (EMA) transformer with the family's sampler (`modeling.build_sampler`), one row per class of
        `sample.classes`, image k seeded by `sample.seed + k` -> train_generated_images/<step>.png."""
        if not self.accelerator.is_main_process:
            return
        cfg = self.config.sample
        model = self.ema.module if self.ema is not None else self.unwrap("generator")
        sample = build_sampler(self.config, model, self.tokenizer)
        with torch.autocast(self.device.type, enabled=False):
            images = class_grid(sample, cfg.classes, cfg.per_class, cfg.seed, cfg.batch_size)
        grid = (make_grid(images, nrow=cfg.per_class, padding=2, pad_value=1.0) * 255).to(torch.uint8)
        save_grid(grid, self.output_dir / "train_generated_images" / f"{self.global_step:08d}.png")
        self.log_image("train/generated", grid)
