"""The GIMP 3 plug-in in real GIMP: gimp-console-3.0 in the Debian 13 chroot that
tests/gimp/make_chroot.sh builds (.ci/run builds it; it is cached between runs on one machine).

The engine runs on the host side (this venv) and the plug-in reaches it over 127.0.0.1, as a
remote engine named in the settings file: a plain chroot shares the host's network. One GIMP
session runs every case of tests/gimp/driver.py; the tests below check what it recorded against
the CLI's output for the same input. With CI set, a missing chroot fails instead of skipping.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.image_io import Image, load_image, save_image
from plugin.engine_process import EngineProcess
from plugin.packaging import build_gimp_folder
from protocol.client import EngineClient, run_job
from protocol.raw_image import RawImage
from tests.test_face_paths import FACE_BOX, face_photo, restorer_weights

ROOT = Path(__file__).resolve().parents[1]
CHROOT = Path(os.environ.get("BLIND_UPSCALE_GIMP_CHROOT", "/var/cache/blind-upscale/trixie-gimp"))
READY = CHROOT / ".blind-upscale-ready"
PROFILE_TEMPLATE = "/opt/blind-upscale/gimp-profile"  # inside the chroot: a profile GIMP has warmed
SELECTED = (8, 4, 20, 12)  # x, y, w, h of the rectangle selection in the 40x32 image


def unavailable() -> str | None:
    if not READY.is_file():
        return f"no GIMP chroot at {CHROOT}: build it with tests/gimp/make_chroot.sh (as root)"
    if os.geteuid() != 0:
        return "running GIMP in its chroot needs root"
    return None


def pattern(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Smooth gradients plus texture, so bicubic and a learnt model give different results."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [x / width, y / height, 0.5 + 0.4 * np.sin(x / 3.0) * np.cos(y / 4.0), 0.3 + 0.7 * x / width]
    pixels = np.stack(planes[:channels], axis=2) * 0.8 + 0.2 * rng.random((height, width, channels))
    return np.clip(pixels, 0.0, 1.0).astype(np.float32)


def start_cli(source: Path, target: Path, model: str, *options: str) -> tuple[subprocess.Popen, Path]:
    """`python -m core upscale` started; `finish_cli` collects it (they run beside the engine's start)."""
    command = [sys.executable, "-m", "core", "upscale", str(source), str(target), "--model", model, *options]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), target


def finish_cli(started: tuple[subprocess.Popen, Path]) -> Image:
    process, target = started
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return load_image(target)


class ChrootSession:
    """/proc and /dev mounted in the chroot for as long as GIMP runs, and a work folder in its /tmp."""

    def __init__(self):
        self.work = Path(tempfile.mkdtemp(prefix="blind-upscale-test-", dir=CHROOT / "tmp"))
        self.mounted: list[Path] = []

    def inside(self, path: Path) -> str:
        return "/" + str(Path(path).relative_to(CHROOT))

    def __enter__(self) -> ChrootSession:
        for target, command in ((CHROOT / "proc", ["mount", "-t", "proc", "proc"]),
                                (CHROOT / "dev", ["mount", "--bind", "/dev"])):
            subprocess.run(command + [str(target)], check=True)
            self.mounted.append(target)
        return self

    def gimp(self, job: dict, config: Path, **env) -> list[str]:
        """The command that runs gimp-console-3.0 in the chroot on `job` (tests/gimp/driver.py),
        with the profile `config`, a bare environment and `env` added."""
        job_file = self.work / f"job-{len(list(self.work.glob('job-*.json')))}.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        shutil.copy(ROOT / "tests" / "gimp" / "driver.py", self.work / "driver.py")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": self.inside(self.work),
               "XDG_CONFIG_HOME": self.inside(config), "BLIND_UPSCALE_SETTINGS": job["settings_path"],
               "BLIND_UPSCALE_GIMP_JOB": self.inside(job_file), **env}
        return ["chroot", str(CHROOT), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                "gimp-console-3.0", "-i", "--quit", "-c", "--batch-interpreter=python-fu-eval",
                "-b", f"exec(open({self.inside(self.work / 'driver.py')!r}).read())"]

    def __exit__(self, *exc) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def dialog_screenshot(chroot: ChrootSession, config: Path, case: dict, host_dir: Path) -> dict:
    """Run the procedure interactively on an Xvfb display in the chroot, grab the screen once the
    dialog and its first preview are drawn, then end GIMP (nobody is there to press OK)."""
    xvfb = subprocess.Popen(["chroot", str(CHROOT), "Xvfb", "-displayfd", "1", "-screen", "0", "900x700x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    gimp = None
    try:
        display = ":" + xvfb.stdout.readline().strip()
        job = {"settings_path": case["settings_path"], "results": chroot.inside(chroot.work / "dialog.json"),
               "cases": [case]}
        gimp = subprocess.Popen(chroot.gimp(job, config, DISPLAY=display), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        shutil.copy(ROOT / "tests" / "gimp" / "grab_screen.py", chroot.work / "grab_screen.py")
        shot = chroot.work / "dialog.png"
        grab = subprocess.run(["chroot", str(CHROOT), "env", "-i", f"DISPLAY={display}", "python3",
                               chroot.inside(chroot.work / "grab_screen.py"), chroot.inside(shot), "240", "10"],
                              capture_output=True, text=True, timeout=300)
        assert grab.returncode == 0, grab.stderr
        saved = host_dir / "dialog.png"
        shutil.copy(shot, saved)
        return {"path": saved, "gimp_alive": gimp.poll() is None}
    finally:
        for process in (gimp, xvfb):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()


def kill_during_last_case(engine: EngineProcess, results: Path, cases: int, stop: threading.Event,
                          seen: dict) -> None:
    """Once the driver has recorded every case but the last, kill the engine as soon as it works
    on a job: the plug-in is then waiting on it."""
    while not stop.is_set():
        try:
            ready = len(json.loads(results.read_text(encoding="utf-8"))) == cases - 1
        except (OSError, ValueError):
            ready = False
        if ready and engine.client.health().get("busy"):
            seen["killed_at"] = time.monotonic()
            engine.proc.kill()
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def gimp(tmp_path_factory):
    """Runs every case in one GIMP session; yields (results by case name, CLI outputs, inputs)."""
    reason = unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    host_dir = tmp_path_factory.mktemp("gimp")
    began = time.monotonic()
    engine = EngineProcess(sys.executable, str(ROOT))
    models = host_dir / "models"  # the engine's and the CLI's: a face restorer (random weights) in it
    models.mkdir()
    restorer_weights(models)
    with ChrootSession() as chroot, pytest.MonkeyPatch.context() as env:
        env.setenv("BLIND_UPSCALE_MODELS", str(models))
        work = chroot.work
        inputs = {"rgba": (pattern(32, 40, 4, 1), 8), "rgb": (pattern(24, 32, 3, 2), 8),
                  "gray16": (pattern(32, 40, 1, 3), 16), "big": (pattern(96, 96, 3, 4), 8),
                  "face": (face_photo(), 8)}
        for name, (pixels, depth) in inputs.items():
            save_image(Image(pixels, depth), work / f"{name}.png")
        x, y, w, h = SELECTED
        save_image(Image(inputs["rgba"][0][y:y + h, x:x + w], 8), host_dir / "crop.png")
        cli = {"rgba_bicubic": start_cli(work / "rgba.png", host_dir / "rgba_bicubic.png", "bicubic"),
               "rgb_kdsr": start_cli(work / "rgb.png", host_dir / "rgb_kdsr.png", "kdsr"),
               "gray16_bicubic": start_cli(work / "gray16.png", host_dir / "gray16.png", "bicubic"),
               "area": start_cli(host_dir / "crop.png", host_dir / "area.png", "bicubic"),
               "face_plain": start_cli(work / "face.png", host_dir / "face_plain.png", "bicubic"),
               "face_restored": start_cli(work / "face.png", host_dir / "face_restored.png", "bicubic",
                                          "--restore-faces")}
        config = work / "config"
        plugins = config / "GIMP" / "3.0" / "plug-ins"
        template = CHROOT / PROFILE_TEMPLATE.lstrip("/")
        if template.is_dir():  # a warm profile: GIMP skips querying its own plug-ins again
            shutil.copytree(template, config)
        plugins.mkdir(parents=True, exist_ok=True)
        build_gimp_folder(ROOT, plugins)
        try:
            client = engine.start()
            # The first listing and the first KDSR load are slow on a cold engine and a busy CPU;
            # done here, the dialog's preview and GIMP's cases do not wait for them.
            patient = EngineClient(client.url, client.token, timeout=600)
            patient.models()
            run_job(patient, RawImage(16, 16, 3, "u8", bytes(16 * 16 * 3)), {"model": "kdsr"})
            print(f"[gimp] engine ready after {time.monotonic() - began:.1f} s")
            expected = {name: finish_cli(started) for name, started in cli.items()}
            remote = {"engine_mode": "remote", "engine_url": client.url, "engine_token": client.token}

            def case(name, image, args, fmt, **extra):
                return {"name": name, "image": chroot.inside(work / f"{image}.png"), "settings": remote,
                        "args": args, "format": fmt, "settings_path": chroot.inside(work / "settings.json"),
                        **extra}

            cases = [
                case("rgba_bicubic", "rgba", {"model": "bicubic"}, "R'G'B'A u8"),
                case("rgb_kdsr", "rgb", {"model": "kdsr"}, "R'G'B' u8"),
                case("gray16_bicubic", "gray16", {"model": "bicubic"}, "Y' u16"),
                case("float_linear", "rgba", {"model": "bicubic"}, "R'G'B'A float", precision="FLOAT_LINEAR"),
                case("area", "rgba", {"model": "bicubic", "selection-role": "area"}, "R'G'B'A u8",
                     select=["rectangle", *SELECTED]),
                case("ellipse", "rgba", {"model": "bicubic"}, "R'G'B'A u8", select=["ellipse", *SELECTED]),
                case("support", "rgba", {"model": "bicubic", "selection-role": "support"}, "R'G'B'A u8",
                     select=["rectangle", *SELECTED]),
                case("unknown_model", "rgba", {"model": "nonesuch"}, "R'G'B'A u8"),
                case("face_restored", "face", {"model": "bicubic", "restore-faces": True}, "R'G'B' u8"),
                case("killed", "big", {"model": "kdsr", "tile": 16}, "R'G'B' u8"),  # must stay last
            ]
            results_file = work / "results.json"
            job = {"settings_path": chroot.inside(work / "settings.json"),
                   "results": chroot.inside(results_file), "cases": cases}
            dialog = dialog_screenshot(chroot, config, case("dialog", "rgb", {"model": "kdsr"}, "",
                                                            run_mode="INTERACTIVE"), host_dir)
            print(f"[gimp] dialog grabbed after {time.monotonic() - began:.1f} s")
            stop, seen = threading.Event(), {}
            killer = threading.Thread(target=kill_during_last_case,
                                      args=(engine, results_file, len(cases), stop, seen), daemon=True)
            killer.start()
            started = time.monotonic()
            done = subprocess.run(chroot.gimp(job, config), capture_output=True, text=True, timeout=600)
            stop.set()
            print(f"[gimp] {len(cases)} cases in one GIMP session: {time.monotonic() - started:.1f} s")
            log = f"GIMP exit {done.returncode} after {time.monotonic() - started:.1f} s\n{done.stdout}\n{done.stderr}"
            assert results_file.is_file(), log
            results = json.loads(results_file.read_text(encoding="utf-8"))
            for record in results.values():
                if "pixels" in record:
                    record["data"] = (CHROOT / record["pixels"].lstrip("/")).read_bytes()
            results["_killed"] = seen
            results["_dialog"] = dialog
            results["_log"] = log
            yield results, expected, inputs
        finally:
            engine.stop()


def layer_pixels(record: dict, dtype, channels: int) -> np.ndarray:
    width, height = record["layers"][0]["size"]
    return np.frombuffer(record["data"], dtype=dtype).reshape(height, width, channels)


def check_success(record: dict, log: str) -> None:
    assert record["status"] == "success", (record, log)


def layer_and_cli(gimp, case: str, dtype, channels: int, cli: str | None = None, full: int = 255):
    """The record of a successful `case`, its new layer's pixels and the CLI's output for the
    same input (`cli`, default the case's name), both as integers of `full` levels."""
    results, expected, _ = gimp
    record = results[case]
    check_success(record, results["_log"])
    got = layer_pixels(record, dtype, channels).astype(int)
    return record, got, np.round(expected[cli or case].pixels * full).astype(int)


def test_whole_layer_bicubic_matches_the_cli_and_keeps_alpha(gimp):
    record, got, want = layer_and_cli(gimp, "rgba_bicubic", np.uint8, 4)
    assert record["image_size"] == [160, 128]
    top, source = record["layers"]
    assert top["name"] == "Blind Upscale ×4 (Bicubic)" and top["size"] == [160, 128] and top["offsets"] == [0, 0]
    assert source["size"] == [160, 128]  # the image was enlarged, the user's layer kept below
    assert np.abs(got - want).max() <= 1


def test_kdsr_in_gimp_matches_the_cli(gimp):
    record, got, want = layer_and_cli(gimp, "rgb_kdsr", np.uint8, 3)  # no alpha added to an RGB layer
    assert record["layers"][0]["name"] == "Blind Upscale ×4 (KDSR)"
    assert got.shape == want.shape == (96, 128, 3)
    assert np.abs(got - want).max() <= 1


def test_gray_16_bit_stays_gray_16_bit(gimp):
    record, got, want = layer_and_cli(gimp, "gray16_bicubic", np.uint16, 1, full=65535)
    assert record["precision"].startswith("u16")
    assert np.abs(got - want).max() <= 2


def test_linear_float_image_comes_back_in_float(gimp):
    results, expected, _ = gimp
    record = results["float_linear"]
    check_success(record, results["_log"])
    assert record["precision"] == "float-linear"
    got = layer_pixels(record, np.float32, 4)
    # The CLI's result is 8-bit; the float result is the same upscale before rounding.
    assert np.abs(got - expected["rgba_bicubic"].pixels).max() <= 1.0 / 255 + 1e-4


def test_area_selection_upscales_its_box_at_four_times_its_offset(gimp):
    record, got, want = layer_and_cli(gimp, "area", np.uint8, 4)
    x, y, w, h = SELECTED
    top = record["layers"][0]
    assert record["image_size"] == [160, 128]
    assert top["size"] == [w * 4, h * 4] and top["offsets"] == [x * 4, y * 4] and not top["has_mask"]
    assert np.abs(got - want).max() <= 1


def test_a_shaped_selection_becomes_the_layer_mask(gimp):
    results, _, _ = gimp
    record = results["ellipse"]
    check_success(record, results["_log"])
    x, y, w, h = SELECTED
    top = record["layers"][0]
    assert top["size"] == [w * 4, h * 4] and top["has_mask"]


def test_support_role_with_a_model_that_cannot_adapt_falls_back_to_the_area(gimp):
    """As in the panel (ui/request.py): bicubic has no support set, so the selection is the area."""
    results, _, _ = gimp
    record = results["support"]
    check_success(record, results["_log"])
    assert record["layers"][0]["size"] == [SELECTED[2] * 4, SELECTED[3] * 4]


def test_restore_faces_pastes_the_restored_face_back_as_the_cli_does(gimp):
    _, got, restored = layer_and_cli(gimp, "face_restored", np.uint8, 3)
    plain = np.round(gimp[1]["face_plain"].pixels * 255).astype(int)
    assert got.shape == restored.shape == (1280, 1280, 3)
    assert np.abs(got - restored).max() <= 1
    x, y, w, h = (4 * v for v in FACE_BOX)
    assert np.abs(got - plain)[y:y + h, x:x + w].mean() > 5  # the face was restored, not left as bicubic


def test_unknown_model_is_one_clear_error_and_changes_nothing(gimp):
    results, _, _ = gimp
    record = results["unknown_model"]
    assert record["status"] == "execution-error"
    assert "no model 'nonesuch'" in record["error"] and "bicubic" in record["error"]
    assert record["image_size"] == [40, 32] and len(record["layers"]) == 1 and not record["dirty"]


def test_engine_killed_mid_job_leaves_the_image_as_it_was(gimp):
    results, _, _ = gimp
    assert "killed_at" in results["_killed"], results["_log"]
    record = results["killed"]
    assert record["status"] == "execution-error", record
    assert "engine" in record["error"].lower()
    assert record["image_size"] == [96, 96] and len(record["layers"]) == 1 and not record["dirty"]


def test_the_dialog_shows_the_choices_and_a_preview_under_xvfb(gimp):
    """The interactive run's GimpUi dialog, drawn on Xvfb: the screen holds a window of a dialog's
    size, and it waited for the user (GIMP was still running when the screen was grabbed).
    BLIND_UPSCALE_GIMP_SCREENSHOT=FILE keeps the dialog's picture (the README's screenshot)."""
    results, _, _ = gimp
    dialog = results["_dialog"]
    assert dialog["gimp_alive"], results["_log"]
    screen = load_image(dialog["path"]).pixels[..., :3]
    rows, cols = np.nonzero(screen.max(axis=2) > 0.02)
    assert rows.size, "nothing was drawn on the screen"
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert right - left >= 300 and bottom - top >= 300, (left, top, right, bottom)
    target = os.environ.get("BLIND_UPSCALE_GIMP_SCREENSHOT")
    if target:
        save_image(Image(np.ascontiguousarray(screen[top:bottom, left:right]), 8), target)
