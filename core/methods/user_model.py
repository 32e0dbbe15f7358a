"""The Upscaler of a user model (`user:<file stem>`, core/user_models.py): one class per file,
made when the registry is asked for it, so the engine's model cache sees a replaced file as a
new model. It runs spandrel's network on torch, or as an ONNX graph where the architecture
exports cleanly (the export is checked against torch on a second size before it is used)."""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.archs.spec import MIN_TILE
from core.errors import ModelError
from core.methods.base import ConfigSpec, Upscaler
from core.user_models import UserModel

CONFIG = "checkpoint"
"""The one configuration of a user model: its file."""
DISCOURAGED_MIN_TILE = 512
"""Smallest tile for a model whose tiling spandrel discourages (fewer seams, bounded memory)."""
ONNX_TOLERANCE = 2e-3
"""Largest difference between the ONNX graph and torch (outputs in 0..1) for a clean export."""


class UserModelUpscaler(Upscaler):
    backends = ("torch", "onnx")
    user_model: UserModel

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        status = "unusable" if cls.user_model.problem else "user"
        return [ConfigSpec(f"{cls.id}:{CONFIG}", cls.user_model.params, status)]

    @classmethod
    def missing_weights_message(cls, config: str) -> str:
        return cls.user_model.problem or super().missing_weights_message(config)

    @classmethod
    def spec(cls):
        return replace(super().spec(), checkpoint=cls.user_model.checkpoint(),
                       problem=cls.user_model.problem)

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto", precision: str = "auto",
                 threads: int | None = None):
        from core import user_models
        from core.runtimes import Graph, OnnxGraph, TorchGraph

        super().__init__(config, device, backend, precision, threads)
        descriptor = user_models.load(self.user_model)
        self.size = descriptor.size_requirements
        self.graph: Graph
        if self.backend == "onnx":
            self.graph = OnnxGraph(_checked_onnx(self.user_model, descriptor), device, self.threads)
        else:
            self.graph = TorchGraph(_descriptor_module(descriptor), ("lr",), ("sr",), device, self.precision)

    def tile_for(self, tile: int) -> int:
        return fitting_tile(self.user_model, tile)

    def run_tile(self, tile: np.ndarray, context) -> np.ndarray:
        h, w = tile.shape[2:]
        out = self.graph({"lr": padded(tile, self.size)})["sr"]
        return np.clip(out[:, :, :h * self.scale, :w * self.scale], 0.0, 1.0)


def fitting_tile(model: UserModel, tile: int) -> int:
    """spandrel's tiling hint and size requirements applied to the tile asked for: the whole
    image for a model that tiles internally, large tiles where tiling is discouraged, sides of
    at least its minimum and a multiple of what it needs."""
    if tile == 0 or model.tiling == "internal":
        return 0
    if model.tiling == "discouraged":
        tile = max(tile, DISCOURAGED_MIN_TILE)
    return _fitting(max(tile, MIN_TILE), model)


def padded(tile: np.ndarray, size) -> np.ndarray:
    """A 1×3×h×w tile padded at the bottom and right to satisfy spandrel's size requirements
    (mirrored where the tile is large enough, else its edge repeated)."""
    h, w = tile.shape[2:]
    pad_w, pad_h = size.get_padding(w, h)
    if not (pad_w or pad_h):
        return tile
    widths = ((0, 0), (0, 0), (0, pad_h), (0, pad_w))
    if pad_h < h and pad_w < w:
        return np.pad(tile, widths, mode="reflect")
    return np.pad(tile, widths, mode="edge")


def _descriptor_module(descriptor):
    """spandrel's descriptor as an nn.Module (what TorchGraph runs): its own call, so
    architectures with a custom call function run as spandrel intends."""
    import torch

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = descriptor.model  # moved with the module by TorchGraph

        def forward(self, lr):
            return descriptor(lr)

    return Call()


def _checked_onnx(model: UserModel, descriptor) -> Path:
    """The model's ONNX graph, exported once into the ONNX cache and used only if it agrees with
    torch on an input of another size; otherwise a ModelError says to use the torch backend."""
    import torch

    from core import onnx_export, weights
    from core.archs.spec import SR_GRAPH
    from core.runtimes import OnnxGraph

    path = onnx_export.cache_dir(weights.file_sha256(model.path)) / f"user-{model.architecture}-sr.onnx"
    if path.is_file():
        return path
    generator = torch.Generator().manual_seed(0)
    side = _fitting(onnx_export.EXAMPLE_SIZE, model)
    other = (side, side) if model.square else (_fitting(side + 8, model), _fitting(side + 16, model))
    example = torch.rand(1, 3, side, side, generator=generator)
    check = torch.rand(1, 3, *other, generator=generator)
    refusal = f"{model.architecture} does not export cleanly to ONNX; use the torch backend"
    try:
        onnx_export.export_graph(SR_GRAPH, descriptor.model, {"lr": example}, path)
        got = OnnxGraph(path, "cpu")({"lr": check.numpy()})["sr"]
    except Exception as err:  # the exporter and onnxruntime raise many types; all mean "not clean"
        path.unlink(missing_ok=True)
        raise ModelError(f"{refusal} ({type(err).__name__})") from None
    expected = descriptor(check).numpy()
    if got.shape != expected.shape or np.abs(np.clip(got, 0, 1) - expected).max() > ONNX_TOLERANCE:
        path.unlink()
        raise ModelError(f"{refusal} (its graph differs from torch)")
    return path


def _fitting(side: int, model: UserModel) -> int:
    """The smallest side >= `side` that the model accepts."""
    side = max(side, model.minimum)
    return -(-side // model.multiple_of) * model.multiple_of


@lru_cache(maxsize=64)
def upscaler_class(model: UserModel) -> type[UserModelUpscaler]:
    """The Upscaler class of one user model (cached per file version)."""
    title = model.path.stem
    if model.problem:
        family, summary, scale = "unusable", model.problem, 1
    else:
        family, scale = model.architecture, model.scale
        params = (f"{model.params / 1e6:.1f} M" if model.params >= 100_000
                  else f"{model.params / 1e3:.0f} k")
        summary = f"Your own {model.architecture} ×{model.scale} model, {params} parameters ({model.path.name})"
    return type(f"UserModel_{title}", (UserModelUpscaler,),
                {"id": model.id, "family": family, "title": title, "summary": summary,
                 "scale": scale, "user_model": model})
