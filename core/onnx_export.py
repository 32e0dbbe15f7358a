"""ONNX export of the graphs each architecture declares in its spec (`ArchSpec.graphs`), with
dynamic height and width (batch 1).

Methods with a global degradation estimate run as two graphs so a tiled run computes the
estimate once and every tile shares it: KDSR and MM-RealSR as an estimator plus an SR graph that
takes the estimate, CMDSR as ConditionNet (+ modulation layers) plus BaseNet taking the scales.
RRDBNet and RealSR-CCL are one graph. Exported graphs are cached in the user's models folder under
the sha256 of the weights they were made from.

    python -m core.onnx_export MODEL CONFIG      export (or find) the graphs of loaded weights
"""

import argparse
import sys
import warnings
from pathlib import Path

import torch

from protocol.files import atomic_write

from . import weights
from .archs import get_arch
from .archs.spec import GraphSpec
from .errors import BlindUpscaleError

OPSET = 17
EXAMPLE_SIZE = 32  # example LR side; real inputs may have any size (dynamic axes)


def graph_specs(arch_id: str) -> tuple[GraphSpec, ...]:
    graphs = get_arch(arch_id).graphs
    if not graphs:
        raise BlindUpscaleError(f"architecture {arch_id!r} has no ONNX export")
    return graphs


def example_inputs(arch_id: str, model: torch.nn.Module) -> dict:
    """Example tensors for every graph input: the arch's own examples (random images), and
    what the earlier graphs produce from them for the inputs of the later ones."""
    generator = torch.Generator().manual_seed(0)
    graphs = graph_specs(arch_id)
    examples = get_arch(arch_id).example_inputs(model, EXAMPLE_SIZE, EXAMPLE_SIZE, generator)
    consumed = {name for graph in graphs for name in graph.inputs}
    with torch.no_grad():
        for graph in graphs:
            if consumed.isdisjoint(graph.outputs):
                continue
            out = graph.wrap(model).eval()(*(examples[name] for name in graph.inputs))
            examples.update(zip(graph.outputs, out if isinstance(out, tuple) else (out,)))
    return examples


def export_graph(graph: GraphSpec, model: torch.nn.Module, examples: dict, path: Path) -> Path:
    """Writes one graph atomically (temp file, then rename)."""
    module = graph.wrap(model).eval()
    args = tuple(examples[name] for name in graph.inputs)
    dynamic = {name: {2: f"{name}_height", 3: f"{name}_width"}
               for name in graph.inputs + graph.outputs if name in graph.image_tensors}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, args, str(tmp), input_names=list(graph.inputs),
                          output_names=list(graph.outputs), dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return path


def cache_dir(sha256: str) -> Path:
    return weights.models_dir() / "onnx" / sha256[:16]


def cached_graphs(arch_id: str, config: str, model: torch.nn.Module, sha256: str) -> dict:
    """graph name -> .onnx path for `model` (whose weights have `sha256`), exported on first use."""
    paths = {}
    examples = None
    for graph in graph_specs(arch_id):
        path = cache_dir(sha256) / f"{arch_id}-{config}-{graph.name}.onnx"
        if not path.is_file():
            if examples is None:
                examples = example_inputs(arch_id, model)
            export_graph(graph, model, examples, path)
        paths[graph.name] = path
    return paths


def engine_graphs(model_id: str, arch_id: str, config: str, device: str, backend: str,
                  how_to_get: str = "", precision: str = "fp32", threads: int | None = None) -> dict:
    """graph name -> runtime Graph of a model (a checkpoint of `arch_id`) with its weights: the
    same split (estimator / SR) on every backend; "onnx" and "openvino" export the graphs on first
    use, and onnx int8 quantizes the per-tile graph (the last one; the global estimates are small
    and stay fp32). Missing weights raise a WeightsError that says what to put where (`how_to_get`)."""
    from .runtimes import OnnxGraph, OpenVinoGraph, TorchGraph

    loaded = weights.load_model(model_id, arch_id, config, how_to_get)
    graphs = graph_specs(arch_id)
    if backend == "torch":
        return {graph.name: TorchGraph(graph.wrap(loaded.module), graph.inputs, graph.outputs, device,
                                       precision)
                for graph in graphs}
    paths = cached_graphs(arch_id, config, loaded.module, loaded.sha256)
    if backend == "openvino":
        return {graph.name: OpenVinoGraph(paths[graph.name], precision, threads) for graph in graphs}
    if precision == "int8":
        from .quantize import int8_graph

        last = graphs[-1].name
        paths[last] = int8_graph(model_id, config, paths[last])
    return {graph.name: OnnxGraph(paths[graph.name], device, threads) for graph in graphs}


def model_graphs(model_id: str, config: str) -> dict[str, Path]:
    """The cached ONNX graphs of a model id's configuration by graph name (the command lines'
    start: `python -m core.onnx_export`, `python -m core.quantize`)."""
    from .registry import upscaler_class

    arch_id = upscaler_class(model_id).arch
    if arch_id is None:
        raise BlindUpscaleError(f"model {model_id!r} has no network to export")
    loaded = weights.load_model(model_id, arch_id, config)
    return cached_graphs(arch_id, config, loaded.module, loaded.sha256)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.onnx_export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("config")
    args = parser.parse_args(argv)
    try:
        paths = model_graphs(args.model, args.config)
    except BlindUpscaleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
