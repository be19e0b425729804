"""TiTok tokenizer training: the official two-stage recipe and the single-stage one (docs/design/titok-facts.md §5).

    python scripts/train_tokenizer.py config=configs/titok/titok_l32_stage1.yaml ...   # model_class titok

The recipe follows from `model.vq_model`:
- stage 1 (`is_legacy`, `finetune_decoder False`): the frozen MaskGIT-VQGAN (`pretrained_tokenizer_weight`)
  encodes each augmented batch (fp32, outside autocast) into proxy codes; loss = `proxy_code_loss`. No
  discriminator.
- stage 2 (`finetune_decoder True`): init from `experiment.init_weight` (stage-1 weights) plus the MaskGIT-VQGAN's
  decoder and codebook under `pixel_*`; encoder, quantizer and latent tokens frozen; loss = `TiTokPixelLoss`
  (L2 + perceptual + hinge GAN from `discriminator_start` + LeCAM) against `build_discriminator`.
- single-stage (`is_legacy False`, VQ or VAE): `TiTokPixelLoss` on the whole model (§5.3, an inference).

One optimizer step is the reference's: forward -> loss -> backward -> clip -> AdamW -> LR step -> zero grad ->
(from discriminator_start) discriminator step on the same, detached reconstructions -> EMA update. AdamW uses
TiTok's two parameter groups (`training.optim.no_decay_param_groups`). Loop, EMA, checkpoints, exact resume,
metrics.jsonl and image grids are the base `Trainer`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from modeling import build_discriminator, build_tokenizer
from modeling.checkpoint import check_compatible, read_state_dict, resolve_checkpoint
from modeling.titok.maskgit_vqgan import build_maskgit_vqgan
from training.bit_usage import BitUsageMonitor
from training.losses.perceptual import build_perceptual_loss
from training.losses.titok import TiTokPixelLoss, proxy_code_loss
from training.lr_schedule import lr_scheduler_from_config
from training.optim import build_adamw, no_decay_param_groups, scaled_lr
from training.registry import register_trainer
from training.tokenizer_trainer import TokenizerTrainer, _count
from training.visualization import reconstruction_grid, save_grid
from utils.weights import resolve_weights

MASKGIT_VQGAN_FILE = "maskgit-vqgan-imagenet-f16-256.bin"
MASKGIT_VQGAN_URL = f"https://huggingface.co/fun-research/TiTok/resolve/main/{MASKGIT_VQGAN_FILE}"


def titok_stage(vq_config) -> str:
    """'stage1', 'stage2' or 'single' for a `model.vq_model` section of model_class titok."""
    if vq_config.finetune_decoder:
        return "stage2"
    return "stage1" if vq_config.is_legacy else "single"


def maskgit_vqgan_weights(config) -> str:
    """Path (or hf:// id) of the MaskGIT-VQGAN weights, or a `MissingWeightsError` saying where to get them."""
    name = config.model.vq_model.pretrained_tokenizer_weight
    if name.startswith("hf://"):
        return name
    return str(resolve_weights(Path(name).name or MASKGIT_VQGAN_FILE, url=MASKGIT_VQGAN_URL, local_path=name,
                               what="MaskGIT-VQGAN weights (TiTok stage-1 targets / stage-2 pixel decoder, "
                                    "Hugging Face fun-research/TiTok)",
                               config_key="model.vq_model.pretrained_tokenizer_weight"))


def load_maskgit_vqgan(config) -> torch.nn.Module:
    """The frozen MaskGIT-VQGAN of `pretrained_tokenizer_weight`, loaded strictly, in eval mode."""
    from modeling.checkpoint import load_pretrained
    vq = config.model.vq_model
    vqgan = build_maskgit_vqgan(vq.pixel_vqgan_hidden_channels, vq.pixel_vqgan_channel_mult)
    return load_pretrained(vqgan, maskgit_vqgan_weights(config)).requires_grad_(False).eval()


def stage2_pixel_state_dict(vqgan_state: Mapping[str, torch.Tensor]) -> dict:
    """The reference's stage-2 mapping: every MaskGIT-VQGAN key without the substring `encoder.` gets `pixel_`
    prepended (decoder.* -> pixel_decoder.*, quantize.embedding.weight -> pixel_quantize.embedding.weight)."""
    return {"pixel_" + k: v for k, v in vqgan_state.items() if "encoder." not in k}


@register_trainer("tokenizer", "titok")
class TiTokTokenizerTrainer(TokenizerTrainer):
    def build(self) -> None:
        cfg, acc = self.config, self.accelerator
        self.stage = titok_stage(cfg.model.vq_model)
        tokenizer = build_tokenizer(cfg).to(self.device)
        tokenizer.token_grid(cfg.dataset.preprocessing.resolution)  # a resolution it cannot tile fails here, named
        self.proxy = None
        if self.stage == "stage1":
            self.proxy = load_maskgit_vqgan(cfg).to(self.device)
        self._load_init_weights(tokenizer)
        params = cfg.optimizer.params
        optimizer = build_adamw(no_decay_param_groups(tokenizer, params.weight_decay),
                                scaled_lr(params.learning_rate, cfg, acc.num_processes), cfg.optimizer)
        self.loss_fn = None
        if self.stage != "stage1":
            discriminator = build_discriminator(cfg).to(self.device)
            self.loss_fn = TiTokPixelLoss(cfg.losses, build_perceptual_loss(cfg)).to(self.device)
            d_optimizer = build_adamw(no_decay_param_groups(discriminator, params.weight_decay),
                                      scaled_lr(params.discriminator_learning_rate, cfg, acc.num_processes),
                                      cfg.optimizer)
            tokenizer, discriminator, optimizer, d_optimizer = acc.prepare(tokenizer, discriminator, optimizer,
                                                                           d_optimizer)
            models = {"tokenizer": tokenizer, "discriminator": discriminator}
            optimizers = {"tokenizer": optimizer, "discriminator": d_optimizer}
        else:
            tokenizer, optimizer = acc.prepare(tokenizer, optimizer)
            models, optimizers = {"tokenizer": tokenizer}, {"tokenizer": optimizer}
        max_steps = cfg.training.max_train_steps
        schedulers = {"tokenizer": lr_scheduler_from_config(optimizer, cfg.lr_scheduler, max_steps)}
        if "discriminator" in optimizers:  # warm-up from discriminator_start, length T - start (reference)
            schedulers["discriminator"] = lr_scheduler_from_config(optimizers["discriminator"], cfg.lr_scheduler,
                                                                   max_steps - cfg.losses.discriminator_start)
        lecam = self.loss_fn.lecam if self.loss_fn is not None else None
        self.register("tokenizer", models=models, optimizers=optimizers, schedulers=schedulers,
                      buffers={"lecam": lecam})
        self.bit_usage = BitUsageMonitor()
        self._evaluator = self._build_evaluator()
        trainable = sum(p.numel() for p in self.unwrap("tokenizer").parameters() if p.requires_grad)
        extra = (f"; discriminator {_count(self.unwrap('discriminator')):,}; perceptual loss "
                 f"{cfg.losses.perceptual_loss}" if "discriminator" in models else "; proxy codes: MaskGIT-VQGAN")
        self.logger.info(f"TiTok {self.stage}: {_count(self.unwrap('tokenizer')):,} parameters "
                         f"({trainable:,} trainable){extra}")

    def _load_init_weights(self, tokenizer: torch.nn.Module) -> None:
        """`experiment.init_weight` (plain weights) and, in stage 2, the MaskGIT-VQGAN's `pixel_*` parts; the
        combined state must match the model exactly (the reference loads it with strict=False)."""
        cfg = self.config
        state: dict = {}
        source = []
        if cfg.experiment.init_weight:
            path = resolve_checkpoint(cfg.experiment.init_weight)
            state.update(read_state_dict(path))
            source.append(str(path))
        if self.stage == "stage2":
            vqgan = load_maskgit_vqgan(cfg)
            state.update(stage2_pixel_state_dict(vqgan.state_dict()))  # after the init weights, as the reference
            source.append(maskgit_vqgan_weights(cfg))
            if not cfg.experiment.init_weight:
                self.logger.warning("TiTok stage 2 without experiment.init_weight: the frozen encoder and quantizer "
                                    "keep their random init (set it to the stage-1 weights).")
                state = {**tokenizer.state_dict(), **state}
        if not state:
            return
        check_compatible(tokenizer, state, source=" + ".join(source))
        tokenizer.load_state_dict(state, strict=True)
        self.logger.info(f"Initialised the tokenizer from {' + '.join(source)}")

    # ------------------------------------------------------------------------------------------------- step
    def train_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        if self.stage == "stage1":
            return self._stage1_step(batch)
        acc, step = self.accelerator, self.global_step
        x = self._images(batch)
        with acc.autocast():
            x_rec, info = self.models["tokenizer"](x)
        loss, logs = self.loss_fn.generator_loss(x, x_rec, info, step, self.unwrap("discriminator"))
        acc.backward(loss)
        self.optimizer_step("tokenizer")
        if self.loss_fn.discriminator_active(step):
            d_loss, d_logs = self.loss_fn.discriminator_loss(x, x_rec, step, self.models["discriminator"])
            acc.backward(d_loss)
            self.optimizer_step("discriminator")
            logs.update(d_logs)
        return logs

    def _stage1_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        acc = self.accelerator
        x = self._images(batch)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            codes = self.proxy.encode(x.float())
        with acc.autocast():
            logits, info = self.models["tokenizer"](x)
        loss, logs = proxy_code_loss(logits, codes, info["quantizer_loss"], self.config.losses.quantizer_weight)
        logs.update({k: info[k].detach().float() for k in ("commitment_loss", "codebook_loss")})
        acc.backward(loss)
        self.optimizer_step("tokenizer")
        return logs

    # --------------------------------------------------------------------------------------- images, eval
    def _reconstruct(self, model: torch.nn.Module, x: torch.Tensor):
        """(reconstruction, token indices or None); stage 1 decodes the argmax codes with the MaskGIT-VQGAN."""
        with self.accelerator.autocast():
            out, info = model(x)
        if self.stage == "stage1":
            out = self.proxy.decode(out.float().argmax(dim=1).reshape(out.shape[0], -1))
        codes = info.get("min_encoding_indices") if isinstance(info, Mapping) else None  # VAE: a posterior
        return out.float(), codes

    @torch.no_grad()
    def visualize(self, batch: Mapping) -> None:
        """Originals over reconstructions of the first `training.num_generated_images` images (EMA weights) ->
        train_images/<step>.png; stage 1 shows the MaskGIT-VQGAN decoding of the predicted codes."""
        if not self.accelerator.is_main_process:
            return
        x = self._images(batch)[: self.config.training.num_generated_images]
        model = self._eval_model()
        was_training = model.training
        model.eval()
        x_rec, _ = self._reconstruct(model, x)
        model.train(was_training)
        grid = reconstruction_grid(x, x_rec)
        save_grid(grid, self.output_dir / "train_images" / f"{self.global_step:08d}.png")
        self.log_image("train/reconstructions", grid)

    def eval_reconstruction(self, model: torch.nn.Module, x: torch.Tensor):
        """Clamped and rounded to the uint8 grid (`round(x * 255) / 255`) before the evaluator, as the reference."""
        x_rec, codes = self._reconstruct(model, x)
        return torch.round(x_rec.clamp(0.0, 1.0) * 255.0) / 255.0, codes
