"""An Upscaler whose networks are one architecture of core/archs with weights from the weights
store, run as the graphs of core/onnx_export.py on torch or onnxruntime. Subclasses with one SR
graph only set their description; those with a global estimate override `prepare`/`run_tile`."""
from __future__ import annotations

import numpy as np

from core.methods.base import Upscaler
from core.registry import ConfigSpec


class ArchUpscaler(Upscaler):
    backends = ("torch", "onnx")
    how_to_get: dict[str, str] = {}
    """config -> where the official checkpoint comes from (named in the missing-weights error)."""

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        from core import weights
        from core.archs import param_count

        return [ConfigSpec(f"{cls.id}:{name}", param_count(weights.arch_of(cls.id), name),
                           cls.weights_status(name)) for name in weights.model_configs(cls.id)]

    @classmethod
    def weights_status(cls, config: str) -> str:
        from core import weights

        return weights.weights_status(cls.id, config)

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto"):
        from core.onnx_export import engine_graphs

        super().__init__(config, device, backend)
        self.graphs = engine_graphs(self.id, config, device, self.backend,
                                    self.how_to_get.get(config, ""))

    def run_tile(self, tile: np.ndarray, context) -> np.ndarray:
        return self.graphs["sr"]({"lr": tile})["sr"]
