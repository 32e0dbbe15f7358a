"""KDSR as a model: the student encoder estimates one implicit degradation representation (IDR)
for the whole image in `prepare`; every tile is super-resolved with that same IDR.

The estimate reads the whole image when it fits in ESTIMATE_WINDOW x ESTIMATE_WINDOW pixels;
larger images are read through up to MAX_WINDOWS windows of that size spread evenly over the
image, and their IDRs are averaged (the encoder ends in a global average pool, so a few windows
see the same degradation statistics at a bounded memory cost).
"""
from __future__ import annotations

import numpy as np

from core.methods.base import Upscaler
from core.registry import ConfigSpec

ESTIMATE_WINDOW = 256
MAX_WINDOWS = 16
OFFICIAL_FILES = "KDSRsM_iso_x4.pt, KDSRsM_anisonoise_x4.pt, KDSRsL_iso_x4.pt or KDSRS-GAN.pth"


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


def build_graphs(model_id: str, config: str, device: str, backend: str, how_to_get: str) -> dict:
    """name -> Graph for the model's two graphs (ONNX from cached exports, or torch modules)."""
    from core import onnx_export, weights
    from core.runtimes import OnnxGraph, TorchGraph

    loaded = weights.load_model(model_id, config, how_to_get=how_to_get)
    arch_id = weights.arch_of(model_id)
    specs = onnx_export.graph_specs(arch_id)
    if backend == "onnx":
        paths = onnx_export.cached_graphs(arch_id, config, loaded.module, loaded.sha256)
        return {spec.name: OnnxGraph(paths[spec.name], device) for spec in specs}
    return {spec.name: TorchGraph(spec.wrap(loaded.module), spec.inputs, spec.outputs, device)
            for spec in specs}


class KDSRUpscaler(Upscaler):
    id = "kdsr"
    family = "KDSR"
    title = "KDSR (blind, implicit degradation)"
    summary = ("Fully blind: estimates the photo's blur and noise as an implicit vector and "
               "adapts its filters to it.")
    scale = 4
    backends = ("torch", "onnx")

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        from core.archs import ARCHS, param_count
        from core.weights import weights_status

        return [ConfigSpec(f"{cls.id}:{name}", param_count(cls.id, name), weights_status(cls.id, name))
                for name in ARCHS[cls.id].CONFIGS]

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto"):
        super().__init__(config, device, backend)
        graphs = build_graphs(self.id, config, device, self.backend, OFFICIAL_FILES)
        self.estimator, self.sr = graphs["estimator"], graphs["sr"]

    def prepare(self, rgb: np.ndarray, request, progress) -> np.ndarray:
        """The IDR (1 x C) shared by all tiles."""
        progress(0.0, "estimating the degradation")
        windows = estimate_windows(rgb)
        idr = np.mean([self.estimator({"lr": w})["idr"] for w in windows], axis=0)
        progress(1.0, f"degradation estimated from {len(windows)} window(s)")
        return idr.astype(np.float32)

    def run_tile(self, tile: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.sr({"lr": tile, "idr": context})["sr"]
