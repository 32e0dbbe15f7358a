"""MM-RealSR: real-world x4 SR with two dials, blur and noise (0..1). DE-Net estimates both from
the whole image once (`prepare`); the user may override either; every tile is modulated by the
same pair.

No weights are bundled yet; the official configuration runs with a released checkpoint
(MMRealSRNet.pth, MMRealSRGAN.pth or MMRealSRGAN_ModulationBest.pth) in the models folder."""
from __future__ import annotations

import numpy as np

from core.methods.arch_upscaler import ArchUpscaler
from core.methods.base import Control

# DE-Net pools globally over the image. Above this many pixels it reads evenly spread crops
# instead and averages their scores: downscaling would change the very blur and noise it measures.
ESTIMATE_MAX_PIXELS = 1024 * 1024
ESTIMATE_CROP = 512


def estimate_crops(height: int, width: int) -> list:
    """(y, x, h, w) boxes DE-Net reads: the whole image, or a grid of crops covering it evenly."""
    if height * width <= ESTIMATE_MAX_PIXELS:
        return [(0, 0, height, width)]
    h, w = min(height, ESTIMATE_CROP), min(width, ESTIMATE_CROP)
    rows = max(1, min(3, round(height / ESTIMATE_CROP)))
    cols = max(1, min(3, round(width / ESTIMATE_CROP)))
    ys = np.linspace(0, height - h, rows).round().astype(int)
    xs = np.linspace(0, width - w, cols).round().astype(int)
    return [(int(y), int(x), h, w) for y in ys for x in xs]


class MMRealSRUpscaler(ArchUpscaler):
    id = "mmrealsr"
    family = "MM-RealSR"
    title = "MM-RealSR (blur and noise dials)"
    summary = ("Real-world SR you can steer: blur and noise strengths, estimated from the photo, "
               "adjustable from 0 to 1.")
    scale = 4
    controls = (Control("blur", "Blur", 0.0, 1.0, None), Control("noise", "Noise", 0.0, 1.0, None))
    arch = "mmrealsr"
    how_to_get = {"official": "MMRealSRGAN.pth or MMRealSRNet.pth from "
                              "github.com/TencentARC/MM-RealSR/releases"}

    def estimate_degradation(self, rgb: np.ndarray) -> dict:
        """H x W x 3 float32 in 0..1 -> {"blur", "noise"} in 0..1 (DE-Net)."""
        scores = []
        for y, x, h, w in estimate_crops(*rgb.shape[:2]):
            crop = np.ascontiguousarray(rgb[y:y + h, x:x + w].transpose(2, 0, 1)[None])
            scores.append(self.graphs["estimator"]({"lr": crop})["scores"][0])
        blur, noise = np.mean(scores, axis=0)
        return {"blur": float(blur), "noise": float(noise)}

    def prepare(self, rgb: np.ndarray, request, progress) -> np.ndarray:
        """The (blur, noise) pair all tiles share: the request's values, DE-Net for the rest."""
        blur, noise = request.blur, request.noise
        if blur is None or noise is None:
            progress(0.0, "Estimating blur and noise")
            estimate = self.estimate_degradation(rgb)
            blur = estimate["blur"] if blur is None else blur
            noise = estimate["noise"] if noise is None else noise
        progress(1.0, f"Blur {blur:.2f}, noise {noise:.2f}")
        return np.array([[blur, noise]], dtype=np.float32)

    def run_tile(self, tile: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.graphs["sr"]({"lr": tile, "scores": context})["sr"]
