"""VQGANLoss: every term and the total against hand computations; entropy annealing; the perceptual loss."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.losses import (PerceptualLoss, VQGANLoss, annealed_quantizer_loss, build_perceptual_loss,
                             entropy_annealing_coefficient)
from utils.config import with_defaults
from utils.weights import MissingWeightsError


def losses_config(**overrides):
    base = {"perceptual_loss": "none", "discriminator_start": 5}
    return with_defaults({"losses": {**base, **overrides}}).losses


class MeanDiscriminator(nn.Module):
    """Logit map = scale * channel mean (B, 1, H, W): simple enough to compute GAN terms by hand."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.scale * x.mean(dim=1, keepdim=True)


def fixed_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    x_rec = (x + 0.1 * torch.randn(2, 3, 8, 8, generator=g)).requires_grad_(True)
    info = {"quantizer_loss": torch.tensor(0.3), "entropy_loss": torch.tensor(-0.05),
            "commitment_loss": torch.tensor(0.35), "per_sample_entropy": torch.tensor(1.0),
            "avg_entropy": torch.tensor(3.5)}
    return x, x_rec, info


@pytest.mark.parametrize("step, coefficient", [(0, 2.0), (1000, 1.0), (2000, 0.0), (3000, 0.0)])
def test_entropy_annealing_factor(step, coefficient):
    assert entropy_annealing_coefficient(step, 2000, 2.0) == pytest.approx(coefficient)
    # effective entropy weight of the LFQ configs: 0.02 * (1 + coefficient) = 0.06 / 0.04 / 0.02 / 0.02
    q, e = torch.tensor(1.0), torch.tensor(0.02)
    assert annealed_quantizer_loss(q, e, step, 2000, 2.0).item() == pytest.approx(1.0 + 0.02 * (1 + coefficient) - 0.02)
    assert annealed_quantizer_loss(q, e, step, 2000, 0.0).item() == 1.0  # VQ configs: factor 0


def test_generator_loss_before_gan_start_by_hand():
    x, x_rec, info = fixed_inputs()
    loss_fn = VQGANLoss(losses_config(discriminator_start=5000))
    total, logs = loss_fn.generator_loss(x, x_rec, info, step=1000, discriminator=MeanDiscriminator())
    mse = ((x - x_rec) ** 2).mean()
    q = 0.3 + 1.0 * -0.05  # annealing coefficient max(0, 1 - 1000/2000) * 2 = 1 at step 1000
    assert total.item() == pytest.approx((4.0 * mse + 1.0 * q).item(), rel=1e-6)
    assert logs["reconstruction_loss"].item() == pytest.approx(4.0 * mse.item(), rel=1e-6)
    assert logs["quantizer_loss"].item() == pytest.approx(q, rel=1e-6)
    assert logs["weighted_gan_loss"].item() == 0.0 and logs["discriminator_factor"].item() == 0.0
    assert logs["d_weight"].item() == pytest.approx(0.02)
    assert logs["commitment_loss"].item() == pytest.approx(0.35)
    assert all(not v.requires_grad and v.dim() == 0 for v in logs.values())


def test_generator_loss_after_gan_start_adds_weighted_hinge_and_freezes_discriminator():
    x, x_rec, info = fixed_inputs()
    disc = MeanDiscriminator()
    loss_fn = VQGANLoss(losses_config(reconstruction_loss="l1"))
    total, logs = loss_fn.generator_loss(x, x_rec, info, step=5, discriminator=disc)
    l1 = (x - x_rec).abs().mean()
    g_hinge = -(2.0 * x_rec.mean(dim=1)).mean()
    q = 0.3 + entropy_annealing_coefficient(5, 2000, 2.0) * -0.05
    expected = 4.0 * l1 + q + 0.02 * 1.0 * g_hinge
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["gan_loss"].item() == pytest.approx(g_hinge.item(), rel=1e-6)
    assert not disc.scale.requires_grad  # frozen: only d loss / d x_rec flows
    total.backward()
    assert disc.scale.grad is None and x_rec.grad is not None


def test_adaptive_weight_option_uses_last_layer_gradients():
    torch.manual_seed(0)
    head = nn.Conv2d(3, 3, 1)
    x = torch.rand(2, 3, 4, 4)
    x_rec = head(torch.rand(2, 3, 4, 4))
    info = {"quantizer_loss": torch.tensor(0.0), "entropy_loss": torch.tensor(0.0)}
    loss_fn = VQGANLoss(losses_config(discriminator_gradient_penalty="adopt_weight", discriminator_start=0))
    disc = MeanDiscriminator()
    total, logs = loss_fn.generator_loss(x, x_rec, info, 0, disc, last_layer=head.weight)
    rec = 4.0 * F.mse_loss(x, x_rec)
    g = -(2.0 * x_rec.mean(dim=1)).mean()
    gr = torch.autograd.grad(rec, head.weight, retain_graph=True)[0]
    gg = torch.autograd.grad(g, head.weight, retain_graph=True)[0]
    adaptive = (gr.norm() / (gg.norm() + 1e-4)).clamp(0, 1e4)
    assert logs["d_weight"].item() == pytest.approx(0.02 * adaptive.item(), rel=1e-5)
    assert total.item() == pytest.approx((rec + 0.02 * adaptive * g).item(), rel=1e-5)


def test_discriminator_loss_hinge_plus_lecam_by_hand():
    x, x_rec, _ = fixed_inputs()
    disc = MeanDiscriminator().requires_grad_(False)
    loss_fn = VQGANLoss(losses_config())
    total, logs = loss_fn.discriminator_loss(x, x_rec, step=7, discriminator=disc)
    real, fake = 2.0 * x.mean(dim=1), 2.0 * x_rec.detach().mean(dim=1)
    hinge = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    lecam = 0.001 * (F.relu(real.mean() - 0.0) ** 2 + F.relu(0.0 - fake.mean()) ** 2)
    assert total.item() == pytest.approx((hinge + lecam).item(), rel=1e-6)
    assert logs["lecam_loss"].item() == pytest.approx(lecam.item(), rel=1e-6)
    assert logs["logits_real"].item() == pytest.approx(real.mean().item(), rel=1e-6)
    assert disc.scale.requires_grad  # switched back on for the discriminator step
    assert loss_fn.lecam.ema_real_logits_mean.item() == pytest.approx(0.001 * real.mean().item(), rel=1e-5)
    total.backward()
    assert disc.scale.grad is not None and x_rec.grad is None  # fake images are detached


def test_discriminator_switch_uses_the_step_before_increment():
    loss_fn = VQGANLoss(losses_config(discriminator_start=3))
    assert [loss_fn.discriminator_active(s) for s in (0, 2, 3, 4)] == [False, False, True, True]
    assert loss_fn.discriminator_factor(2) == 0.0 and loss_fn.discriminator_factor(3) == 1.0


def test_invalid_loss_names_are_rejected():
    with pytest.raises(ValueError, match="discriminator_loss"):
        VQGANLoss(losses_config(discriminator_loss="wasserstein"))
    with pytest.raises(ValueError, match="discriminator_gradient_penalty"):
        VQGANLoss(losses_config(discriminator_gradient_penalty="r1"))


def test_perceptual_loss_resizes_normalises_and_stays_in_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))
    net(torch.rand(1, 3, 224, 224))  # materialise the lazy layer
    net.eval()
    loss_fn = PerceptualLoss(net)
    loss_fn.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32, requires_grad=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def logits(v):
        return net((F.interpolate(v, size=224, mode="bilinear", antialias=True, align_corners=False) - mean) / std)

    expected = F.mse_loss(logits(x), logits(y))
    loss = loss_fn(x, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_build_perceptual_loss_options(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert build_perceptual_loss(with_defaults({"losses": {"perceptual_loss": "none"}})) is None
    with pytest.raises(MissingWeightsError, match=r"resnet50-0676ba61\.pth.*losses\.perceptual_weights_path"):
        build_perceptual_loss(with_defaults({"losses": {"perceptual_loss": "resnet50"}}))
    with pytest.raises(MissingWeightsError, match="does not exist"):
        build_perceptual_loss(with_defaults({"losses": {"perceptual_weights_path": str(tmp_path / "nope.pth")}}))
    with pytest.raises(ValueError, match="perceptual_loss must be one of"):
        build_perceptual_loss(with_defaults({"losses": {"perceptual_loss": "vgg"}}))


def test_resnet50_perceptual_loss_loads_a_weights_file(tmp_path):
    from torchvision.models import resnet50
    with torch.device("meta"):
        shapes = resnet50().state_dict()
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype)
             for k, v in shapes.items()}
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(state, path)
    config = with_defaults({"losses": {"perceptual_loss": "resnet50", "perceptual_weights_path": str(path)}})
    loss_fn = build_perceptual_loss(config)  # forward numerics: test_perceptual_loss_resizes_normalises...
    assert isinstance(loss_fn, PerceptualLoss) and loss_fn.on_logits
    assert torch.equal(loss_fn.network.fc.weight, state["fc.weight"])
    assert torch.equal(loss_fn.network.layer4[2].bn3.running_var, state["layer4.2.bn3.running_var"])
    assert not loss_fn.network.training and not any(p.requires_grad for p in loss_fn.parameters())
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision resnet50 state dict"):
        build_perceptual_loss(with_defaults({"losses": {"perceptual_weights_path": str(tmp_path / "bad.pth")}}))
