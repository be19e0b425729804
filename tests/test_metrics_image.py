"""PSNR / SSIM / MAE / MSE against independent implementations, on textured images with realistic degradations."""
import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evaluation import mae, mse, psnr, ssim


def textured_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) float64 in [0,1]: gradients + sinusoidal textures + hard-edged rectangles + noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        img = np.empty((size, size, 3))
        for c in range(3):
            img[..., c] = rng.uniform(0.2, 0.6) + 0.3 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
            for _ in range(4):
                fx, fy = rng.uniform(1, 12, 2)
                img[..., c] += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 6))
        for _ in range(3):
            x0, y0 = rng.integers(0, size - 8, 2)
            w, h = rng.integers(4, size // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, 3)
        out.append(np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1))
    return np.stack(out)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf), dtype=np.float64) / 255


def degraded_pairs(seed: int = 0):
    """(originals, degraded) as float32 (B,3,H,W) tensors: JPEG q10/q25, Gaussian blur, noise, colour shift."""
    rng = np.random.default_rng(seed + 1)
    originals = textured_images(5, seed=seed)
    degraded = np.stack([
        jpeg(originals[0], 10),
        jpeg(originals[1], 25),
        ndimage.gaussian_filter(originals[2], sigma=(1.5, 1.5, 0)),
        np.clip(originals[3] + rng.normal(0, 0.05, originals[3].shape), 0, 1),
        np.clip(originals[4] * 0.9 + 0.07, 0, 1),
    ])
    to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().contiguous()
    return to_tensor(originals), to_tensor(degraded)


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Official definition in float64: 11x11 Gaussian (sigma 1.5) with mirror padding = torch 'reflect'."""
    filt = lambda a: ndimage.gaussian_filter(a, sigma=1.5, truncate=5 / 1.5, mode="mirror")
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    maps = []
    for c in range(x.shape[0]):
        a, b = x[c], y[c]
        mu_a, mu_b = filt(a), filt(b)
        var_a, var_b, cov = filt(a * a) - mu_a ** 2, filt(b * b) - mu_b ** 2, filt(a * b) - mu_a * mu_b
        maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(maps))


def test_psnr_equals_skimage():
    x, y = degraded_pairs()
    ours = psnr(y, x)
    assert ours.shape == (5,) and ours.dtype == torch.float64
    expected = [peak_signal_noise_ratio(a.double().numpy(), b.double().numpy(), data_range=1.0) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)
    assert 15 < ours.min() < ours.max() < 45  # the degradations are real, not no-ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_equals_official_definition(dtype):
    x, y = degraded_pairs(seed=3)
    ours = ssim(y.to(dtype), x.to(dtype))
    assert ours.shape == (5,) and ours.dtype == torch.float64
    expected = [ssim_reference(b.double().numpy(), a.double().numpy()) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-10)
    assert ours.min() < 0.9  # JPEG q10 / blur visibly lower the SSIM


def test_ssim_close_to_skimage_and_symmetric():
    x, y = degraded_pairs(seed=5)
    ours = ssim(y, x)
    expected = [structural_similarity(a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy(),
                                      gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0, channel_axis=-1) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=3e-2)
    assert torch.equal(ours, ssim(x, y))
    torch.testing.assert_close(ssim(x, x), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-6)


def test_mae_mse_per_image():
    x, y = degraded_pairs()
    diff = (x.double() - y.double()).numpy()
    np.testing.assert_allclose(mae(y, x).numpy(), np.abs(diff).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(mse(y, x).numpy(), (diff ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9))
