"""The interface every model id implements (see docs/internals.md, "Upscaler"), and the
description it yields (`ModelSpec`, the entry of the model list).

A subclass describes itself with class attributes, names the architecture of core/archs it runs
(`arch`), reports its configurations and their weights status in `configs()`, loads its networks
in `__init__` (raising `WeightsError` when they are missing), and then does the work in two
steps: `prepare` once over the whole image (estimates, support set, face adaptation) and
`run_tile` for every tile.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from collections.abc import Callable

import numpy as np

from core.errors import ModelError

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Control:
    """A dial the user can turn (e.g. MM-RealSR's blur and noise); default None = estimated."""

    name: str
    label: str
    min: float = 0.0
    max: float = 1.0
    default: float | None = None


@dataclass(frozen=True)
class ConfigSpec:
    """One configuration of a model: id "<model>:<config>", parameter count, weights status."""

    id: str
    params: int
    weights: str  # "bundled" | "user" | "missing" | "unusable" (a user model's file, see `problem`)

    @property
    def name(self) -> str:
        return self.id.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: str
    title: str
    summary: str
    scale: int
    controls: tuple[Control, ...] = ()
    adaptation: tuple[str, ...] = ()  # "support_set" | "faces"
    configs: tuple[ConfigSpec, ...] = field(default_factory=tuple)
    checkpoint: dict | None = None
    """A user model's file and what spandrel found in it (core/user_models.py); None otherwise."""
    problem: str = ""
    """Why a user model's file cannot be used (its configuration's weights are "unusable")."""

    @property
    def default_config(self) -> ConfigSpec:
        """The first configuration whose weights are present, else the first one."""
        for config in self.configs:
            if config.weights in ("bundled", "user"):
                return config
        return self.configs[0]

    @property
    def weights(self) -> str:
        return self.default_config.weights

    def config(self, name: str | None) -> ConfigSpec:
        """Look a configuration up by "lite" or "kdsr:lite"; None means the default."""
        if name is None:
            return self.default_config
        for config in self.configs:
            if name in (config.id, config.name):
                return config
        known = ", ".join(c.name for c in self.configs)
        raise ModelError(f"model {self.id!r} has no configuration {name!r} (known: {known})")

    def to_dict(self) -> dict:
        entry = {"id": self.id, "family": self.family, "title": self.title, "summary": self.summary,
                 "scale": self.scale, "controls": [asdict(c) for c in self.controls],
                 "adaptation": list(self.adaptation),
                 "configs": [{"id": c.id, "params": c.params, "weights": c.weights} for c in self.configs],
                 "weights": self.weights}
        if self.checkpoint is not None:
            entry["checkpoint"] = self.checkpoint
        if self.problem:
            entry["reason"] = self.problem
        return entry


class Upscaler:
    id: str = ""
    family: str = ""
    title: str = ""
    summary: str = ""
    scale: int = 4
    controls: tuple[Control, ...] = ()
    adaptation: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("torch",)
    """Runtimes this model can use, preferred first; "auto" picks the measured choice
    (`stored_runtime`), else the first."""
    arch: str | None = None
    """Id of the architecture in core/archs whose networks it runs; None: it has no network."""

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        """Configurations with their parameter count and weights status."""
        raise NotImplementedError

    @classmethod
    def missing_weights_message(cls, config: str) -> str:
        """The sentence for a configuration whose weights are missing: what to put where."""
        return (f"the weights of {cls.id}:{config} are missing: put them in the models folder "
                "(see README, 'Weights') or pick a model whose weights are present")

    @classmethod
    def spec(cls) -> ModelSpec:
        return ModelSpec(cls.id, cls.family, cls.title, cls.summary, cls.scale,
                         tuple(cls.controls), tuple(cls.adaptation), tuple(cls.configs()))

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto", precision: str = "auto",
                 threads: int | None = None):
        """`config` is the short name ("lite"); `device` is already resolved ("cpu"|"cuda");
        `threads` is what onnxruntime and OpenVINO get (None: their default)."""
        self.config = config
        self.device = device
        self.threads = threads
        self.backend, self.precision = self.runtime(config, device, backend, precision)

    @classmethod
    def runtime(cls, config: str, device: str, backend: str = "auto",
                precision: str = "auto") -> tuple[str, str]:
        """The (backend, precision) this model runs on for what was asked (see `choose_runtime`)."""
        from core.runtimes import choose_runtime

        return choose_runtime(cls.backends, cls.stored_runtime(config), device, backend, precision)

    @classmethod
    def stored_runtime(cls, config: str) -> tuple[str, str] | None:
        """The fastest (backend, precision) measured for this configuration on this class of CPU
        within the quality bound, or None (the model has no measured choice)."""
        return None

    def tile_scale(self, request) -> int:
        """The factor `run_tile` enlarges by for this request (the engine resizes the rest)."""
        return self.scale

    def tile_for(self, tile: int) -> int:
        """The tile side to run with when the request asks for `tile` (0 = whole image)."""
        return tile

    def estimate_degradation(self, rgb: np.ndarray) -> dict | None:
        """{"blur", "noise"} in 0..1 of an H×W×3 float32 image from the model's own estimator,
        or None if it has none."""
        return None

    def prepare(self, rgb: np.ndarray, request, progress: Progress) -> object:
        """Global step over the whole H×W×3 float32 image; returns the context for all tiles."""
        return None

    def run_tile(self, tile: np.ndarray, context) -> np.ndarray:
        """1×3×h×w float32 in 0..1 -> 1×3×(h·scale)×(w·scale)."""
        raise NotImplementedError
