"""Architectures by id. Each module has `CONFIGS: dict[str, dict]` and `build(config) -> nn.Module`;
a module may also have `native_state_dict(state) -> state`, which turns an official checkpoint's
state dict into the module's own (renamed keys, folded scales); the weights store applies it to
official checkpoints before strict loading."""

from functools import lru_cache

import torch
from torch import nn

from . import ccl, cmdsr, kdsr, metaf2n, mmrealsr, rrdbnet

ARCHS = {
    "kdsr": kdsr,
    "cmdsr": cmdsr,
    "mmrealsr": mmrealsr,
    "ccl": ccl,
    "metaf2n": metaf2n,
    "rrdbnet": rrdbnet,
}


def build(arch_id: str, config: str) -> nn.Module:
    if arch_id not in ARCHS:
        raise KeyError(f"unknown architecture {arch_id!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch_id].build(config)


@lru_cache(maxsize=None)
def param_count(arch_id: str, config: str) -> int:
    """Parameters of a configuration, counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        module = build(arch_id, config)
    return sum(p.numel() for p in module.parameters())
