"""int8 graphs for onnxruntime by static quantization: weights per channel (7-bit range: without
VNNI the uint8×int8 kernels of AVX2 saturate on full-range weights), activations with
ranges measured on real image patches (calibration), stored next to the fp32 export as QDQ ONNX.

Only the per-tile graph is quantized; the calibration runs the model's own torch path (its
`prepare` and `run_tile`) on patches so the graph sees the inputs it gets in a job (the global
estimate included). The default calibration images are the bundled samples, so a fresh install
can make the graph; bench/speed.py calibrates on the validation photos and replaces it.

    python -m core.quantize MODEL CONFIG [--calibration FOLDER]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import numpy as np

from protocol.files import atomic_write

from .errors import BlindUpscaleError, ModelError

SAMPLES = Path(__file__).resolve().parent.parent / "resources" / "samples"
PATCH = 64
PATCHES_PER_IMAGE = 4
MAX_PATCHES = 16


def calibration_patches(folder: Path, patch: int = PATCH) -> list[np.ndarray]:
    """Up to MAX_PATCHES H×W×3 float32 patches: the four quadrant centres of each image (sorted
    by name, so a folder always gives the same set)."""
    from .image_io import load_image, to_rgb

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    patches: list[np.ndarray] = []
    for path in files:
        rgb = to_rgb(load_image(path).pixels)
        h, w = rgb.shape[:2]
        if h < patch or w < patch:
            continue
        for cy in (h // 4, 3 * h // 4):
            for cx in (w // 4, 3 * w // 4):
                y, x = min(max(cy - patch // 2, 0), h - patch), min(max(cx - patch // 2, 0), w - patch)
                patches.append(np.ascontiguousarray(rgb[y:y + patch, x:x + patch]))
        if len(patches) >= MAX_PATCHES:
            break
    if not patches:
        raise BlindUpscaleError(f"no image of at least {patch}×{patch} pixels in {folder} to calibrate on")
    return patches[:MAX_PATCHES]


def graph_inputs(model_id: str, config: str, graph: str, patches: list[np.ndarray]) -> list[dict]:
    """What graph `graph` of the model receives for each patch in a real job (torch fp32 path)."""
    from .engine import UpscaleRequest
    from .registry import upscaler_class

    upscaler: Any = upscaler_class(model_id)(config, "cpu", "torch", "fp32")  # an ArchUpscaler: has graphs
    seen: list[dict] = []
    run = upscaler.graphs[graph]

    def recording(inputs: dict) -> dict:
        seen.append({name: np.array(value, np.float32) for name, value in inputs.items()})
        return run(inputs)

    upscaler.graphs[graph] = recording
    request = UpscaleRequest(model=model_id, config=config, faces="none")
    for rgb in patches:
        context = upscaler.prepare(rgb, request, lambda fraction, stage: None)
        upscaler.run_tile(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]), context)
    return seen


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, feeds: list[dict]):
        self._feeds: Iterator[dict] = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def int8_path(fp32_path: Path) -> Path:
    return fp32_path.with_name(fp32_path.stem + "-int8.onnx")


def int8_graph(model_id: str, config: str, fp32_path: Path, calibration: Path | None = None) -> Path:
    """The int8 version of an exported graph (`<name>-int8.onnx` beside it): made on first use
    from the bundled samples, or (re)made from the images in `calibration` when given."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    target = int8_path(fp32_path)
    if target.is_file() and calibration is None:
        return target
    graph = fp32_path.stem.rsplit("-", 1)[-1]
    feeds = graph_inputs(model_id, config, graph, calibration_patches(calibration or SAMPLES))
    with atomic_write(target) as tmp:
        try:
            quantize_static(str(fp32_path), str(tmp), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot quantize {fp32_path.name} to int8: {exc}") from None
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("config")
    parser.add_argument("--calibration", type=Path, default=SAMPLES, help="folder of calibration images")
    args = parser.parse_args(argv)
    from .onnx_export import model_graphs

    try:
        fp32 = list(model_graphs(args.model, args.config).values())[-1]  # the SR graph comes last
        print(int8_graph(args.model, args.config, fp32, args.calibration))
    except BlindUpscaleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
