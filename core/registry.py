"""What models exist, what they need and whether their weights are present.

Each model id is one `Upscaler` class in `core/methods/`; its class attributes describe it and
its `configs()` reports the weights status of each configuration. This module turns that into
`ModelSpec`s, the list behind `python -m core models --json` and the server's `GET /models`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.errors import ModelError

WEIGHTS_STATES = ("bundled", "user", "missing")


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
    weights: str  # "bundled" | "user" | "missing"

    @property
    def name(self) -> str:
        return self.id.split(":", 1)[-1]


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

    @property
    def default_config(self) -> ConfigSpec:
        """The first configuration whose weights are present, else the first one."""
        for config in self.configs:
            if config.weights != "missing":
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
        return {"id": self.id, "family": self.family, "title": self.title, "summary": self.summary,
                "scale": self.scale, "controls": [asdict(c) for c in self.controls],
                "adaptation": list(self.adaptation),
                "configs": [{"id": c.id, "params": c.params, "weights": c.weights} for c in self.configs],
                "weights": self.weights}


def upscaler_class(model_id: str):
    from core.methods import METHODS

    try:
        return METHODS[model_id]
    except KeyError:
        raise ModelError(f"unknown model {model_id!r} (known: {', '.join(METHODS)})") from None


def get_model(model_id: str) -> ModelSpec:
    return upscaler_class(model_id).spec()


def list_models() -> list[ModelSpec]:
    from core.methods import METHODS

    return [cls.spec() for cls in METHODS.values()]
