"""Architectures by id, from the `ARCH` spec each module exports (see spec.py)."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from . import ccl, cmdsr, face_restorer, kdsr, metaf2n, mmrealsr, rrdbnet
from .spec import ArchSpec


def _registry(*specs: ArchSpec) -> dict[str, ArchSpec]:
    registry = {}
    for spec in specs:
        if spec.id in registry:
            raise ValueError(f"two architectures are registered as {spec.id!r}")
        registry[spec.id] = spec
    return registry


ARCHS = _registry(kdsr.ARCH, cmdsr.ARCH, mmrealsr.ARCH, ccl.ARCH, metaf2n.ARCH, rrdbnet.ARCH,
                  face_restorer.ARCH)


def get_arch(arch_id: str) -> ArchSpec:
    if arch_id not in ARCHS:
        raise KeyError(f"unknown architecture {arch_id!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch_id]


def build(arch_id: str, config: str) -> nn.Module:
    return get_arch(arch_id).build(config)


_FILLS = frozenset({"normal_", "uniform_", "trunc_normal_", "fill_", "zero_", "zeros_", "ones_", "constant_",
                    "copy_", "mul_", "add_", "sub_", "div_", "clamp_", "erfinv_", "exp_", "fill_diagonal_",
                    "kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_", "orthogonal_"})
"""In-place tensor methods and torch.nn.init functions that change values only (never a shape)."""


class _NothingToFill(TorchFunctionMode):
    """A meta tensor has no values, so an initialiser on it is skipped: several (normal_) have no
    meta kernel, and torch's fallback for them imports its compiler, 4 s of a listing's time."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _FILLS:  # Tensor.normal_(t, ...) or nn.init.normal_(tensor=t, ...)
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextmanager
def meta_device() -> Iterator[None]:
    """Modules built inside have shapes but no memory and no initialisation: for counting and
    detecting, never for running."""
    with torch.device("meta"), _NothingToFill():
        yield


@cache
def param_count(arch_id: str, config: str) -> int:
    """Parameters of a configuration, counted on the meta device (no memory, no init cost)."""
    with meta_device():
        module = build(arch_id, config)
    return sum(p.numel() for p in module.parameters())
