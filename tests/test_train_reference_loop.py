"""The trainer's update order equals a plain re-statement of the reference training step
(docs/design/reference-facts.md §4.4, §5).

Per step: tokenizer forward -> generator loss -> backward -> clip 1.0 -> AdamW -> LR step -> zero grad; then,
from discriminator_start on, the discriminator loss on the SAME x_rec -> backward -> clip -> AdamW -> its own LR
step; then the EMA update. Written here without any of the trainer's machinery, it must give bitwise the same
tokenizer, discriminator and EMA weights on CPU.
"""
import math

import torch
from accelerate.utils import set_seed

from data import build_train_dataloader, write_synthetic_shards
from modeling import build_discriminator, build_tokenizer
from training import TokenizerTrainer
from training.losses import VQGANLoss
from conftest import reset_accelerate_state
from train_utils import tiny_config
from utils.config import with_defaults

STEPS, GAN_START, WARMUP = 5, 2, 2


def cosine_with_minimum(step: int, total: int) -> float:
    if step < WARMUP:
        return step / WARMUP
    cos_term = 0.5 * (1.0 + math.cos(math.pi * (step - WARMUP) / max(1, total - WARMUP)))
    return max(0.0, cos_term + 0.1 - 0.1 * cos_term)


def reference_run(cfg):
    set_seed(cfg.training.seed)
    tokenizer, discriminator = build_tokenizer(cfg), build_discriminator(cfg)
    loss_fn = VQGANLoss.from_config(cfg)
    adamw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4, foreach=False)
    opt, d_opt = torch.optim.AdamW(tokenizer.parameters(), **adamw), torch.optim.AdamW(discriminator.parameters(), **adamw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_minimum(s, STEPS))
    d_sched = torch.optim.lr_scheduler.LambdaLR(d_opt, lambda s: cosine_with_minimum(s, STEPS - GAN_START))
    ema = [p.detach().clone() for p in tokenizer.parameters()]
    batches = iter(build_train_dataloader(cfg.dataset, cfg.training.per_gpu_batch_size, cfg.training.seed))
    tokenizer.train()
    for step in range(STEPS):
        x = next(batches)["image"]
        x_rec, info = tokenizer(x)
        loss, _ = loss_fn.generator_loss(x, x_rec, info, step, discriminator, tokenizer.get_last_layer())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step >= GAN_START:
            d_loss, _ = loss_fn.discriminator_loss(x, x_rec, step, discriminator)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(discriminator.parameters(), 1.0)
            d_opt.step()
            d_sched.step()
            d_opt.zero_grad(set_to_none=True)
        k = step  # update number step + 1, k = t - 1
        decay = 0.0 if k <= 0 else min((1 + k) / (10 + k), 0.999)
        with torch.no_grad():
            for shadow, param in zip(ema, tokenizer.parameters()):
                shadow.sub_((1 - decay) * (shadow - param))
    return tokenizer, discriminator, ema, loss_fn


def test_trainer_matches_plain_reference_loop(tmp_path):
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=32, num_val=4, resolution=16, seed=0)
    raw = tiny_config(shards, tmp_path / "out", losses={"discriminator_start": GAN_START},
                      training={"max_train_steps": STEPS},
                      experiment={"save_every": 100, "eval_every": 100, "generate_every": 100})
    trainer = TokenizerTrainer(raw)
    trainer.train()
    reset_accelerate_state()
    tokenizer, discriminator, ema, loss_fn = reference_run(with_defaults(raw))
    for a, b in zip(trainer.unwrap("tokenizer").parameters(), tokenizer.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(trainer.unwrap("discriminator").parameters(), discriminator.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(trainer.ema.module.parameters(), ema):
        assert torch.equal(a, b)
    assert torch.equal(trainer.loss_fn.lecam.ema_real_logits_mean, loss_fn.lecam.ema_real_logits_mean)
