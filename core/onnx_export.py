"""ONNX graphs of the architectures, with dynamic height and width (batch 1).

Methods with a global degradation estimate are split in two graphs so a tiled run computes the
estimate once and every tile shares it: KDSR and MM-RealSR as an estimator plus an SR graph that
takes the estimate, CMDSR as ConditionNet (+ modulation layers) plus BaseNet taking the scales.
RRDBNet and RealSR-CCL are one graph. Exported graphs are cached in the user's models folder under
the sha256 of the weights they were made from.

    python -m core.onnx_export MODEL CONFIG      export (or find) the graphs of loaded weights
"""

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from protocol.files import atomic_write

from . import weights
from .errors import BlindUpscaleError

OPSET = 17
EXAMPLE_SIZE = 32  # example LR side; real inputs may have any size (dynamic axes)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    wrap: Callable           # full model -> the nn.Module this graph exports
    inputs: tuple            # input names; the first is always the LR image (or support set)
    outputs: tuple
    image_inputs: tuple      # inputs whose axes 2 and 3 are dynamic


def _kdsr_graphs():
    from .archs.kdsr import KDSREstimator, KDSRUpscaler
    return [GraphSpec("estimator", KDSREstimator, ("lr",), ("idr",), ("lr",)),
            GraphSpec("sr", KDSRUpscaler, ("lr", "idr"), ("sr",), ("lr",))]


def _mmrealsr_graphs():
    from .archs.mmrealsr import MMRealSREstimator, MMRealSRUpscaler
    return [GraphSpec("estimator", MMRealSREstimator, ("lr",), ("scores",), ("lr",)),
            GraphSpec("sr", MMRealSRUpscaler, ("lr", "scores"), ("sr",), ("lr",))]


def _cmdsr_graphs():
    from .archs.cmdsr import CMDSRConditioner
    return [GraphSpec("condition", CMDSRConditioner, ("support",), ("scales",), ("support",)),
            GraphSpec("sr", lambda model: model.sr_net, ("lr", "scales"), ("sr",), ("lr",))]


def _single_graph():
    return [GraphSpec("sr", lambda model: model, ("lr",), ("sr",), ("lr",))]


GRAPHS = {"kdsr": _kdsr_graphs, "mmrealsr": _mmrealsr_graphs, "cmdsr": _cmdsr_graphs,
          "rrdbnet": _single_graph, "ccl": _single_graph}


def graph_specs(arch_id: str) -> list:
    if arch_id not in GRAPHS:
        raise BlindUpscaleError(f"architecture {arch_id!r} has no ONNX export")
    return GRAPHS[arch_id]()


def example_inputs(arch_id: str, model: torch.nn.Module) -> dict:
    """Example tensors for every graph input: the image inputs are random, and a graph's extra
    input (estimate, scales) is what the first graph produces from them."""
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, EXAMPLE_SIZE, EXAMPLE_SIZE, generator=generator)
    specs = graph_specs(arch_id)
    examples = {"lr": lr}
    if arch_id == "cmdsr":
        examples["support"] = torch.rand(1, 3 * model.support_size, EXAMPLE_SIZE, EXAMPLE_SIZE,
                                         generator=generator)
    if len(specs) == 2:
        first = specs[0]
        with torch.no_grad():
            examples[first.outputs[0]] = first.wrap(model).eval()(examples[first.inputs[0]])
    return examples


def export_graph(spec: GraphSpec, model: torch.nn.Module, examples: dict, path: Path) -> Path:
    """Writes one graph atomically (temp file, then rename)."""
    module = spec.wrap(model).eval()
    args = tuple(examples[name] for name in spec.inputs)
    dynamic = {name: {2: f"{name}_height", 3: f"{name}_width"} for name in spec.image_inputs}
    if "sr" in spec.outputs:
        dynamic["sr"] = {2: "sr_height", 3: "sr_width"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, args, str(tmp), input_names=list(spec.inputs),
                          output_names=list(spec.outputs), dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return path


def cache_dir(sha256: str) -> Path:
    return weights.models_dir() / "onnx" / sha256[:16]


def cached_graphs(arch_id: str, config: str, model: torch.nn.Module, sha256: str) -> dict:
    """graph name -> .onnx path for `model` (whose weights have `sha256`), exported on first use."""
    paths = {}
    specs = graph_specs(arch_id)
    examples = None
    for spec in specs:
        path = cache_dir(sha256) / f"{arch_id}-{config}-{spec.name}.onnx"
        if not path.is_file():
            if examples is None:
                examples = example_inputs(arch_id, model)
            export_graph(spec, model, examples, path)
        paths[spec.name] = path
    return paths


def engine_graphs(model_id: str, config: str, device: str, backend: str,
                  how_to_get: str = "") -> dict:
    """graph name -> runtime Graph of a model with its weights: the same split (estimator / SR)
    on both backends; "onnx" exports the graphs on first use. Missing weights raise a
    WeightsError that says what to put where (`how_to_get`)."""
    from .runtimes import OnnxGraph, TorchGraph

    loaded = weights.load_model(model_id, config, how_to_get)
    arch_id = weights.arch_of(model_id)
    specs = graph_specs(arch_id)
    if backend == "onnx":
        paths = cached_graphs(arch_id, config, loaded.module, loaded.sha256)
        return {spec.name: OnnxGraph(paths[spec.name], device) for spec in specs}
    return {spec.name: TorchGraph(spec.wrap(loaded.module), spec.inputs, spec.outputs, device)
            for spec in specs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.onnx_export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("config")
    args = parser.parse_args(argv)
    try:
        loaded = weights.load_model(args.model, args.config)
        paths = cached_graphs(weights.arch_of(args.model), args.config, loaded.module,
                              loaded.sha256)
    except BlindUpscaleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
