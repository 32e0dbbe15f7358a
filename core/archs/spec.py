"""What the project knows about one architecture, in one object: each `core/archs/<name>.py`
exports `ARCH = ArchSpec(...)`, and the weights store, the ONNX export and the methods read it
instead of keeping tables of their own."""

from dataclasses import dataclass, field
from collections.abc import Callable

import torch
from torch import nn

MIN_TILE = 16  # the smallest tile side the engine accepts, in pixels


@dataclass(frozen=True)
class GraphSpec:
    """One network an architecture runs as, on torch and in ONNX alike. A tiled run computes a
    global estimate once with one graph and feeds it to the SR graph with every tile."""

    name: str
    wrap: Callable[[nn.Module], nn.Module]  # the built architecture -> the module this graph runs
    inputs: tuple[str, ...]                 # positional inputs of that module's forward, in order
    outputs: tuple[str, ...]
    image_tensors: tuple[str, ...] = ("lr", "sr")
    """Inputs and outputs whose height and width (axes 2 and 3) are dynamic in ONNX."""


SR_GRAPH = GraphSpec("sr", lambda model: model, ("lr",), ("sr",))
"""The whole network as one graph: LR image -> SR image."""


@dataclass(frozen=True)
class SizeRequirements:
    """Input sizes an architecture accepts: at least `minimum` pixels a side, a multiple of
    `multiple_of` (e.g. 2 for a network that pixel-unshuffles its input by 2)."""

    minimum: int = MIN_TILE
    multiple_of: int = 1


def lr_example(model: nn.Module, height: int, width: int, generator: torch.Generator) -> dict:
    """A random LR image, the only input most graphs take besides what other graphs produce."""
    return {"lr": torch.rand(1, 3, height, width, generator=generator)}


@dataclass(frozen=True)
class ArchSpec:
    id: str
    title: str                                  # the architecture's name in messages
    network: Callable[..., nn.Module]           # called with one configuration's parameters
    configs: dict[str, dict]                    # configuration name -> network parameters
    graphs: tuple[GraphSpec, ...] = (SR_GRAPH,)
    """The graphs it runs as, in the order they run; () = torch only, no ONNX export."""
    example_inputs: Callable[[nn.Module, int, int, torch.Generator], dict] = lr_example
    """(model, height, width, generator) -> random tensors for the graph inputs no other graph
    produces (for export and tests), in the order the whole network's forward takes them."""
    native_state_dict: Callable[[dict], dict] | None = None
    """Official checkpoint state dict -> this architecture's names (and folded scales)."""
    size: SizeRequirements = field(default_factory=SizeRequirements)

    def config(self, name: str) -> dict:
        """The network parameters of configuration `name`."""
        if name not in self.configs:
            raise KeyError(f"unknown {self.title} configuration {name!r}; "
                           f"known: {', '.join(self.configs)}")
        return self.configs[name]

    def build(self, config: str) -> nn.Module:
        return self.network(**self.config(config))
