"""Image quality metrics as SR papers report them: PSNR and SSIM on the Y channel (ITU-R BT.601,
16..235) of 8-bit images, with `border` pixels cropped on each side (the scale, by convention)."""

import numpy as np
from scipy.ndimage import gaussian_filter


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB in 0..1 -> Y in 16..235 (float64), after rounding RGB to 8 bits."""
    rgb8 = np.round(np.clip(rgb, 0, 1) * 255.0)
    return 16.0 + (65.481 * rgb8[..., 0] + 128.553 * rgb8[..., 1] + 24.966 * rgb8[..., 2]) / 255.0


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border > 0 else y


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    a, b = _crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """SSIM with the 11x11 Gaussian window (sigma 1.5) of Wang et al., valid region only."""
    a, b = _crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def window(x):
        return gaussian_filter(x, 1.5, truncate=3.5)[5:-5, 5:-5]

    mu_a, mu_b = window(a), window(b)
    var_a = window(a * a) - mu_a ** 2
    var_b = window(b * b) - mu_b ** 2
    cov = window(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
