"""KDSR and CMDSR through the engine: one global estimate per image, torch and ONNX backends,
support regions, and refusal without weights."""
import numpy as np
import pytest
import torch

from core import weights
from core.archs import cmdsr, kdsr
from core.errors import InputError, WeightsError
from core.image_io import Image
from core.engine import Engine, UpscaleRequest
from core.methods.kdsr import estimate_windows


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    """An empty bundle and a user models folder holding seeded lite weights under canonical names
    (the tests check the plumbing, not the quality of trained weights)."""
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path / "bundle")
    folder = tmp_path / "models"
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder))
    torch.manual_seed(0)
    weights.save_state_dict(kdsr.ARCH.build("lite").state_dict(), folder / "kdsr_lite.safetensors")
    weights.save_state_dict(cmdsr.ARCH.build("lite").state_dict(), folder / "cmdsr_lite.safetensors")
    return folder


def photo(h=40, w=52):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([xx, yy, 0.5 * (xx + yy)], axis=2) + 0.1 * rng.random((h, w, 3))
    return Image(np.clip(rgb, 0, 1).astype(np.float32), 8, None, None)


@pytest.mark.parametrize("model", ["kdsr", "cmdsr"])
def test_tiles_share_one_estimate(models_folder, model):
    """With one global estimate, tiling only changes the result near tile seams."""
    engine = Engine()
    whole = engine.upscale(photo(), UpscaleRequest(model=model, tile=0)).pixels
    tiled = engine.upscale(photo(), UpscaleRequest(model=model, tile=24, overlap=8)).pixels
    assert whole.shape == (160, 208, 3)
    assert np.median(np.abs(whole - tiled)) < 1e-3


@pytest.mark.parametrize("model", ["kdsr", "cmdsr"])
def test_onnx_backend_matches_torch(models_folder, model):
    engine = Engine()
    a = engine.upscale(photo(), UpscaleRequest(model=model, backend="torch", tile=0)).pixels
    b = engine.upscale(photo(), UpscaleRequest(model=model, backend="onnx", tile=0)).pixels
    assert np.abs(a - b).max() < 1e-4


def test_cmdsr_support_region_steers_the_modulation(models_folder):
    image = photo(64, 64)
    image.pixels[:, 32:] = np.random.default_rng(0).random((64, 32, 3)).astype(np.float32)
    engine = Engine()
    upscaler = engine.load("cmdsr")
    progress = lambda fraction, stage: None  # noqa: E731
    flat = upscaler.prepare(image.pixels, UpscaleRequest(model="cmdsr", support=(0, 0, 32, 64)), progress)
    noisy = upscaler.prepare(image.pixels, UpscaleRequest(model="cmdsr", support=(32, 0, 32, 64)), progress)
    lite = cmdsr.CONFIGS["lite"]  # one (scale) row per modulation: two per block
    assert flat.shape == (1, 2 * lite["n_blocks"], lite["channels"])
    assert np.abs(flat - noisy).max() > 1e-4
    with pytest.raises(InputError, match="fewer than 2x2"):
        engine.upscale(image, UpscaleRequest(model="cmdsr", support=(10, 10, 1, 1), tile=0))


def test_missing_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path / "bundle")
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match="missing"):
        Engine().upscale(photo(), UpscaleRequest(model="kdsr"))


def test_large_images_are_estimated_from_spread_windows():
    rgb = np.zeros((1000, 600, 3), dtype=np.float32)
    windows = estimate_windows(rgb)
    assert len(windows) == 12 and all(w.shape == (1, 3, 256, 256) for w in windows)
    assert len(estimate_windows(np.zeros((100, 90, 3), dtype=np.float32))) == 1
