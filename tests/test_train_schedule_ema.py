"""LR schedules (warm-up, decay, floor) and the EMA decay sequence / update against hand computations."""
import math

import pytest
import torch
import torch.nn as nn

from training import EMAModel, build_adamw, build_lr_scheduler, ema_decay, lr_multiplier_fn
from utils.config import with_defaults


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (5, 0.5), (10, 1.0),                       # linear warm-up from 0 over 10 steps
    (60, 0.1 + 0.9 * 0.5),                               # half-way through the cosine
    (110, 0.1),                                          # floor of 10 % at the end
    (200, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 1.9))),  # progress is not clipped (reference behaviour)
])
def test_cosine_with_minimum(step, expected):
    assert lr_multiplier_fn("cosine_with_minimum", 10, 110, 0.1)(step) == pytest.approx(expected)


def test_other_schedules():
    assert lr_multiplier_fn("cosine", 10, 110)(60) == pytest.approx(0.5)
    assert lr_multiplier_fn("cosine", 10, 110)(110) == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier_fn("linear", 10, 110)(60) == pytest.approx(0.5)
    assert lr_multiplier_fn("linear", 10, 110)(500) == 0.0
    assert lr_multiplier_fn("constant_with_warmup", 10, 110)(3) == pytest.approx(0.3)
    assert lr_multiplier_fn("constant_with_warmup", 10, 110)(10_000) == 1.0
    assert lr_multiplier_fn("constant", 10, 110)(0) == 1.0
    with pytest.raises(ValueError, match="lr_scheduler.scheduler"):
        lr_multiplier_fn("exponential", 10, 110)


def test_scheduler_sets_optimizer_lr_per_optimizer_step_and_first_step_runs_at_zero():
    param = nn.Parameter(torch.zeros(3))
    optimizer = build_adamw([param], 1e-3, with_defaults({}).optimizer)
    scheduler = build_lr_scheduler(optimizer, "cosine_with_minimum", warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    decayed = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 16)))  # step 5: progress 1/16
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, decayed])
    state = scheduler.state_dict()
    assert state["last_epoch"] == 6 and state["lr_lambdas"] == [None]  # numbers only: weights_only loadable


def test_adamw_matches_reference_settings():
    cfg = with_defaults({"optimizer": {"params": {"beta2": 0.96, "weight_decay": 0.045}}})
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    opt = build_adamw(model.parameters(), 1e-4, cfg.optimizer)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.045  # decay on everything
    assert opt.param_groups[0]["betas"] == (0.9, 0.96) and opt.param_groups[0]["eps"] == 1e-8
    # CPU: multi-tensor path, bitwise the single-tensor update (tests/test_fast_paths.py)
    assert opt.param_groups[0]["foreach"] is True and not opt.param_groups[0]["fused"]


def test_ema_decay_sequence():
    assert [ema_decay(t, 0.999) for t in (1, 2, 3, 4)] == pytest.approx([0.0, 2 / 11, 3 / 12, 4 / 13])
    assert ema_decay(10_000, 0.999) == 0.999
    assert ema_decay(991, 0.999) == pytest.approx(min(991 / 1000, 0.999))


def test_ema_update_is_bitwise_the_reference_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[1].bias.requires_grad_(False)
    ema = EMAModel(model, max_decay=0.999)
    shadow = [p.detach().clone() for p in model.parameters()]
    for t in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        decay = ema_decay(t, 0.999)
        for s, p in zip(shadow, model.parameters()):
            if p.requires_grad:
                s.sub_((1 - decay) * (s - p))
            else:
                s.copy_(p)
    for s, e in zip(shadow, ema.module.parameters()):
        assert torch.equal(s, e)
    assert ema.num_updates == 5 and not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    restored = EMAModel(model)
    restored.load_state_dict(ema.state_dict(), num_updates=5)
    assert all(torch.equal(a, b) for a, b in zip(restored.module.parameters(), ema.module.parameters()))
    assert restored.num_updates == 5
