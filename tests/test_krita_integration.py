"""Real Krita (Debian's 5.1.5 under xvfb-run) with the packaged plug-in, driven by a test plug-in.

The zip that `build.py package` writes is installed with Krita's own importer into a throw-away
profile; tests/krita_driver then triggers `blind_upscale` on an image made here and compares the
new layer with the CLI's output for the same file, and kills the engine in the middle of a second
job to check that the document is left as it was and the panel says what happened.
With $CI set, a missing Krita fails the test instead of skipping it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from plugin.packaging import build_packages

ROOT = Path(__file__).resolve().parents[1]
IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
DRIVER = Path(__file__).resolve().parent / "krita_driver"
NEEDED = ("krita", "xvfb-run", "xauth")


def require_krita() -> None:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if not IMPORTER.exists():
        missing.append(str(IMPORTER))
    if missing:
        message = (f"real-Krita test needs {', '.join(missing)} "
                   "(apt-get install -y krita python3-pyqt5 xvfb xauth)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def make_image(path: Path, width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)),
                    rng.integers(0, 256, (height, width))], axis=2)
    alpha = 96 + (x + y) % 160  # partly transparent, never fully: colour stays defined
    rgba = np.concatenate([rgb, alpha[..., None]], axis=2).astype(np.uint8)
    PILImage.fromarray(rgba, "RGBA").save(path)
    return rgba


def make_profile(home: Path, zip_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "XDG_", "BLIND_UPSCALE_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"), XDG_CACHE_HOME=str(home / ".cache"),
               XDG_RUNTIME_DIR=str(home / "run"))
    (home / "run").mkdir(parents=True, mode=0o700)
    config = home / ".config"
    config.mkdir(parents=True)
    (config / "kritarc").write_text("[python]\nenable_blind_upscale=true\nenable_blind_upscale_test_driver=true\n")
    (config / "kritadisplayrc").write_text("[General]\nOpenGLRenderer=none\n")
    resources = home / ".local" / "share" / "krita"
    resources.mkdir(parents=True)
    imported = subprocess.run(["python3", str(IMPORTER), str(zip_path), str(resources)],
                              capture_output=True, text=True, timeout=60)
    assert "Imported plugin: Blind Upscale" in imported.stdout, imported.stdout + imported.stderr
    pykrita = resources / "pykrita"
    shutil.copy(DRIVER / "blind_upscale_test_driver.desktop", pykrita)
    shutil.copytree(DRIVER / "blind_upscale_test_driver", pykrita / "blind_upscale_test_driver")
    return env


def test_packaged_plugin_in_real_krita(tmp_path):
    require_krita()
    dist = tmp_path / "dist"
    (zip_path,) = build_packages(ROOT, dist)
    work = tmp_path / "work"
    work.mkdir()
    small = make_image(work / "small.png", 24, 16, seed=1)
    make_image(work / "large.png", 640, 640, seed=2)
    env = make_profile(tmp_path / "home", zip_path)
    env["BLIND_UPSCALE_TEST_DIR"] = str(work)

    cli_out = work / "cli.png"
    cli = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "core", "upscale",
                          str(work / "small.png"), str(cli_out), "--model", "bicubic"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr

    log = tmp_path / "krita.log"
    with open(log, "w") as out:
        run = subprocess.run(["timeout", "170", "xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
                              "krita", "--nosplash"], env=env, stdout=out, stderr=subprocess.STDOUT,
                             timeout=180)
    report_path = work / "report.json"
    engine_log = tmp_path / "home" / ".local" / "share" / "krita" / "blind_upscale_engine.log"
    context = (f"exit {run.returncode}\nkrita log tail:\n{log.read_text(errors='replace')[-3000:]}\n"
               f"engine log tail:\n{engine_log.read_text(errors='replace')[-2000:] if engine_log.exists() else '-'}")
    assert report_path.exists(), context
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"] + "\n" + context
    print(json.dumps(report["steps"]))

    # 1. default settings, no dialog: canvas x4, a new layer equal to the CLI's output
    assert report["small_state"] == "done", report["small_status"]
    assert report["small_before"]["size"] == [24, 16]
    assert report["small_after"]["size"] == [96, 64]
    layers = report["small_after"]["layers"]
    assert len(layers) == 2 and layers[0] == report["small_before"]["layers"][0]
    assert report["new_layer"]["name"] == layers[1] and "4" in layers[1]
    assert report["new_layer"]["type"] == "paintlayer"
    bgra = np.frombuffer((work / "new_layer.bgra").read_bytes(), np.uint8).reshape(64, 96, 4)
    got = bgra[..., [2, 1, 0, 3]]
    expected = np.asarray(PILImage.open(cli_out).convert("RGBA"))
    assert got.shape == expected.shape == (64, 96, 4)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() == 0, f"max difference {diff.max()}, {np.count_nonzero(diff)} samples differ"
    assert small.shape == (16, 24, 4)

    # 2. engine killed mid-job: the document is as it was, the panel says what happened
    assert report["killed_at"]["state"] == "running"
    assert report["large_state"] == "failed"
    assert "stopped unexpectedly" in report["large_status"], report["large_status"]
    assert report["large_after"] == report["large_before"]
