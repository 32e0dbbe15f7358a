"""Architectures by id. Each module has `CONFIGS: dict[str, dict]` and `build(config) -> nn.Module`;
a module may also have `native_state_dict(state) -> state`, which renames an official
checkpoint's keys to the module's own (the weights store applies it before strict loading)."""

import importlib

import torch
from torch import nn

ARCH_MODULES = {
    "rrdbnet": "core.archs.rrdbnet",
    "mmrealsr": "core.archs.mmrealsr",
    "ccl": "core.archs.ccl",
    "kdsr": "core.archs.kdsr",
    "cmdsr": "core.archs.cmdsr",
    "metaf2n": "core.archs.metaf2n",
}


class _Archs(dict):
    """Arch id -> module, imported on first use (torch-heavy modules load only when needed)."""

    def __missing__(self, arch_id):
        if arch_id not in ARCH_MODULES:
            raise KeyError(f"unknown architecture {arch_id!r}; known: {', '.join(ARCH_MODULES)}")
        module = importlib.import_module(ARCH_MODULES[arch_id])
        self[arch_id] = module
        return module

    def __iter__(self):
        return iter(ARCH_MODULES)

    def __len__(self):
        return len(ARCH_MODULES)

    def __contains__(self, arch_id):
        return arch_id in ARCH_MODULES

    def keys(self):
        return ARCH_MODULES.keys()

    def items(self):
        return [(arch_id, self[arch_id]) for arch_id in ARCH_MODULES]

    def values(self):
        return [self[arch_id] for arch_id in ARCH_MODULES]


ARCHS = _Archs()


def build(arch_id: str, config: str) -> nn.Module:
    return ARCHS[arch_id].build(config)


def param_count(arch_id: str, config: str) -> int:
    """Parameters of a configuration, counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        module = build(arch_id, config)
    return sum(p.numel() for p in module.parameters())
