"""cosine_with_restarts and polynomial against an independent restatement of the official formulas.

Official (markweberdev/maskbit utils/lr_schedulers.py, HuggingFace-style) defaults: num_cycles 1, power 1.0,
lr_end 1e-7 (absolute), peak lr = the optimizer's constructor lr; both warm up linearly from 0.
"""
import math

import pytest
import torch
import torch.nn as nn

from training import build_adamw, build_lr_scheduler, lr_multiplier_fn
from utils.config import ConfigError, load_config, with_defaults

W, T = 10, 110  # warm-up steps, total steps


def restarts_reference(step, cycles):
    """Warm-up s/W; then each of `cycles` equal segments of [W, T) is a half cosine 1 -> 0; 0 from T on."""
    if step < W:
        return step / W
    if step >= T:
        return 0.0
    segment = (T - W) / cycles
    into = (step - W) - math.floor((step - W) / segment) * segment  # steps into the current cycle
    return (1 + math.cos(math.pi * into / segment)) / 2


def polynomial_reference(step, peak, end, power):
    """Warm-up s/W; then lr goes from `peak` to `end` as end + (peak - end) * ((T - s) / (T - W)) ** power."""
    if step < W:
        return step / W
    if step > T:
        return end / peak
    return (end + (peak - end) * ((T - step) / (T - W)) ** power) / peak


STEPS = [0, 1, 5, 9, 10, 11, 35, 36, 59, 60, 61, 84, 85, 86, 100, 109, 110, 111, 500]


@pytest.mark.parametrize("cycles", [1, 2, 4])
def test_cosine_with_restarts(cycles):
    fn = lr_multiplier_fn("cosine_with_restarts", W, T, num_cycles=cycles)
    for step in STEPS:
        assert fn(step) == pytest.approx(restarts_reference(step, cycles), rel=1e-9, abs=1e-12), step
    assert fn(W) == 1.0 and fn(T) == 0.0 and fn(T + 100) == 0.0  # no floor, no wrap-around after the end
    if cycles == 4:  # hard restarts at 35, 60, 85: back to the peak lr right after the minimum
        assert [fn(s) for s in (35, 60, 85)] == [1.0, 1.0, 1.0]
        assert fn(34) < 0.01 and fn(59) < 0.01


def test_cosine_with_restarts_defaults_to_one_cycle_equal_to_cosine():
    restarts, cosine = lr_multiplier_fn("cosine_with_restarts", W, T), lr_multiplier_fn("cosine", W, T)
    assert all(restarts(s) == pytest.approx(cosine(s), abs=1e-12) for s in range(T))


@pytest.mark.parametrize("peak, end, power", [(1e-4, 1e-7, 1.0), (1e-3, 1e-5, 2.0), (2e-4, 1e-7, 0.5)])
def test_polynomial(peak, end, power):
    fn = lr_multiplier_fn("polynomial", W, T, power=power, lr_end=end, peak_lr=peak)
    for step in STEPS:
        assert fn(step) == pytest.approx(polynomial_reference(step, peak, end, power), rel=1e-9, abs=1e-15), step
    assert fn(W) == 1.0
    assert fn(T) * peak == pytest.approx(end, rel=1e-9) and fn(T + 1000) * peak == pytest.approx(end, rel=1e-9)


def test_polynomial_power_one_is_linear_to_lr_end():
    fn = lr_multiplier_fn("polynomial", W, T, peak_lr=1e-4)  # official defaults: power 1, lr_end 1e-7
    assert fn(60) * 1e-4 == pytest.approx((1e-4 + 1e-7) / 2, rel=1e-9)


def test_polynomial_needs_a_peak_lr_above_lr_end():
    with pytest.raises(ValueError, match="peak_lr"):
        lr_multiplier_fn("polynomial", W, T)
    with pytest.raises(ValueError, match="lr_end"):
        lr_multiplier_fn("polynomial", W, T, lr_end=1e-3, peak_lr=1e-3)


def _lrs(scheduler, optimizer, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_build_lr_scheduler_polynomial_takes_the_peak_from_the_optimizer():
    param = nn.Parameter(torch.zeros(3))
    optimizer = build_adamw([param], 1e-3, with_defaults({}).optimizer)
    scheduler = build_lr_scheduler(optimizer, "polynomial", W, T, power=2.0, lr_end=1e-5)
    lrs = _lrs(scheduler, optimizer, T + 3)
    expected = [1e-3 * polynomial_reference(s, 1e-3, 1e-5, 2.0) for s in range(T + 3)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert lrs[0] == 0.0 and lrs[W] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="lr_end"):
        build_lr_scheduler(optimizer, "polynomial", W, T, lr_end=1e-3)


def test_build_lr_scheduler_restarts_and_backward_compatible_positional_call():
    param = nn.Parameter(torch.zeros(3))
    optimizer = build_adamw([param], 1e-3, with_defaults({}).optimizer)
    lrs = _lrs(build_lr_scheduler(optimizer, "cosine_with_restarts", W, T, 0.1, num_cycles=2), optimizer, T + 2)
    assert lrs == pytest.approx([1e-3 * restarts_reference(s, 2) for s in range(T + 2)], rel=1e-9, abs=1e-15)
    old_style = build_lr_scheduler(optimizer, "cosine_with_minimum", 4, 20, 0.1)  # the callers' current call
    assert old_style.lr_lambdas[0](20) == pytest.approx(0.1)


def test_schema_defaults_and_removed_key():
    params = with_defaults({}).lr_scheduler.params
    assert (params.num_cycles, params.power, params.lr_end) == (1, 1.0, 1e-7)
    cfg = with_defaults({"lr_scheduler": {"scheduler": "polynomial", "params": {"power": 2.0, "lr_end": 1e-6}}})
    assert cfg.lr_scheduler.params.power == 2.0 and cfg.lr_scheduler.params.lr_end == 1e-6
    with pytest.raises(ConfigError, match="discriminator_penalty_cost"):
        with_defaults({"losses": {"discriminator_penalty_cost": 10.0}})


def test_official_yaml_with_the_removed_key_still_loads(tmp_path):
    path = tmp_path / "official.yaml"
    path.write_text("losses:\n  discriminator_penalty_cost: 10.0\n  discriminator_weight: 0.03\n")
    with pytest.warns(UserWarning, match="ignoring losses.discriminator_penalty_cost"):
        cfg = load_config([f"config={path}"])
    assert cfg.losses.discriminator_weight == 0.03 and "discriminator_penalty_cost" not in cfg.losses
