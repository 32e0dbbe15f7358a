"""KDSR as a model: the student encoder estimates one implicit degradation representation (IDR)
for the whole image in `prepare`; every tile is super-resolved with that same IDR.

The estimate reads the whole image when it fits in ESTIMATE_WINDOW x ESTIMATE_WINDOW pixels;
larger images are read through up to MAX_WINDOWS windows of that size spread evenly over the
image, and their IDRs are averaged (the encoder ends in a global average pool, so a few windows
see the same degradation statistics at a bounded memory cost).
"""
from __future__ import annotations

import numpy as np

from core.methods.arch_upscaler import ArchUpscaler

ESTIMATE_WINDOW = 256
MAX_WINDOWS = 16


def window_starts(length: int, window: int, count: int) -> list[int]:
    """Start offsets of `count` windows spread evenly along `length` (first and last at the ends)."""
    if length <= window:
        return [0]
    if count <= 1:
        return [(length - window) // 2]
    return sorted({round(i * (length - window) / (count - 1)) for i in range(count)})


def estimate_windows(rgb: np.ndarray) -> list[np.ndarray]:
    """1 x 3 x h x w crops the estimate is computed from."""
    h, w = rgb.shape[:2]
    per_axis = int(np.sqrt(MAX_WINDOWS))
    ys = window_starts(h, ESTIMATE_WINDOW, min(per_axis, -(-h // ESTIMATE_WINDOW)))
    xs = window_starts(w, ESTIMATE_WINDOW, min(per_axis, -(-w // ESTIMATE_WINDOW)))
    return [np.ascontiguousarray(rgb[y:y + ESTIMATE_WINDOW, x:x + ESTIMATE_WINDOW].transpose(2, 0, 1)[None])
            for y in ys for x in xs]


class KDSRUpscaler(ArchUpscaler):
    id = "kdsr"
    family = "KDSR"
    title = "KDSR (blind, implicit degradation)"
    summary = ("Fully blind: estimates the photo's blur and noise as an implicit vector and "
               "adapts its filters to it.")
    scale = 4
    arch = "kdsr"
    how_to_get = {
        "official-m": "KDSRsM_iso_x4.pt or KDSRsM_anisonoise_x4.pt from github.com/Zj-BinXia/KDSR",
        "official-l": "KDSRsL_iso_x4.pt from github.com/Zj-BinXia/KDSR",
        "gan": "KDSRS-GAN.pth from github.com/Zj-BinXia/KDSR",
    }

    def prepare(self, rgb: np.ndarray, request, progress) -> np.ndarray:
        """The IDR (1 x C) shared by all tiles."""
        progress(0.0, "Estimating blur and noise")
        windows = estimate_windows(rgb)
        idr = np.mean([self.graphs["estimator"]({"lr": w})["idr"] for w in windows], axis=0)
        progress(1.0, "Blur and noise estimated")
        return idr.astype(np.float32)

    def run_tile(self, tile: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.graphs["sr"]({"lr": tile, "idr": context})["sr"]
