"""Stage-I trainer: the VQGAN+ / MaskBit tokenizer against its discriminator (official `train_tokenizer.py`).

    TokenizerTrainer(config).train()

One optimizer step:
    1. x_rec, info = tokenizer(x)
    2. generator loss -> backward -> clip -> AdamW -> LR step -> zero grad
    3. from losses.discriminator_start on: discriminator loss on x and the SAME x_rec (detached, computed before
       the tokenizer update) -> backward -> clip -> AdamW -> LR step -> zero grad
    4. EMA update of the tokenizer, global_step += 1 (the GAN switch and entropy annealing see the step before)

Under `training.mixed_precision=bf16` the networks run in bf16 (autocast) but the LFQ quantizer, its entropy
loss and the loss terms are float32: the quantizer upcasts its input, so its codes, commitment loss and entropy
(a softmax at temperature 0.01, which bf16 would round coarsely) are those of the float32 latents it gets; the
reconstruction enters the losses as float32 and the discriminator logits are upcast before the GAN losses. In fp32
runs these casts are no-ops.

Discriminator and DDP: the reference wraps the whole loss module (discriminator inside) in DDP and toggles
`requires_grad` within it. Here the discriminator is prepared as a model of its own with its own optimizer. The
generator loss calls the *unwrapped* discriminator with frozen parameters (only d loss / d x_rec is needed), so
DDP never sees a forward whose parameters receive no gradient; the discriminator step calls the DDP wrapper and
every parameter gets a gradient. No `find_unused_parameters`, no extra all-reduce in the generator step.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from modeling import build_discriminator, build_tokenizer
from training.bit_usage import BitUsageMonitor
from training.losses import VQGANLoss
from training.lr_schedule import lr_scheduler_from_config
from training.optim import build_adamw, scaled_lr
from training.registry import register_trainer
from training.trainer import Trainer
from utils.errors import MaskbitError
from training.visualization import reconstruction_grid, save_grid


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@register_trainer("tokenizer", "vqgan+", "maskgit", "taming")
class TokenizerTrainer(Trainer):
    def build(self) -> None:
        cfg, acc = self.config, self.accelerator
        # same construction order as the reference (tokenizer, discriminator, loss) so a seed gives its init
        tokenizer = build_tokenizer(cfg).to(self.device)
        tokenizer.token_grid(cfg.dataset.preprocessing.resolution)  # a resolution it cannot tile fails here, named
        recipe = getattr(tokenizer, "training_recipe", "vqgan")
        if recipe != "vqgan":
            raise MaskbitError(f"{type(tokenizer).__name__} ({cfg.model.vq_model.model_class}) is trained with its own "
                               f"recipe ({recipe}), which scripts/train_tokenizer.py does not run yet; this trainer runs "
                               f"the VQGAN+ / MaskBit recipe only.")
        discriminator = build_discriminator(cfg).to(self.device)
        self.loss_fn = VQGANLoss.from_config(cfg).to(self.device)  # resolves perceptual weights or fails now
        if cfg.training.channels_last:
            tokenizer.to(memory_format=torch.channels_last)
            discriminator.to(memory_format=torch.channels_last)
        params = cfg.optimizer.params
        optimizer = build_adamw(tokenizer.parameters(), scaled_lr(params.learning_rate, cfg, acc.num_processes),
                                cfg.optimizer)
        d_optimizer = build_adamw(discriminator.parameters(),
                                  scaled_lr(params.discriminator_learning_rate, cfg, acc.num_processes), cfg.optimizer)
        tokenizer, discriminator, optimizer, d_optimizer = acc.prepare(tokenizer, discriminator, optimizer, d_optimizer)
        max_steps = cfg.training.max_train_steps
        scheduler = lr_scheduler_from_config(optimizer, cfg.lr_scheduler, max_steps)
        # the discriminator schedule only advances once it trains, i.e. its warm-up starts at discriminator_start;
        # its length max_train_steps - discriminator_start is the reference's (single-process) value
        d_scheduler = lr_scheduler_from_config(d_optimizer, cfg.lr_scheduler,
                                               max_steps - cfg.losses.discriminator_start)
        self.register("tokenizer", models={"tokenizer": tokenizer, "discriminator": discriminator},
                      optimizers={"tokenizer": optimizer, "discriminator": d_optimizer},
                      schedulers={"tokenizer": scheduler, "discriminator": d_scheduler},
                      buffers={"lecam": self.loss_fn.lecam})
        self.bit_usage = BitUsageMonitor()
        self._evaluator = self._build_evaluator()
        self.logger.info(f"Tokenizer: {_count(self.unwrap('tokenizer')):,} parameters; discriminator: "
                         f"{_count(self.unwrap('discriminator')):,}; perceptual loss: {cfg.losses.perceptual_loss}")

    def train_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        acc, step = self.accelerator, self.global_step
        x = self._images(batch)
        with acc.autocast():
            x_rec, info = self.models["tokenizer"](x)
            x_rec = x_rec.float()  # losses in fp32 (a no-op without mixed precision)
            loss, logs = self.loss_fn.generator_loss(x, x_rec, info, step, self.unwrap("discriminator"),
                                                     self.unwrap("tokenizer").get_last_layer())
        acc.backward(loss)
        self.optimizer_step("tokenizer")
        if self.loss_fn.discriminator_active(step):
            with acc.autocast():
                d_loss, d_logs = self.loss_fn.discriminator_loss(x, x_rec, step, self.models["discriminator"])
            acc.backward(d_loss)
            self.optimizer_step("discriminator")
            logs.update(d_logs)
        if "bit_usage" in info:
            self.bit_usage.add(info["bit_usage"])
        return logs

    def _images(self, batch: Mapping) -> torch.Tensor:
        x = batch["image"].to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.config.training.channels_last else x

    def flops_per_sample(self) -> float:
        """3 x the tokenizer's forward FLOPs on one image (MFU in the logs; the discriminator is not counted)."""
        from training.throughput import forward_flops
        r = self.config.dataset.preprocessing.resolution
        return 3.0 * forward_flops(self.unwrap("tokenizer"), torch.zeros(1, 3, r, r, device=self.device))

    def _eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.unwrap("tokenizer")

    def extra_logs(self) -> dict[str, float]:
        usage = self.bit_usage.pop(self.accelerator)
        if usage is None:
            return {}
        logs = {f"bits/usage_{i:02d}": u for i, u in enumerate(usage)}
        dead = BitUsageMonitor.dead_bits(usage)
        logs["bits/dead"] = float(len(dead))
        if dead:
            self.logger.warning(f"step {self.global_step}: bits {dead} were constant over the last "
                                f"{self.config.experiment.log_every} steps (dead bits)")
        return logs

    @torch.no_grad()
    def visualize(self, batch: Mapping) -> None:
        """Reconstructions of the first `training.num_generated_images` images of the batch with the EMA weights
        (encoded under the training autocast, decoded in fp32 as the reference) -> train_images/<step>.png."""
        if not self.accelerator.is_main_process:
            return
        x = self._images(batch)[: self.config.training.num_generated_images]
        model = self._eval_model()
        was_training = model.training
        model.eval()
        with self.accelerator.autocast():
            z_q, _ = model.encode(x)
        x_rec = model.decode(z_q.float())
        model.train(was_training)
        grid = reconstruction_grid(x, x_rec)
        save_grid(grid, self.output_dir / "train_images" / f"{self.global_step:08d}.png")
        self.log_image("train/reconstructions", grid)

    def _build_evaluator(self):
        """Reconstruction metrics on the eval set every `experiment.eval_every` steps (when eval shards are set);
        Inception / LPIPS weights are resolved now so that a missing file fails before training."""
        cfg = self.config
        if not cfg.dataset.params.eval_shards_path_or_url or cfg.experiment.eval_every > cfg.training.max_train_steps:
            return None
        from evaluation.builders import tokenizer_evaluator_from_config
        return tokenizer_evaluator_from_config(cfg, self.unwrap("tokenizer"), self.device)

    def eval_reconstruction(self, model: torch.nn.Module, x: torch.Tensor):
        """(reconstruction clamped to [0, 1], token indices) of eval images `x` (fp32, as the reference)."""
        x_rec, info = model(x)
        return x_rec.clamp(0.0, 1.0), info["min_encoding_indices"]

    @torch.no_grad()
    def evaluate(self) -> Optional[dict]:
        if self._evaluator is None:
            return None
        from data import build_eval_dataloader
        acc, evaluator, model = self.accelerator, self._evaluator, self._eval_model()
        was_training = model.training
        model.eval()
        evaluator.reset()
        cfg = self.config
        for batch in build_eval_dataloader(cfg.dataset, cfg.training.per_gpu_batch_size, acc.process_index,
                                           acc.num_processes):
            x = self._images(batch)
            evaluator.update(x.clamp(0.0, 1.0), *self.eval_reconstruction(model, x))
        model.train(was_training)
        evaluator.all_reduce()
        result = evaluator.result()
        scalars = {f"eval/{k}": float(v) for k, v in result.items() if not isinstance(v, (list, tuple))}
        self.metrics.log(self.global_step, scalars)
        summary = " ".join(f"{k[5:]} {v:.4f}" for k, v in scalars.items())
        self.logger.info(f"eval at step {self.global_step}: {summary}")
        return result
