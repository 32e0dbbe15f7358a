"""The CPU speed paths: onnxruntime int8 made from the bundled samples, the measured choice in the
manifest driving `--backend auto`, the fallback to torch, and the benchmark's choice rule."""
import json
import shutil

import numpy as np
import pytest

from bench.speed import choose
from core import quantize, runtimes, weights
from core.engine import Engine, UpscaleRequest
from core.image_io import Image
from core.metrics import psnr_y
from conftest import gradient_pixels


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A copy of the bundled weights whose manifest the test may edit; exports go to tmp too."""
    folder = tmp_path / "bundled"
    shutil.copytree(weights.BUNDLED_DIR, folder)
    monkeypatch.setattr(weights, "BUNDLED_DIR", folder)
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path / "models"))
    return folder


def store_choice(folder, model, backend, precision):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["files"].values():
        if entry["model"] == model:
            entry["runtime"] = {runtimes.cpu_class(): {"backend": backend, "precision": precision}}
    path.write_text(json.dumps(manifest))


def test_int8_graph_is_calibrated_on_the_samples_and_stays_close_to_fp32(bundled, monkeypatch):
    monkeypatch.setattr(quantize, "MAX_PATCHES", 4)
    image = Image(gradient_pixels(40, 48, 3), 8)
    engine = Engine()
    fp32 = engine.upscale(image, UpscaleRequest(model="kdsr", backend="onnx", precision="fp32")).pixels
    int8 = engine.upscale(image, UpscaleRequest(model="kdsr", backend="onnx", precision="int8")).pixels
    made = list((bundled.parent / "models" / "onnx").glob("*/kdsr-lite-sr-int8.onnx"))
    assert len(made) == 1
    assert engine.load("kdsr", backend="onnx", precision="int8").precision == "int8"
    assert 30 < psnr_y(int8, fp32) < float("inf")  # quantized, and close


def test_the_stored_choice_drives_auto(bundled):
    pytest.importorskip("openvino")
    store_choice(bundled, "kdsr", "openvino", "fp32")
    assert weights.stored_runtime("kdsr", "lite") == ("openvino", "fp32")
    assert weights.stored_runtime("cmdsr", "lite") is None  # nothing stored for it here
    upscaler = Engine().load("kdsr")
    assert (upscaler.backend, upscaler.precision) == ("openvino", "fp32")


def test_a_stored_choice_whose_runtime_is_missing_falls_back_to_torch(bundled, monkeypatch):
    store_choice(bundled, "kdsr", "openvino", "fp32")
    monkeypatch.setattr(runtimes, "runtime_installed", lambda backend: backend != "openvino")
    engine = Engine()
    result = engine.upscale(Image(gradient_pixels(20, 24, 3), 8), UpscaleRequest(model="kdsr"))
    assert result.pixels.shape == (80, 96, 3) and np.isfinite(result.pixels).all()
    fallback = engine.load("kdsr")
    assert (fallback.backend, fallback.precision) == ("torch", "fp32")


def test_the_benchmark_picks_the_fastest_path_within_the_quality_bound():
    rows = [{"path": "torch:fp32", "s_per_mp": 40.0, "psnr_y": 28.00},
            {"path": "onnx:int8", "s_per_mp": 15.0, "psnr_y": 27.90},
            {"path": "onnx:fp32", "s_per_mp": 30.0, "psnr_y": 28.00},
            {"path": "openvino:fp32", "s_per_mp": 32.0, "psnr_y": 28.01}]
    assert choose(rows)["path"] == "onnx:fp32"
    assert choose(rows[:2])["path"] == "torch:fp32"
    assert choose(rows[1:]) is None  # no torch fp32 reference: nothing is chosen
    # with stage times, the network time decides (model load is the same for every runtime)
    timed = [dict(rows[0], stages_s_per_mp={"prepare": 1.0, "tiles": 20.0}),
             dict(rows[2], s_per_mp=45.0, stages_s_per_mp={"prepare": 1.0, "tiles": 12.0})]
    assert choose(timed)["path"] == "onnx:fp32"
