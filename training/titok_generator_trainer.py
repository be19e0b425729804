"""TiTok generator training: `ImageBert` / `UViTBert` on the 1D tokens of a frozen TiTok (official
`scripts/train_maskgit.py`, titok-facts §1.4, §6.4).

    TiTokGeneratorTrainer(config).train()      # or scripts/train_maskbit.py config=configs/titok/titok_maskgit.yaml

One optimizer step:
    1. tokens (B, N): the frozen TiTok (`experiment.vqgan_checkpoint`; eval, fp32, no grad) on the augmented
       images, as the official; or one stored view per image from the token folder of scripts/pretokenize.py
       (`dataset.params.pretokenized_shards_path_or_url`, 1D grids (N,)). Same data path as `GeneratorTrainer`.
    2. the model's own `masking_input_tokens` (t ~ U(0, 1) per sample, round(N arccos(t) / (pi/2)) positions,
       chosen by the argsort of U(0, 1) noise); class labels dropped with `model.generator.class_label_dropout`
    3. logits = generator(masked, labels, drop_mask); `TiTokMLMLoss`: label-smoothed cross-entropy against the
       unmasked tokens, weight 1 on masked and `losses.mlm.loss_weight_unmasked_token` on unmasked positions,
       sum(loss * w) / (sum(w) + 1e-8)
    4. backward -> clip -> AdamW (TiTok's two weight-decay groups) -> LR step -> zero grad -> EMA (base class)

The three random draws of step 2 (timesteps (B,), noise (B, N), label-drop uniforms (B,), in this order, the
official order) come from a CPU generator seeded by (seed, rank, micro-batch number), as in `GeneratorTrainer`:
exact on resume and the same on any device. The official draws them from the global RNG. Dropout inside
`ImageBert` uses the global RNG, checkpointed per process.

Logged (as the official trainer): `train/loss`, `train/correct_tokens` (accuracy over masked positions, per-sample
mean), plus the base class's lr and throughput scalars. Image grids: `generate` of the EMA generator with the
config's sampling values (`model.generator`), image k seeded by `sample.seed + k`, decoded by the tokenizer.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from data.streams import derive_seed
from modeling import label_drop_mask
from modeling.titok.generator import ImageBert
from training.generator_trainer import MASK_STREAM, GeneratorTrainer
from training.optim import no_decay_param_groups
from training.registry import register_trainer
from training.visualization import save_grid
from utils.errors import MaskbitError

class TiTokMLMLoss(nn.Module):
    """The official TiTok generator loss over (B, N) image positions.

    per-position CE (label smoothing) against the original tokens; weights w = 1 (masked) / `unmasked_weight`
    (unmasked), written as (1 - m) * unmasked_weight + m; loss = sum(CE * w) / (sum(w) + 1e-8).
    `correct_tokens` = mean over samples of the argmax accuracy over that sample's masked positions.
    """

    def __init__(self, label_smoothing: float = 0.1, loss_weight_unmasked_token: float = 0.1):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.loss_weight_unmasked_token = loss_weight_unmasked_token

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                masks: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """logits (B, N, V), targets (B, N) int, masks (B, N) bool (True = masked) -> (loss, logs)."""
        batch, length, vocab = logits.shape
        per_token = F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1),
                                    label_smoothing=self.label_smoothing, reduction="none").view(batch, length)
        masked = masks.to(per_token.dtype)
        weights = (1.0 - masked) * self.loss_weight_unmasked_token + masked
        loss = (per_token * weights).sum() / (weights.sum() + 1e-8)
        with torch.no_grad():
            hits = (logits.detach().argmax(dim=-1) == targets).to(per_token.dtype) * masked
            correct = (hits.sum(dim=1) / (masked.sum(dim=1) + 1e-8)).mean()
        return loss, {"loss": loss.detach(), "correct_tokens": correct}


@register_trainer("generator", "ViT", "UViT")
class TiTokGeneratorTrainer(GeneratorTrainer):
    """`GeneratorTrainer`'s data path (on-the-fly or pretokenized tokens, `train_batches`, `_tokens`) with TiTok's
    model, masking, loss, optimizer grouping and sampler."""

    main_loss = "loss"

    def check_models(self, generator) -> None:
        if not isinstance(generator, ImageBert):
            raise MaskbitError(f"{type(generator).__name__} is not a TiTok generator (model.generator.model_type "
                               f"ViT / UViT); MaskBit generators (model.mlm_model) train with GeneratorTrainer.")

    def describe(self, generator) -> str:
        return (f"{self.config.model.generator.model_type}, {generator.codebook_size} codes x "
                f"{generator.image_seq_len} tokens")

    def parameter_groups(self, generator):
        return no_decay_param_groups(generator, self.config.optimizer.params.weight_decay)  # TiTok's two groups

    def build_loss(self) -> nn.Module:
        mlm = self.config.losses.mlm
        return TiTokMLMLoss(mlm.label_smoothing, mlm.loss_weight_unmasked_token)

    def masking_draws(self, batch_size: int, seq_len: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(timesteps (B,), noise (B, N), label-drop mask (B,)) of the next micro-batch, on the device."""
        acc, cfg = self.accelerator, self.config
        rng = torch.Generator().manual_seed(
            derive_seed(MASK_STREAM, cfg.training.seed, acc.process_index, self._batch_number))
        self._batch_number += 1
        timesteps = torch.rand(batch_size, generator=rng)
        noise = torch.rand(batch_size, seq_len, generator=rng)
        dropped = label_drop_mask(batch_size, cfg.model.generator.class_label_dropout, generator=rng,
                                  device=self.device)
        return timesteps.to(self.device), noise.to(self.device), dropped

    def train_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        tokens, class_ids = self._tokens(batch)
        timesteps, noise, dropped = self.masking_draws(*tokens.shape)
        masked, masks = self.unwrap("generator").masking_input_tokens(tokens, timesteps=timesteps, noise=noise)
        with self.accelerator.autocast():
            logits = self.models["generator"](masked, class_ids, self.config.model.generator.class_label_dropout,
                                              drop_mask=dropped)
        loss, logs = self.loss_fn(logits, tokens, masks)
        self.accelerator.backward(loss)
        self.optimizer_step("generator")
        return logs

    @torch.no_grad()
    def visualize(self, batch: Mapping) -> None:
        """Samples of the EMA generator: one row per class of `sample.classes`, `sample.per_class` columns, image k
        with seed `sample.seed + k`, sampled with the `model.generator` values -> train_generated_images/<step>.png."""
        if not self.accelerator.is_main_process:
            return
        cfg, gen = self.config.sample, self.config.model.generator
        model = self.ema.module if self.ema is not None else self.unwrap("generator")
        labels = [c for c in cfg.classes for _ in range(cfg.per_class)]
        images = []
        for start in range(0, len(labels), cfg.batch_size):
            chunk = labels[start:start + cfg.batch_size]
            ids = model.generate(chunk, guidance_scale=gen.guidance_scale, guidance_decay=gen.guidance_decay,
                                 guidance_scale_pow=gen.guidance_scale_pow,
                                 randomize_temperature=gen.randomize_temperature,
                                 softmax_temperature_annealing=gen.softmax_temperature_annealing,
                                 num_sample_steps=gen.num_steps,
                                 seeds=[cfg.seed + start + k for k in range(len(chunk))])
            with torch.autocast(self.device.type, enabled=False):
                images.append(self.tokenizer.decode_tokens(ids).float().clamp(0.0, 1.0).cpu())
        grid = (make_grid(torch.cat(images), nrow=cfg.per_class, padding=2, pad_value=1.0) * 255).to(torch.uint8)
        save_grid(grid, self.output_dir / "train_generated_images" / f"{self.global_step:08d}.png")
        self.log_image("train/generated", grid)
