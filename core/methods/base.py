"""The interface every model id implements (see docs/internals.md, "Upscaler").

A subclass describes itself with class attributes, reports its configurations and their weights
status in `configs()`, loads its networks in `__init__` (raising `WeightsError` when they are
missing), and then does the work in two steps: `prepare` once over the whole image (estimates,
support set, face adaptation) and `run_tile` for every tile.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from core.errors import ModelError
from core.registry import ConfigSpec, Control, ModelSpec

Progress = Callable[[float, str], None]


class Upscaler:
    id: str = ""
    family: str = ""
    title: str = ""
    summary: str = ""
    scale: int = 4
    controls: tuple[Control, ...] = ()
    adaptation: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("torch",)
    """Runtimes this model can use, preferred first; "auto" picks the first."""
    arch: str | None = None
    """Id of the architecture in core/archs whose networks it runs; None: it has no network."""

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        """Configurations with their parameter count and weights status."""
        raise NotImplementedError

    @classmethod
    def spec(cls) -> ModelSpec:
        return ModelSpec(cls.id, cls.family, cls.title, cls.summary, cls.scale,
                         tuple(cls.controls), tuple(cls.adaptation), tuple(cls.configs()))

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto"):
        """`config` is the short name ("lite"); `device` is already resolved ("cpu"|"cuda")."""
        self.config = config
        self.device = device
        self.backend = self.resolve_backend(backend)

    @classmethod
    def resolve_backend(cls, backend: str) -> str:
        if backend == "auto":
            return cls.backends[0]
        if backend not in cls.backends:
            raise ModelError(f"model {cls.id!r} cannot run on the {backend!r} backend "
                             f"(available: {', '.join(cls.backends)})")
        return backend

    def tile_scale(self, request) -> int:
        """The factor `run_tile` enlarges by for this request (the engine resizes the rest)."""
        return self.scale

    def prepare(self, rgb: np.ndarray, request, progress: Progress) -> object:
        """Global step over the whole H×W×3 float32 image; returns the context for all tiles."""
        return None

    def run_tile(self, tile: np.ndarray, context) -> np.ndarray:
        """1×3×h×w float32 in 0..1 -> 1×3×(h·scale)×(w·scale)."""
        raise NotImplementedError
