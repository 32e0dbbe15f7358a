"""Classical blur and noise estimates of an image, mapped to 0..1 like MM-RealSR's dials.

`Engine.analyse` falls back to these when MM-RealSR's DE-Net (a learnt estimate) has no weights.
"""
from __future__ import annotations

import numpy as np


def _gray(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float64)


NOISE_SIGMA_AT_ONE = 30.0 / 255.0
"""Noise sigma (0..1 pixel units) that maps to noise = 1: the top of Real-ESRGAN's Gaussian range."""


def estimate_noise_sigma(gray: np.ndarray) -> float:
    """Gaussian noise sigma from the median absolute deviation of a Laplacian-like high-pass
    (Immerkær's mask), measured on the flattest half of the image so edges do not count as noise."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    g = gray
    hp = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
          - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
          + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    # Edges are found on a smoothed copy: on the raw image, "flat" would also select the
    # pixels where the noise happens to be small, and the estimate would come out low.
    smooth = _box_blur(_box_blur(g, 5, 0), 5, 1)
    gx = np.abs(smooth[1:-1, 2:] - smooth[1:-1, :-2])
    gy = np.abs(smooth[2:, 1:-1] - smooth[:-2, 1:-1])
    edge = gx + gy
    flat = hp[edge <= np.median(edge)]
    if flat.size == 0:
        return 0.0
    mad = np.median(np.abs(flat - np.median(flat)))
    return float(1.4826 * mad / 6.0)  # the mask's noise gain is sqrt(36) = 6


def _box_blur(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Mean over a window of `size` along `axis` (edges replicated), via a cumulative sum."""
    half = size // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half + 1, half)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    hi = np.take(c, np.arange(size, size + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / size


def estimate_blur(gray: np.ndarray) -> float:
    """Crété-Roffet's blur effect (2007): how much gradient a further 9-tap box blur removes.
    0 means sharp (re-blurring destroys a lot of gradient), 1 means already fully blurred."""
    if gray.shape[0] < 10 or gray.shape[1] < 10:
        return 0.0
    values = []
    for axis in (0, 1):
        blurred = _box_blur(gray, 9, axis)
        d_orig = np.abs(np.diff(gray, axis=axis))
        d_blur = np.abs(np.diff(blurred, axis=axis))
        crop = (slice(4, -4), slice(4, -4))
        d_orig, d_blur = d_orig[crop], d_blur[crop]
        total = d_orig.sum()
        if total <= 1e-12:
            values.append(1.0)
            continue
        variation = np.maximum(d_orig - d_blur, 0).sum()
        values.append(float((total - variation) / total))
    return max(values)


BLUR_EFFECT_SHARP, BLUR_EFFECT_BLURRED = 0.25, 0.75
"""Blur-effect values mapped to blur = 0 and blur = 1 (sharp photos measure about 0.2-0.3)."""


def estimate_degradation(rgb: np.ndarray) -> dict:
    """Classical blur and noise estimates, both mapped to 0..1 like MM-RealSR's dials."""
    gray = _gray(rgb)
    # Per channel: averaging channels into gray would shrink independent colour noise by 1/3.
    sigma = float(np.median([estimate_noise_sigma(rgb[..., c].astype(np.float64)) for c in range(3)]))
    effect = estimate_blur(gray)
    noise = float(np.clip(sigma / NOISE_SIGMA_AT_ONE, 0.0, 1.0))
    blur = float(np.clip((effect - BLUR_EFFECT_SHARP) / (BLUR_EFFECT_BLURRED - BLUR_EFFECT_SHARP),
                         0.0, 1.0))
    return {"blur": blur, "noise": noise, "noise_sigma": sigma, "blur_effect": effect}
