"""Per-image reconstruction metrics on [0,1] images (B,C,H,W), computed as the official TokenizerEvaluator does.

Every function returns one float64 value per image, shape (B,); the evaluators average them over the data set.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two image batches of the same shape (B,C,H,W), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (computed in the input dtype, like the reference)."""
    _check_pair(x, y)
    return (x - y).abs().mean(dim=(1, 2, 3)).double()


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image (computed in the input dtype, like the reference)."""
    _check_pair(x, y)
    return (x - y).pow(2).mean(dim=(1, 2, 3)).double()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """10 log10(1 / (MSE + 1e-10)) per image in float64 (data range 1)."""
    _check_pair(x, y)
    err = (x.double() - y.double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / (err + 1e-10))


def mean_colour_psnr(images: torch.Tensor) -> torch.Tensor:
    """PSNR of the trivial reconstruction that predicts each image's own mean colour, per image (B,): the floor a
    tokenizer's PSNR must pass before it carries more than each image's colour."""
    return psnr(images.mean(dim=(2, 3), keepdim=True).expand_as(images), images)


def gaussian_kernel_1d(size: int = SSIM_KERNEL_SIZE, sigma: float = SSIM_SIGMA,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian, computed in `dtype` (float32 reproduces the reference's kernel bit for bit)."""
    half = (size - 1) * 0.5
    g = torch.exp(-0.5 * (torch.linspace(-half, half, steps=size, dtype=dtype) / sigma).pow(2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image: 11x11 Gaussian window (sigma 1.5), reflect padding 5, K1 0.01, K2 0.03, data range 1.

    Local statistics come from one depthwise conv of [x, y, x^2, y^2, xy] in the input dtype (float32 as the
    reference; float64 input gives the exact definition); the SSIM map is averaged over C,H,W in float64. (B,).
    """
    _check_pair(x, y)
    b, c = x.shape[:2]
    g = gaussian_kernel_1d(dtype=x.dtype).to(x.device)
    kernel = torch.outer(g, g)[None, None].expand(c, 1, -1, -1)
    pad = SSIM_KERNEL_SIZE // 2
    x, y = (F.pad(t, [pad] * 4, mode="reflect") for t in (x, y))
    stats = F.conv2d(torch.cat([x, y, x * x, y * y, x * y]), kernel, groups=c)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(b)
    mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    numerator = (2 * mu_xy + c1) * (2 * (e_xy - mu_xy) + c2)
    denominator = (mu_xx + mu_yy + c1) * ((e_xx - mu_xx) + (e_yy - mu_yy) + c2)
    return torch.mean(numerator / denominator, dim=(1, 2, 3), dtype=torch.float64)
