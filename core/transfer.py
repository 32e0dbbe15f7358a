"""Linear light <-> sRGB encoding.

The SR nets were trained on sRGB-encoded values, so linear-light images (Krita's high-depth
documents default to a linear profile) are encoded before a model sees them and decoded after.
The curves are the extended sRGB ones (as scRGB): above 1 the power law goes on and negative
values mirror the positive ones, so a float layer's HDR highlights and negative samples reach
the engine, which carries the part outside 0..1 with the bicubic (core.engine), and come back
unchanged; integer samples stay within 0..1.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from core.image_io import Image


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values, the space the SR nets were trained in."""
    x = np.abs(linear)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.copysign(encoded, linear).astype(np.float32)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    x = np.abs(encoded)
    linear = np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))
    return np.copysign(linear, encoded).astype(np.float32)


def map_colour(image: Image, curve: Callable[[np.ndarray], np.ndarray]) -> Image:
    """A copy of `image` with `curve` applied to its colour channels; alpha is not light."""
    pixels = image.pixels.copy()
    colour = 1 if image.channels <= 2 else 3
    pixels[..., :colour] = curve(pixels[..., :colour])
    return Image(pixels, image.bit_depth, image.icc, image.exif)
