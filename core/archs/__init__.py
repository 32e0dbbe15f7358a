"""Architectures by id, from the `ARCH` spec each module exports (see spec.py)."""

from functools import cache

import torch
from torch import nn

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


@cache
def param_count(arch_id: str, config: str) -> int:
    """Parameters of a configuration, counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        module = build(arch_id, config)
    return sum(p.numel() for p in module.parameters())
