"""The user's own models: community checkpoints (ESRGAN, SPAN, Compact, HAT, DAT, OmniSR…) in
the models folder, recognised and built by spandrel, listed as model `user:<file stem>`.

Our own detection (core/weights.py) keeps priority: a checkpoint of one of the five methods'
architectures belongs to that method. RRDBNet is the exception (`GENERIC_ARCHS`): community ESRGAN
checkpoints share it, so they are listed here too. Files are read by core/weights.py only
(safetensors, or `torch.load(weights_only=True)`): spandrel's own loader is never called, as it would
unpickle more than tensors and run TorchScript. A file that cannot be used is listed with the reason.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path


from core import weights
from core.archs import meta_device
from core.errors import ModelError, WeightsError

PREFIX = "user:"
GENERIC_ARCHS = frozenset({"rrdbnet"})
"""Our architectures that community checkpoints share: such files are user models as well."""
PURPOSES = ("SR", "Restoration")
"""spandrel purposes the engine can run (face restoration needs aligned faces, inpainting a mask)."""


@dataclass(frozen=True)
class UserModel:
    """One checkpoint of the models folder as the listing shows it (no tensors kept)."""

    id: str
    path: Path
    size: int
    mtime_ns: int
    """The file's size and modification time: a replaced file is a new model."""
    architecture: str = ""
    scale: int = 1
    params: int = 0
    tags: tuple[str, ...] = ()
    minimum: int = 0
    multiple_of: int = 1
    square: bool = False
    """spandrel's size requirements of the input (tiles are made to satisfy them)."""
    tiling: str = "supported"
    """spandrel's tiling hint: "supported", "discouraged" or "internal"."""
    problem: str = ""
    """Why the file cannot be used, or ''."""

    def checkpoint(self) -> dict:
        """The `checkpoint` entry of the model list."""
        entry: dict = {"file": str(self.path)}
        if not self.problem:
            entry.update({"architecture": self.architecture, "scale": self.scale, "params": self.params,
                          "tags": list(self.tags), "tiling": self.tiling,
                          "size_requirements": {"minimum": self.minimum, "multiple_of": self.multiple_of,
                                                "square": self.square}})
        return entry


class NotBuilt(WeightsError):
    """spandrel recognised the architecture but failed while building it."""


@cache
def spandrel_registry():
    """spandrel's registry, with the non-commercial extra architectures when the user installed
    them (`pip install spandrel_extra_arches`; never installed by default)."""
    import spandrel

    try:
        import spandrel_extra_arches
    except ImportError:
        pass
    else:
        spandrel_extra_arches.install(ignore_duplicates=True)
    return spandrel.MAIN_REGISTRY


def build(state: dict, name: str):
    """spandrel's ImageModelDescriptor for a state dict; anything it cannot run is a WeightsError."""
    from spandrel import ImageModelDescriptor, UnsupportedModelError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # architectures' deprecation and meta-copy notices
            descriptor = spandrel_registry().load(state)
    except UnsupportedModelError:
        raise WeightsError(f"{name} is not a model of any architecture Blind Upscale or spandrel "
                           "knows") from None
    except Exception as err:  # spandrel's detectors raise anything on odd state dicts
        detail = " ".join(str(err).split())[:200]  # one line: torch's load errors span several
        raise NotBuilt(f"spandrel could not build {name} ({type(err).__name__}: {detail})") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in PURPOSES:
        raise WeightsError(f"{name} is a {descriptor.architecture.name} {descriptor.purpose} model, "
                           "not an image upscaler")
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise WeightsError(f"{name} takes {descriptor.input_channels}-channel images and makes "
                           f"{descriptor.output_channels}-channel ones; only RGB models can run")
    return descriptor


@lru_cache(maxsize=256)
def _describe(entry: weights.FolderFile, model_id: str) -> UserModel:
    """What the listing shows of a readable file: spandrel's view of it, built on the meta
    device (no memory, no initialisation), or the reason it cannot be used."""
    try:
        state = weights.load_state_dict(entry.path, mmap=True)
        try:
            with meta_device():
                descriptor = build(state, entry.path.name)
        except NotBuilt:  # an architecture whose construction computes with real values
            descriptor = build(state, entry.path.name)
    except WeightsError as err:
        return UserModel(model_id, entry.path, entry.size, entry.mtime_ns, problem=str(err))
    size = descriptor.size_requirements
    return UserModel(model_id, entry.path, entry.size, entry.mtime_ns, descriptor.architecture.name,
                     descriptor.scale, sum(p.numel() for p in descriptor.model.parameters()),
                     tuple(descriptor.tags), size.minimum, size.multiple_of, size.square,
                     descriptor.tiling.name.lower())


def scan() -> list[UserModel]:
    """The user models of the models folder, usable or not, sorted by file name. Two files with
    the same stem: the second is `user:<file name>`."""
    found: list[UserModel] = []
    taken: set[str] = set()
    for entry in weights.scan_models_folder():
        if entry.kind is not None and (entry.kind[0] not in GENERIC_ARCHS or _written_by_us(entry)):
            continue  # one of the methods' checkpoints: listed under that method
        model_id = PREFIX + (entry.path.stem if entry.path.stem not in taken else entry.path.name)
        taken.update((entry.path.stem, entry.path.name))
        if entry.problem:
            found.append(UserModel(model_id, entry.path, entry.size, entry.mtime_ns, problem=entry.problem))
        else:
            found.append(_describe(entry, model_id))
    return found


def _written_by_us(entry: weights.FolderFile) -> bool:
    """A file with the name the project gives its own (`<model>_<config>.safetensors`, e.g. the
    Real-ESRGAN weights converted at set-up): it belongs to that model."""
    from core.methods import METHODS

    assert entry.kind is not None
    arch_id, config = entry.kind
    return any(entry.path.name == weights.canonical_name(model_id, config)
               for model_id, cls in METHODS.items() if cls.arch == arch_id)


def find(model_id: str) -> UserModel:
    models = scan()
    for model in models:
        if model.id == model_id:
            return model
    known = ", ".join(m.id for m in models) or "none"
    raise ModelError(f"unknown model {model_id!r}: no such file in {weights.models_dir()} "
                     f"(user models: {known})")


def load(model: UserModel):
    """The model's spandrel descriptor with its weights, on the CPU, in eval mode."""
    return build(weights.load_state_dict(model.path), model.path.name).eval()
