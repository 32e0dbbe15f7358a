"""An Upscaler whose networks are one architecture of core/archs (`arch`) with weights from the
weights store, run as the graphs its `ArchSpec` declares on torch, onnxruntime or OpenVINO. Subclasses
with one SR graph only set their description; those with a global estimate override
`prepare`/`run_tile`."""
from __future__ import annotations

import numpy as np

from core.methods.base import ConfigSpec, Upscaler


class ArchUpscaler(Upscaler):
    backends = ("torch", "onnx", "openvino")
    arch: str
    """Every subclass names its architecture (the base class allows None for networkless models)."""
    config_names: tuple[str, ...] = ()
    """The configurations it offers when not all of its arch's (a model that is one checkpoint
    of another architecture, as Real-ESRGAN is of RRDBNet)."""
    how_to_get: dict[str, str] = {}
    """config -> where the official checkpoint comes from (named in the missing-weights error)."""

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        from core.archs import get_arch, param_count

        names = cls.config_names or tuple(get_arch(cls.arch).configs)
        return [ConfigSpec(f"{cls.id}:{name}", param_count(cls.arch, name), cls.weights_status(name))
                for name in names]

    @classmethod
    def weights_status(cls, config: str) -> str:
        from core import weights

        return weights.weights_status(cls.id, cls.arch, config)

    @classmethod
    def stored_runtime(cls, config: str) -> tuple[str, str] | None:
        """The manifest's measured choice, which holds for the bundled weights only (a user's
        checkpoint of the same configuration was never measured)."""
        from core import weights

        if cls.weights_status(config) != "bundled":
            return None
        return weights.stored_runtime(cls.id, config)

    @classmethod
    def missing_weights_message(cls, config: str) -> str:
        from core import weights

        return weights.missing_weights_message(cls.id, config, cls.how_to_get.get(config, ""))

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto", precision: str = "auto",
                 threads: int | None = None):
        from core.onnx_export import engine_graphs

        super().__init__(config, device, backend, precision, threads)
        self.graphs = engine_graphs(self.id, self.arch, config, device, self.backend,
                                    self.how_to_get.get(config, ""), self.precision, threads)

    def run_tile(self, tile: np.ndarray, context) -> np.ndarray:
        return self.graphs["sr"]({"lr": tile})["sr"]
