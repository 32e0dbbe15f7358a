"""CMDSR as a model: `prepare` draws the support set (20 LR patches of 32x32) from the user's
support region, or from the whole image, and turns it into the modulation scales of every body
conv; every tile is super-resolved with those scales. How the patches are drawn:
core/support_set.py."""
from __future__ import annotations

import numpy as np

from core.methods.base import Upscaler
from core.methods.kdsr import build_graphs
from core.registry import ConfigSpec
from core.support_set import sample_support_patches, stack_support

OFFICIAL_FILES = "CMDSR_model.pth"


class CMDSRUpscaler(Upscaler):
    id = "cmdsr"
    family = "CMDSR"
    title = "CMDSR (adapts to a sample region)"
    summary = ("Learns the degradation from a sample: 20 patches of the selection (or of the "
               "whole photo) steer every layer.")
    scale = 4
    adaptation = ("support_set",)
    backends = ("torch", "onnx")

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        from core.archs import ARCHS, param_count
        from core.weights import weights_status

        return [ConfigSpec(f"{cls.id}:{name}", param_count(cls.id, name), weights_status(cls.id, name))
                for name in ARCHS[cls.id].CONFIGS]

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto"):
        from core.archs import ARCHS

        super().__init__(config, device, backend)
        self.support_size = ARCHS[self.id].CONFIGS[config]["support_size"]
        graphs = build_graphs(self.id, config, device, self.backend, OFFICIAL_FILES)
        self.condition, self.sr = graphs["condition"], graphs["sr"]

    def prepare(self, rgb: np.ndarray, request, progress) -> np.ndarray:
        """The modulation scales (1 x 2*blocks x channels) shared by all tiles."""
        where = "the support region" if request.support is not None else "the whole image"
        progress(0.0, f"sampling {self.support_size} support patches from {where}")
        patches = sample_support_patches(rgb, request.support, count=self.support_size)
        scales = self.condition({"support": stack_support(patches)})["scales"]
        progress(1.0, f"adapted to {self.support_size} patches from {where}")
        return scales

    def run_tile(self, tile: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.sr({"lr": tile, "scales": context})["sr"]
