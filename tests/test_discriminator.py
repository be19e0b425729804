"""VQGAN+ discriminator (blur resampling, 16x16 logits) and the PatchGAN option, at reduced widths."""
import pytest
import torch
import torch.nn.functional as F

from modeling import PatchGANDiscriminator, VQGANPlusDiscriminator, build_discriminator
from modeling.cpu_bf16 import runs_in_float32_on_cpu
from modeling.discriminator import AdaptiveMaxPool, BlurDownsample


@pytest.mark.parametrize("size", [256, 128])
def test_logit_map_is_16x16(size):
    discriminator = VQGANPlusDiscriminator(hidden_channels=32, num_stages=4)
    with torch.no_grad():
        assert discriminator(torch.rand(1, 3, size, size)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("kernel_size,taps,pad", [(3, [1, 2, 1], (0, 1)), (4, [1, 3, 3, 1], (1, 1)),
                                                  (5, [1, 4, 6, 4, 1], (1, 2))])
def test_blur_kernels_and_same_padding(kernel_size, taps, pad):
    blur = BlurDownsample(kernel_size)
    taps = torch.tensor(taps, dtype=torch.float32)
    assert torch.allclose(blur.kernel[0, 0], torch.outer(taps, taps) / taps.sum() ** 2)
    assert blur.kernel.dtype == torch.float32 and "kernel" in blur.state_dict()
    x = torch.randn(2, 3, 8, 8)
    before, after = pad
    expected = F.conv2d(F.pad(x, (before, after, before, after)), blur.kernel.expand(3, 1, -1, -1), stride=2,
                        groups=3)
    assert torch.allclose(blur(x), expected) and blur(x).shape == (2, 3, 4, 4)
    assert torch.allclose(blur(torch.ones(1, 1, 8, 8))[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))  # sums to one


@pytest.mark.parametrize("side", [4, 8, 16, 12])
def test_adaptive_max_pool_shortcuts_equal_pytorch(side):
    """Identity (16 -> 16) and nearest upsampling (4, 8 -> 16) give PyTorch's pooling exactly; 12 takes its kernel."""
    x = torch.randn(2, 3, side, side, requires_grad=True)
    reference = x.detach().clone().requires_grad_()
    out, expected = AdaptiveMaxPool(16)(x), F.adaptive_max_pool2d(reference, 16)
    assert torch.equal(out, expected)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    expected.backward(upstream)
    assert torch.allclose(x.grad, reference.grad, atol=1e-6)


def test_cpu_bf16_blur_runs_in_float32_when_training():
    """Under bf16 autocast with gradients the blur's depthwise conv runs in float32 (its bf16 backward is the slow
    CPU kernel) and hands bf16 on; without gradients, or in float32, PyTorch's path is taken as it is."""
    blur = BlurDownsample(4)
    x = torch.randn(2, 8, 16, 16).bfloat16().requires_grad_()
    calls = []
    original = F.conv2d

    def spy(inputs, *args, **kwargs):
        calls.append((inputs.dtype, torch.is_autocast_enabled("cpu")))
        return original(inputs, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "conv2d", spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = blur(x)
            out.float().sum().backward()
            with torch.no_grad():
                inference = blur(x)
        full_precision = blur(x.detach().float().requires_grad_())
    assert calls == [(torch.float32, False), (torch.bfloat16, True), (torch.float32, False)]
    assert out.dtype == inference.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert torch.equal(out, full_precision.detach().bfloat16())
    assert runs_in_float32_on_cpu(x) and not runs_in_float32_on_cpu(x.detach().float().requires_grad_())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 input, but autocast would run the kernel in bf16
        assert runs_in_float32_on_cpu(x.detach().float().requires_grad_())


def test_stage_structure_and_norm_settings():
    discriminator = VQGANPlusDiscriminator(hidden_channels=32, num_stages=3, blur_resample=False)
    conv, pool, norm, act = discriminator.blocks[2]
    assert conv.weight.shape == (128, 64, 3, 3) and isinstance(pool, torch.nn.AvgPool2d)
    assert norm.eps == 1e-5 and norm.num_groups == 32 and act.negative_slope == 0.1
    assert discriminator.block_in[0].kernel_size == (5, 5) and discriminator.to_logits[2].kernel_size == (5, 5)


def test_factory_and_original_patchgan():
    cfg = {"model": {"discriminator": {"name": "Original", "hidden_channels": 16, "num_stages": 3}}}
    patchgan = build_discriminator(cfg)
    assert isinstance(patchgan, PatchGANDiscriminator)
    assert patchgan(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    weights = torch.cat([m.weight.flatten() for m in patchgan.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002
    assert isinstance(build_discriminator({}), VQGANPlusDiscriminator)
    with pytest.raises(ValueError, match="discriminator.name"):
        build_discriminator({"model": {"discriminator": {"name": "StyleGAN"}}})
    with pytest.raises(ValueError, match="blur_kernel_size"):
        VQGANPlusDiscriminator(blur_kernel_size=6)
