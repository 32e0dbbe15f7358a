"""What models exist: model id -> the `Upscaler` class in `core/methods/` that implements it,
the built-in methods first, then the user's own models (`user:<file stem>`, one class per file of
the models folder, read again at every listing so a new file needs no restart).

Each class describes itself (`Upscaler.spec()`: a `ModelSpec` with the weights status of each
configuration); this module lists them, for `python -m core models --json`, the server's
`GET /models` and the engine. It depends on `core.methods`, never the other way round.
"""
from __future__ import annotations

from core import methods, user_models
from core.errors import ModelError
from core.methods import user_model
from core.methods.base import ModelSpec, Upscaler


def upscaler_class(model_id: str) -> type[Upscaler]:
    if model_id.startswith(user_models.PREFIX):
        return user_model.upscaler_class(user_models.find(model_id))
    try:
        return methods.METHODS[model_id]
    except KeyError:
        raise ModelError(f"unknown model {model_id!r} (known: {', '.join(methods.METHODS)})") from None


def get_model(model_id: str) -> ModelSpec:
    return upscaler_class(model_id).spec()


def list_models() -> list[ModelSpec]:
    return ([cls.spec() for cls in methods.METHODS.values()]
            + [user_model.upscaler_class(model).spec() for model in user_models.scan()])
