"""onnxruntime vs torch on the full-size configurations (the tests cover the lite ones).

Each architecture/configuration uses its weights from the weights store when present (for
RRDBNet: the converted Real-ESRGAN x4plus), else its fresh initialisation; it is exported with core/onnx_export.py into a temporary folder, and run
on one random LR input of a size other than the export example. Prints max |onnx - torch| per
configuration; exits non-zero if any exceeds 1e-4.

    .venv/bin/python bench/onnx_parity.py [--size 40x48] [--only mmrealsr]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import onnx_export, weights  # noqa: E402
from core.errors import WeightsError  # noqa: E402
from core.archs import ARCHS, build, param_count  # noqa: E402
from core.runtimes import OnnxGraph  # noqa: E402

TOLERANCE = 1e-4


def full_size_configs(arch_id):
    return [c for c in ARCHS[arch_id].configs if c != "lite"]


MODEL_OF_ARCH = {"rrdbnet": "realesrgan"}


def model_with_weights(arch_id, config):
    """(module, "weights" | "init"): stored weights when the store has them."""
    try:
        return weights.load_model(MODEL_OF_ARCH.get(arch_id, arch_id), arch_id, config).module, "weights"
    except WeightsError:
        torch.manual_seed(0)
        return build(arch_id, config).eval(), "init"


def parity(arch_id, config, height, width, folder):
    model, source = model_with_weights(arch_id, config)
    started = time.perf_counter()
    paths = {}
    examples = onnx_export.example_inputs(arch_id, model)
    for spec in onnx_export.graph_specs(arch_id):
        paths[spec.name] = onnx_export.export_graph(
            spec, model, examples, Path(folder) / f"{arch_id}-{config}-{spec.name}.onnx")
    exported = time.perf_counter() - started

    generator = torch.Generator().manual_seed(1)
    lr = torch.rand(1, 3, height, width, generator=generator)
    feeds = {"lr": lr.numpy()}
    args = (lr,)
    if arch_id == "cmdsr":
        support = torch.rand(1, 3 * model.support_size, 32, 32, generator=generator)
        feeds["support"] = support.numpy()
        args = (lr, support)
    graphs = [OnnxGraph(paths[s.name], "cpu") for s in onnx_export.graph_specs(arch_id)]
    started = time.perf_counter()
    if len(graphs) == 2:
        feeds.update(graphs[0](feeds))
    ours = graphs[-1](feeds)["sr"]
    ort_time = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad():
        reference = model(*args).numpy()
    torch_time = time.perf_counter() - started
    size_mb = sum(p.stat().st_size for p in paths.values()) / 1e6
    return (float(np.abs(ours - reference).max()), exported, ort_time, torch_time, size_mb,
            source)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="40x48", help="LR input HxW")
    parser.add_argument("--only", default=None, help="one architecture id")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    worst = 0.0
    print(f"{'arch:config':22} {'params':>11} {'weights':>7} {'max |d|':>9} {'export s':>8} "
          f"{'ort s':>6} {'torch s':>7} {'MB':>6}")
    for arch_id in [a for a, spec in ARCHS.items() if spec.graphs]:
        if args.only and arch_id != args.only:
            continue
        for config in full_size_configs(arch_id):
            with tempfile.TemporaryDirectory() as folder:
                diff, exported, ort_time, torch_time, size_mb, source = parity(
                    arch_id, config, height, width, folder)
            worst = max(worst, diff)
            print(f"{arch_id + ':' + config:22} {param_count(arch_id, config):>11,} {source:>7} "
                  f"{diff:9.2e} "
                  f"{exported:8.1f} {ort_time:6.2f} {torch_time:7.2f} {size_mb:6.1f}", flush=True)
    print(f"worst {worst:.2e} ({'ok' if worst <= TOLERANCE else 'FAILS'} at {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
