"""CMDSR as a model: `prepare` draws the support set (20 LR patches of 32x32) from the user's
support region, or from the whole image, and turns it into the modulation scales of every body
conv; every tile is super-resolved with those scales. How the patches are drawn:
core/support_set.py."""
from __future__ import annotations

import numpy as np

from core.methods.arch_upscaler import ArchUpscaler
from core.support_set import sample_support_patches, stack_support


class CMDSRUpscaler(ArchUpscaler):
    id = "cmdsr"
    family = "CMDSR"
    title = "CMDSR (adapts to a sample region)"
    summary = ("Learns the degradation from a sample: 20 patches of the selection (or of the "
               "whole photo) steer every layer.")
    scale = 4
    adaptation = ("support_set",)
    arch = "cmdsr"
    how_to_get = {"official": "CMDSR_model.pth from github.com/guanghaoyin/CMDSR"}

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto", precision: str = "auto",
                 threads: int | None = None):
        from core.archs import get_arch

        super().__init__(config, device, backend, precision, threads)
        self.support_size = get_arch(self.arch).config(config)["support_size"]

    def prepare(self, rgb: np.ndarray, request, progress) -> np.ndarray:
        """The modulation scales (1 x 2*blocks x channels) shared by all tiles."""
        where = "the selection" if request.support is not None else "the whole image"
        progress(0.0, f"Sampling the blur and noise of {where}")
        patches = sample_support_patches(rgb, request.support, count=self.support_size)
        scales = self.graphs["condition"]({"support": stack_support(patches)})["scales"]
        progress(1.0, f"Adapted to {self.support_size} samples from {where}")
        return scales

    def run_tile(self, tile: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.graphs["sr"]({"lr": tile, "scales": context})["sr"]
