"""SAME padding and the residual block's output-side shortcut, on hand-made inputs."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modeling.layers import Conv2dSame, DownsamplingStage, ResidualBlock, UpsamplingStage, same_padding


def test_same_padding_amounts():
    assert same_padding(16, 3, 1) == (1, 1)
    assert same_padding(16, 5, 1) == (2, 2)
    assert same_padding(16, 1, 1) == (0, 0)
    assert same_padding(16, 3, 2) == (0, 1)  # TensorFlow puts the odd pixel after
    assert same_padding(15, 3, 2) == (1, 1)
    assert same_padding(16, 4, 2) == (1, 1)


def test_stride2_conv_pads_bottom_right_only():
    conv = Conv2dSame(1, 1, kernel_size=3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # windows start at rows/cols 0 and 2; the second window sees one zero-padded row/col at the end
    expected = torch.tensor([[x[0, 0, 0:3, 0:3].sum(), x[0, 0, 0:3, 2:4].sum()],
                             [x[0, 0, 2:4, 0:3].sum(), x[0, 0, 2:4, 2:4].sum()]])
    assert torch.equal(conv(x)[0, 0], expected)


@pytest.mark.parametrize("size", [7, 8, 9])
@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (5, 1), (3, 2), (4, 2)])
def test_conv2d_same_equals_explicit_padding(size, kernel, stride):
    torch.manual_seed(0)
    conv = Conv2dSame(3, 4, kernel_size=kernel, stride=stride)
    x = torch.randn(2, 3, size, size + 1)
    top, bottom = same_padding(size, kernel, stride)
    left, right = same_padding(size + 1, kernel, stride)
    expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, stride)
    out = conv(x)
    assert out.shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))
    assert torch.allclose(out, expected, atol=1e-6)


def _zero_convs(block: ResidualBlock):
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)


def test_residual_block_keeps_identity_when_width_is_unchanged():
    block = ResidualBlock(32, 32)
    _zero_convs(block)
    x = torch.randn(1, 32, 4, 4)
    assert torch.equal(block(x), x) and block.nin_shortcut is None


def test_width_changing_block_shortcuts_its_own_output_not_the_input():
    block = ResidualBlock(32, 64)
    assert block.nin_shortcut.weight.shape == (64, 64, 1, 1) and block.nin_shortcut.bias is None
    _zero_convs(block)
    assert torch.equal(block(torch.randn(1, 32, 4, 4)), torch.zeros(1, 64, 4, 4))  # no path from x at all
    # make the residual branch output a known map h: the block returns h + W h, whatever its input
    h = torch.randn(1, 64, 4, 4)
    block.conv2 = _Constant(h)
    expected = h + F.conv2d(h, block.nin_shortcut.weight)
    assert torch.allclose(block(torch.randn(1, 32, 4, 4)), expected, atol=1e-6)


class _Constant(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return self.value


def test_stages_resample_as_specified():
    x = torch.randn(1, 32, 8, 8)
    assert DownsamplingStage(32, 64, 1, sample_with_conv=True)(x).shape == (1, 64, 4, 4)
    pooled = DownsamplingStage(32, 32, 1, sample_with_conv=False)
    assert pooled.down_conv is None
    assert torch.allclose(pooled(x), F.avg_pool2d(pooled.res_blocks[0](x), 2))
    up = UpsamplingStage(64, 32, 2)
    assert up(torch.randn(1, 64, 4, 4)).shape == (1, 32, 8, 8)
    assert [type(m).__name__ for m in up.children()] == ["ModuleList", "Conv2dSame"]
