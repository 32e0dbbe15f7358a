"""The bicubic baseline every model is compared with.

THE bicubic of this project is `torch.nn.functional.interpolate(mode="bicubic",
align_corners=False, antialias=False)`: Keys' cubic with a = -0.75 and edge samples replicated.
It is the same on a CPU, a GPU, in ONNX and on tiles, which is why it was chosen over PIL's
(a = -0.5). Benchmarks, tests and the alpha channel all use `bicubic_upscale`.
"""
from __future__ import annotations

import numpy as np

from core.methods.base import ConfigSpec, Upscaler


def bicubic_upscale(nchw: np.ndarray, scale: float) -> np.ndarray:
    """N×C×H×W float32 -> N×C×(H·scale)×(W·scale) float32 (not clipped: cubic overshoots)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(nchw, dtype=np.float32))
    size = (round(x.shape[2] * scale), round(x.shape[3] * scale))
    with torch.inference_mode():
        y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=False)
    return y.numpy()


class Bicubic(Upscaler):
    id = "bicubic"
    family = "Bicubic"
    title = "Bicubic (baseline)"
    summary = "Plain bicubic interpolation: the reference every learned model must beat."
    scale = 4

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        return [ConfigSpec("bicubic:default", 0, "bundled")]  # needs no weights file

    def tile_scale(self, request) -> int:
        return request.scale  # interpolation has no native factor

    def prepare(self, rgb: np.ndarray, request, progress) -> int:
        return request.scale

    def run_tile(self, tile: np.ndarray, context: int) -> np.ndarray:
        return bicubic_upscale(tile, context)
