"""What models exist: model id -> the `Upscaler` class in `core/methods/` that implements it.

Each class describes itself (`Upscaler.spec()`: a `ModelSpec` with the weights status of each
configuration); this module lists them, for `python -m core models --json`, the server's
`GET /models` and the engine. It depends on `core.methods`, never the other way round.
"""
from __future__ import annotations

from core import methods
from core.errors import ModelError
from core.methods.base import ModelSpec, Upscaler


def upscaler_class(model_id: str) -> type[Upscaler]:
    try:
        return methods.METHODS[model_id]
    except KeyError:
        raise ModelError(f"unknown model {model_id!r} (known: {', '.join(methods.METHODS)})") from None


def get_model(model_id: str) -> ModelSpec:
    return upscaler_class(model_id).spec()


def list_models() -> list[ModelSpec]:
    return [cls.spec() for cls in methods.METHODS.values()]
