"""GAN losses, LeCAM and the adaptive weight against hand computations on fixed tensors."""
import math

import pytest
import torch

from training.losses import (GAN_LOSSES, LeCAMRegularizer, adaptive_gan_weight, hinge_d_loss, hinge_g_loss,
                             non_saturating_d_loss, non_saturating_g_loss, vanilla_d_loss)

REAL = torch.tensor([[0.5, 2.0], [-1.0, 0.0]])
FAKE = torch.tensor([[0.5, -2.0], [1.0, -0.5]])


def softplus(v):
    return math.log1p(math.exp(v))


def test_hinge_losses_by_hand():
    # relu(1 - real) = [0.5, 0, 2, 1] -> 0.875; relu(1 + fake) = [1.5, 0, 2, 0.5] -> 1.0
    assert hinge_d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (0.875 + 1.0))
    assert hinge_g_loss(FAKE).item() == pytest.approx(-(0.5 - 2.0 + 1.0 - 0.5) / 4)


def test_vanilla_d_loss_by_hand():
    real = sum(softplus(-v) for v in REAL.flatten().tolist()) / 4
    fake = sum(softplus(v) for v in FAKE.flatten().tolist()) / 4
    assert vanilla_d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (real + fake), rel=1e-6)


def test_non_saturating_losses_by_hand_and_stable_for_large_logits():
    real = sum(-math.log(1 / (1 + math.exp(-v))) for v in REAL.flatten().tolist()) / 4
    fake = sum(-math.log(1 - 1 / (1 + math.exp(-v))) for v in FAKE.flatten().tolist()) / 4
    assert non_saturating_d_loss(REAL, FAKE).item() == pytest.approx(real + fake, rel=1e-6)
    g = sum(-math.log(1 / (1 + math.exp(-v))) for v in FAKE.flatten().tolist()) / 4
    assert non_saturating_g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)
    huge = torch.tensor([200.0, -200.0])
    assert torch.isfinite(non_saturating_d_loss(huge, huge)) and torch.isfinite(non_saturating_g_loss(huge))
    assert non_saturating_g_loss(huge).item() == pytest.approx(100.0)  # (0 + 200) / 2


def test_vanilla_pairs_with_the_hinge_generator_loss_as_in_the_reference():
    assert GAN_LOSSES["hinge"] == (hinge_d_loss, hinge_g_loss)
    assert GAN_LOSSES["vanilla"] == (vanilla_d_loss, hinge_g_loss)
    assert GAN_LOSSES["non-saturating"] == (non_saturating_d_loss, non_saturating_g_loss)


def test_lecam_uses_old_emas_then_updates_them():
    lecam = LeCAMRegularizer(ema_decay=0.999)
    assert set(lecam.state_dict()) == {"ema_real_logits_mean", "ema_fake_logits_mean"}
    assert lecam.ema_real_logits_mean.shape == (1,) and lecam.ema_real_logits_mean.item() == 0.0
    # step 1: r = 1.5, f = -0.5, EMAs 0: relu(1.5 - 0)^2 + relu(0 + 0.5)^2
    loss = lecam(torch.full((2, 1, 4, 4), 1.5), torch.full((2, 1, 4, 4), -0.5))
    assert loss.item() == pytest.approx(2.25 + 0.25)
    assert lecam.ema_real_logits_mean.item() == pytest.approx(0.001 * 1.5)
    assert lecam.ema_fake_logits_mean.item() == pytest.approx(0.001 * -0.5)
    # step 2: r = 0.2, f = 0.1: relu(0.2 - (-0.0005))^2 + relu(0.0015 - 0.1)^2
    loss = lecam(torch.full((1, 1, 2, 2), 0.2), torch.full((1, 1, 2, 2), 0.1))
    assert loss.item() == pytest.approx(0.2005 ** 2, rel=1e-5)
    assert lecam.ema_real_logits_mean.item() == pytest.approx(0.999 * 0.0015 + 0.001 * 0.2, rel=1e-5)
    assert lecam.ema_fake_logits_mean.item() == pytest.approx(0.999 * -0.0005 + 0.001 * 0.1, rel=1e-4)


def test_lecam_gradient_flows_to_logits_not_to_buffers():
    lecam = LeCAMRegularizer()
    real = torch.full((4,), 2.0, requires_grad=True)
    lecam(real, torch.zeros(4)).backward()
    assert real.grad is not None and torch.allclose(real.grad, torch.full((4,), 2 * 2.0 / 4))
    assert not lecam.ema_real_logits_mean.requires_grad


def test_adaptive_weight_is_gradient_norm_ratio_clamped():
    w = torch.ones(3, requires_grad=True)
    a, b = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    weight = adaptive_gan_weight((w * a).sum(), (w * b).sum(), w)
    assert weight.item() == pytest.approx(5.0 / (1.0 + 1e-4))
    assert not weight.requires_grad
    clamped = adaptive_gan_weight((w * a).sum(), (w * 0.0).sum(), w)
    assert clamped.item() == pytest.approx(1e4)  # 5 / 1e-4 = 5e4 clamped to 1e4
