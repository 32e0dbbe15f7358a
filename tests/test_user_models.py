"""Issue 24: the user's own models through spandrel. Every checkpoint is made here, from spandrel's
own architecture classes with random weights, saved as safetensors or as a weights-only .pth; the
bad files are a pickle whose payload would create a file, a truncated file, an unrelated state
dict and a gray-only model."""
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.SAFMN import SAFMN
from spandrel.architectures.SPAN import SPAN

from core import cli, weights
from core.archs import build
from core.engine import Engine, UpscaleRequest
from core.errors import Cancelled, ModelError, WeightsError
from core.image_io import Image, load_image, save_image
from core.methods.user_model import fitting_tile
from core.registry import list_models
from core.user_models import UserModel, scan

ROOT = Path(__file__).resolve().parents[1]


class RunsCode:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A models folder with three usable community models, four bad files and one checkpoint of
    our own MM-RealSR, and the marker file the pickle's payload would create."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    nets = {"span2": SPAN(num_in_ch=3, num_out_ch=3, upscale=2, feature_channels=16),
            "compact4": Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4),
            "safmn2": SAFMN(dim=8, n_blocks=1, upscaling_factor=2)}
    save_file(nets["span2"].state_dict(), str(folder / "span2.safetensors"))
    torch.save({"params_ema": nets["compact4"].state_dict()}, folder / "compact4.pth")
    save_file(nets["safmn2"].state_dict(), str(folder / "safmn2.safetensors"))
    marker = folder.parent / f"{folder.name}-payload-ran"
    with open(folder / "evil.pth", "wb") as f:
        torch.save({"params": {"conv.weight": torch.zeros(1)}, "x": RunsCode(marker)}, f,
                   pickle_module=pickle)
    whole = (folder / "compact4.pth").read_bytes()
    (folder / "truncated.pth").write_bytes(whole[:len(whole) // 2])
    save_file({"encoder.weight": torch.zeros(8, 8), "decoder.bias": torch.zeros(8)},
              str(folder / "unrelated.safetensors"))
    gray = Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2)
    save_file(gray.state_dict(), str(folder / "gray.safetensors"))
    weights.save_state_dict(build("ccl", "lite").state_dict(), folder / "mine.safetensors")
    # RRDBNet is shared with community ESRGANs: listed as a user model unless the project wrote it
    weights.save_state_dict(build("rrdbnet", "lite").state_dict(), folder / "esrgan-lite.safetensors")
    weights.save_state_dict(build("rrdbnet", "lite").state_dict(), folder / "realesrgan_lite.safetensors")
    return folder, nets, marker


@pytest.fixture
def models_dir(folder, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder[0]))
    return folder[0]


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BLIND_UPSCALE_MODELS": str(folder), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def test_the_listing_shows_each_file_with_what_spandrel_found_or_why_not(folder):
    models_dir, nets, marker = folder
    done = run_cli(models_dir, "models", "--json")
    assert done.returncode == 0, done.stderr
    listed = {m["id"]: m for m in json.loads(done.stdout)}

    span = listed["user:span2"]
    assert (span["family"], span["scale"], span["weights"]) == ("SPAN", 2, "user")
    assert span["configs"] == [{"id": "user:span2:checkpoint", "params": params(nets["span2"]),
                                "weights": "user"}]
    assert span["checkpoint"]["architecture"] == "SPAN"
    assert span["checkpoint"]["file"] == str(models_dir / "span2.safetensors")
    assert listed["user:compact4"]["checkpoint"]["params"] == params(nets["compact4"])
    assert listed["user:compact4"]["scale"] == 4
    assert listed["user:safmn2"]["checkpoint"]["size_requirements"] == {
        "minimum": 0, "multiple_of": 8, "square": False}

    reasons = {name: listed[f"user:{name}"]["reason"]
               for name in ("evil", "truncated", "unrelated", "gray")}
    assert all(listed[f"user:{name}"]["weights"] == "unusable" for name in reasons)
    assert "evil.pth was refused: it contains pickled objects other than tensors" in reasons["evil"]
    assert "truncated.pth is not a readable PyTorch checkpoint" in reasons["truncated"]
    assert "unrelated.safetensors is not a model of any architecture" in reasons["unrelated"]
    assert "gray.safetensors takes 1-channel images" in reasons["gray"]
    assert not marker.exists(), "the pickle's payload ran"

    # our own detection keeps priority: the CCL checkpoint belongs to ccl
    assert "user:mine" not in listed
    assert "user:esrgan-lite" in listed and "user:realesrgan_lite" not in listed
    assert all("\n" not in m.get("reason", "") for m in listed.values())
    assert {c["id"]: c["weights"] for c in listed["ccl"]["configs"]}["ccl:lite"] == "user"



def test_the_text_listing_has_a_section_for_user_models(models_dir, capsys):
    assert cli.main(["models"]) == 0
    text = capsys.readouterr().out
    assert f"your own models (in {models_dir})" in text
    assert "user:safmn2: Your own SAFMN ×2 model" in text
    assert "input a multiple of 8 px" in text
    assert "user:evil: unusable: evil.pth was refused" in text


def test_a_cli_upscale_with_a_user_model_has_the_expected_size_alpha_and_depth(folder, tmp_path):
    models_dir, _, _ = folder
    rgba = np.random.default_rng(0).random((30, 37, 4)).astype(np.float32)
    source_16 = tmp_path / "in16.tif"
    save_image(Image(rgba, 16, None, None), source_16)
    out = tmp_path / "out.tif"
    done = run_cli(models_dir, "upscale", str(source_16), str(out), "--model", "user:span2",
                   "--scale", "2", "--tile", "16", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["width"], summary["height"], summary["channels"], summary["bit_depth"]) == (74, 60, 4, 16)
    result = load_image(out)
    assert result.pixels.shape == (60, 74, 4) and result.bit_depth == 16


@pytest.mark.parametrize("model, message", [
    ("user:evil", "error: evil.pth was refused"),
    ("user:truncated", "error: truncated.pth is not a readable PyTorch checkpoint"),
    ("user:unrelated", "error: unrelated.safetensors is not a model of any"),
    ("user:nothing", "error: unknown model 'user:nothing': no such file in"),
])
def test_refusals_are_one_line_and_the_payload_never_runs(folder, models_dir, tmp_path, capsys, model, message):
    source = tmp_path / "in.png"
    PILImage.new("RGB", (20, 20), (90, 120, 30)).save(source)
    assert cli.main(["upscale", str(source), str(tmp_path / "out.png"), "--model", model]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "out.png").exists()
    assert not folder[2].exists(), "the pickle's payload ran"


def test_untiled_engine_output_is_spandrels_and_tiles_respect_the_size_requirements(models_dir):
    """SAFMN needs sides that are multiples of 8: a 29×37 image is padded for it and cropped
    back, as spandrel itself does."""
    from core import user_models

    model = next(m for m in scan() if m.id == "user:safmn2")
    descriptor = user_models.load(model)
    pixels = np.random.default_rng(1).random((29, 37, 3)).astype(np.float32)
    image = Image(pixels, 8, None, None)
    whole = Engine().upscale(image, UpscaleRequest(model="user:safmn2", scale=2, tile=0))
    expected = descriptor(torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy()))[0].numpy()
    assert whole.pixels.shape == (58, 74, 3)
    np.testing.assert_allclose(whole.pixels, expected.transpose(1, 2, 0), atol=1e-5)

    tiled = Engine().upscale(image, UpscaleRequest(model="user:safmn2", scale=2, tile=20, overlap=4))
    assert tiled.pixels.shape == (58, 74, 3)


def test_tiling_hints_and_size_requirements_decide_the_tile():
    def model(**hints) -> UserModel:
        return UserModel("user:x", Path("x.safetensors"), 1, 1, "X", 2, 1, **hints)

    assert fitting_tile(model(), 64) == 64
    assert fitting_tile(model(tiling="internal"), 256) == 0
    assert fitting_tile(model(tiling="discouraged"), 256) == 512
    assert fitting_tile(model(minimum=40, multiple_of=16), 16) == 48
    assert fitting_tile(model(multiple_of=8), 20) == 24
    assert fitting_tile(model(minimum=40), 0) == 0


def test_onnx_runs_user_models_that_export_cleanly(models_dir):
    pixels = np.random.default_rng(2).random((24, 40, 3)).astype(np.float32)
    image = Image(pixels, 8, None, None)
    on_torch = Engine().upscale(image, UpscaleRequest(model="user:span2", scale=2, tile=0, backend="torch"))
    on_onnx = Engine().upscale(image, UpscaleRequest(model="user:span2", scale=2, tile=0, backend="onnx"))
    np.testing.assert_allclose(on_onnx.pixels, on_torch.pixels, atol=2e-3)
    assert list((models_dir / "onnx").rglob("user-SPAN-sr.onnx"))


def test_progress_and_cancel_reach_user_models(models_dir):
    image = Image(np.random.default_rng(3).random((64, 64, 3)).astype(np.float32), 8, None, None)
    stop = threading.Event()
    stages = []

    def progress(fraction, stage):
        stages.append(stage)
        if stage.startswith("Upscaling: tile 2 of"):  # tile 1 is done, tile 2 is next
            stop.set()

    with pytest.raises(Cancelled):
        Engine().upscale(image, UpscaleRequest(model="user:compact4", tile=32, overlap=4), progress, stop)
    assert "Upscaling: tile 2 of 9" in stages and not any(s.startswith("Upscaling: tile 3 of") for s in stages)


def test_a_replaced_file_is_a_new_model(models_dir, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder))
    path = folder / "swap.safetensors"
    save_file(SPAN(num_in_ch=3, num_out_ch=3, upscale=2, feature_channels=16).state_dict(), str(path))
    engine = Engine()
    first = engine.load("user:swap")
    save_file(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=3).state_dict(), str(path))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = engine.load("user:swap")
    assert (first.scale, second.scale) == (2, 3)
    assert {m.id for m in list_models()} >= {"kdsr", "user:swap"}


def test_loading_an_unusable_user_model_names_the_reason(models_dir):
    with pytest.raises(WeightsError, match="gray.safetensors takes 1-channel images"):
        Engine().load("user:gray")
    with pytest.raises(ModelError, match="unknown model 'user:missing'"):
        Engine().load("user:missing")
