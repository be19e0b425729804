"""Stage-II trainer: the MaskBit generator on the tokens of a frozen tokenizer (official `train_maskbit.py`).

    GeneratorTrainer(config).train()

One optimizer step:
    1. tokens (B, N): the frozen tokenizer (eval, fp32, no grad, not prepared by accelerate) on the augmented
       images, as the official script; or one stored view per image from the token folder named by
       `dataset.params.pretokenized_shards_path_or_url` (scripts/pretokenize.py). Split into (B, N, S).
    2. each (position, split) element masked with probability schedule(r), r ~ U(0, 1) per sample; class
       labels dropped with probability `class_label_dropout`
    3. logits = generator(masked, labels, dropped); MLM loss over all elements (label smoothing, sum_splits)
    4. backward -> clip -> AdamW -> LR step -> zero grad, then the EMA update (base class)

Masking and label dropout draw from a CPU generator seeded by (seed, rank, micro-batch number): exact on resume
and the same on any device. Dropout inside the generator uses the global RNG, checkpointed per process.
"""
from __future__ import annotations

import itertools
import math
from typing import Mapping, Optional

import torch
from torchvision.utils import make_grid

from data.streams import derive_seed
from data.token_shards import TokenShards, TokenStream
from modeling import (MaskedTokenTransformer, build_generator, label_drop_mask, mask_tokens, sample_grid,
                      sampling_config)
from modeling.tokenizer import tokenize, tokenizer_fingerprint
from training.losses import MLMLoss
from training.lr_schedule import lr_scheduler_from_config
from training.optim import build_adamw, scaled_lr
from training.token_source import load_frozen_tokenizer
from training.registry import register_trainer
from training.trainer import Trainer
from training.visualization import save_grid
from utils.errors import MaskbitError

MASK_STREAM = 30  # derived-seed tag of the masking / label-dropout generator


@register_trainer("generator", "lfq_bert", "bert")
class GeneratorTrainer(Trainer):
    main_loss = "mlm_loss"

    def build(self) -> None:
        cfg, acc = self.config, self.accelerator
        # tokenizer first, as the official script: the global RNG is in the same state when the generator is built
        self.tokenizer = load_frozen_tokenizer(cfg, self.device)
        generator = build_generator(cfg).to(self.device)
        self.check_models(generator)
        self.token_shards = self._open_token_shards(generator)
        self._check_grid_classes(generator.num_classes)
        source = f"token folder {self.token_shards.directory}" if self.token_shards else "images, tokenized on the fly"
        self.logger.info(f"Generator: {sum(p.numel() for p in generator.parameters()):,} parameters "
                         f"({self.describe(generator)}); frozen tokenizer {cfg.experiment.vqgan_checkpoint}; "
                         f"training on {source}")
        optimizer = build_adamw(self.parameter_groups(generator),
                                scaled_lr(cfg.optimizer.params.learning_rate, cfg, acc.num_processes), cfg.optimizer)
        generator, optimizer = acc.prepare(generator, optimizer)
        scheduler = lr_scheduler_from_config(optimizer, cfg.lr_scheduler, cfg.training.max_train_steps)
        self.register("generator", models={"generator": generator}, optimizers={"generator": optimizer},
                      schedulers={"generator": scheduler})
        self.loss_fn = self.build_loss()
        # tokens/s in the logs: the tokenizer's tokens per image (2D grid or 1D sequence)
        self.tokens_per_sample = math.prod(self.tokenizer.token_grid(cfg.dataset.preprocessing.resolution))
        self._batch_number = 0  # micro-batches consumed: the masking seed (reset by train_batches on resume)

    # ------------------------------------------------------------------- what a generator family changes
    def check_models(self, generator) -> None:
        if not isinstance(generator, MaskedTokenTransformer):
            raise MaskbitError(f"{type(generator).__name__} is not a MaskBit generator; scripts/train_maskbit.py trains "
                               f"the bit-token / VQ-token generators of model.mlm_model here (TiTok generators, "
                               f"model.generator, train with training.titok_generator_trainer.TiTokGeneratorTrainer).")

    def describe(self, generator) -> str:
        return (f"{self.config.model.mlm_model.model_cls}, {generator.bits} bits in {generator.splits} splits, "
                f"{generator.seq_len} tokens")

    def parameter_groups(self, generator):
        return generator.parameters()

    def build_loss(self) -> torch.nn.Module:
        mlm = self.config.losses.mlm
        return MLMLoss(mlm.label_smoothing, mlm.sum_splits)

    # ------------------------------------------------------------------------------------------- data
    def _open_token_shards(self, generator) -> Optional[TokenShards]:
        """The pretokenized folder, checked against the generator and the tokenizer (None: use images)."""
        path = self.config.dataset.params.pretokenized_shards_path_or_url
        if not path:
            return None
        shards = TokenShards(path)
        bits = self.tokenizer.token_bits  # the token space is the tokenizer's, 2D grid or 1D sequence
        length = math.prod(self.tokenizer.token_grid(self.config.dataset.preprocessing.resolution))
        if shards.token_bits != bits or math.prod(shards.grid) != length:
            raise ValueError(f"token folder '{path}' holds {shards.token_bits}-bit tokens on a {shards.grid} grid, "
                             f"but this config expects {bits} bits x {length} tokens "
                             f"(model.vq_model, dataset.preprocessing.resolution). Pretokenize with this config.")
        if shards.meta.get("tokenizer_fingerprint") != tokenizer_fingerprint(self.tokenizer):
            raise ValueError(f"token folder '{path}' was made with other tokenizer weights "
                             f"('{shards.meta.get('tokenizer_checkpoint')}') than experiment.vqgan_checkpoint "
                             f"'{self.config.experiment.vqgan_checkpoint}'. Set experiment.vqgan_checkpoint to the "
                             f"tokenizer that made the tokens, or re-run scripts/pretokenize.py with this one.")
        return shards

    def train_batches(self, start_batch: int):
        self._batch_number = start_batch  # micro-batch counter of the masking seeds
        if self.token_shards is None:
            return super().train_batches(start_batch)
        acc, cfg = self.accelerator, self.config
        stream = TokenStream(self.token_shards, cfg.training.per_gpu_batch_size, cfg.training.seed,
                             acc.process_index, acc.num_processes, start_batch)
        if cfg.training.overfit_batch:
            n = cfg.training.overfit_batch_num
            return (stream.batch(i % n) for i in itertools.count(start_batch))
        return iter(stream)

    def _tokens(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, N) int64, class ids (B,)) on the device."""
        class_ids = batch["class_id"].to(self.device, non_blocking=True)
        if "tokens" in batch:
            return batch["tokens"].to(self.device, non_blocking=True), class_ids
        return tokenize(self.tokenizer, batch["image"].to(self.device, non_blocking=True)), class_ids

    # ------------------------------------------------------------------------------------------- step
    def train_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        acc, mlm = self.accelerator, self.config.model.mlm_model
        tokens, class_ids = self._tokens(batch)
        generator = self.unwrap("generator")
        targets = generator.split_tokens(tokens)
        rng = torch.Generator().manual_seed(
            derive_seed(MASK_STREAM, self.config.training.seed, acc.process_index, self._batch_number))
        self._batch_number += 1
        masked, mask = mask_tokens(targets, generator.mask_token, mlm.train_mask_schedule_strategy,
                                   mlm.min_masking_ratio, generator=rng)
        dropped = label_drop_mask(len(class_ids), mlm.class_label_dropout, generator=rng, device=self.device)
        with acc.autocast():
            logits = self.models["generator"](masked, class_ids, dropped)
        loss, logs = self.loss_fn(logits, targets, mask)
        acc.backward(loss)
        self.optimizer_step("generator")
        # a batch without any masked element (possible for tiny batches) has NaN masked-only stats: log 0, not stop
        for key in ("masked_token_loss", "masked_correct_tokens"):
            logs[key] = torch.nan_to_num(logs[key], nan=0.0)
        return logs

    def flops_per_sample(self) -> float:
        """3 x the forward FLOPs of the generator on one fully masked sample (MFU in the logs)."""
        from training.throughput import forward_flops
        model = self.unwrap("generator")
        tokens = torch.full((1, model.seq_len, model.splits), model.mask_token, device=self.device)
        return 3.0 * forward_flops(model, tokens, torch.zeros(1, dtype=torch.long, device=self.device))

    # ------------------------------------------------------------------------------------------- images
    def _check_grid_classes(self, num_classes: int) -> None:
        bad = [c for c in self.config.sample.classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"sample.classes {bad} are not class ids of this generator ({num_classes} classes); they "
                             f"select the rows of the training image grids.")

    @torch.no_grad()
    def visualize(self, batch: Mapping) -> None:
        """Samples of the EMA generator, one row per class of `sample.classes`, `sample.per_class` columns, image
        k with seed `sample.seed + k` (as scripts/sample.py) -> train_generated_images/<step>.png."""
        if not self.accelerator.is_main_process:
            return
        cfg = self.config.sample
        model = self.ema.module if self.ema is not None else self.unwrap("generator")
        images = sample_grid(model, self.tokenizer, cfg.classes, cfg.per_class, cfg.seed, cfg.batch_size,
                             sampling_config(self.config))
        grid = (make_grid(images, nrow=cfg.per_class, padding=2, pad_value=1.0) * 255).to(torch.uint8)
        save_grid(grid, self.output_dir / "train_generated_images" / f"{self.global_step:08d}.png")
        self.log_image("train/generated", grid)
