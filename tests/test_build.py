"""build.py: the venv stamp, pyproject reading, command dispatch (no pip is run here)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def build(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("build_script", ROOT / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_bytes((ROOT / "pyproject.toml").read_bytes())
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "VENV", venv)
    monkeypatch.setattr(module, "STAMP", venv / ".blind-upscale-stamp")
    monkeypatch.setattr(module, "PYPROJECT", pyproject)
    monkeypatch.setattr(module.os, "name", "posix")
    return module


def _no_subprocess(monkeypatch, module):
    calls = []
    monkeypatch.setattr(module.subprocess, "run", lambda *a, **k: calls.append(a) or pytest.fail(
        f"unexpected subprocess {a}"))
    return calls


def test_current_stamp_skips_pip_entirely(build, monkeypatch, capsys):
    build.STAMP.write_text(json.dumps(build.wanted_stamp({"test"})))
    _no_subprocess(monkeypatch, build)
    assert build.ensure_venv({"test"}) == build.venv_python()
    assert build.ensure_venv(set()) == build.venv_python()  # fewer extras: still current
    assert "skipping pip" in capsys.readouterr().out


def test_stamp_goes_stale_when_pyproject_extras_or_python_change(build, monkeypatch):
    build.STAMP.write_text(json.dumps(build.wanted_stamp(set())))
    assert build.stamp_is_current(set())
    assert not build.stamp_is_current({"test"})
    with monkeypatch.context() as patch:
        patch.setattr(build.platform, "python_version", lambda: "3.99.0")
        assert not build.stamp_is_current(set())
    assert build.stamp_is_current(set())
    build.PYPROJECT.write_text(build.PYPROJECT.read_text() + "\n# changed\n")
    assert not build.stamp_is_current(set())


def test_missing_or_broken_stamp_is_not_current(build):
    assert not build.stamp_is_current(set())
    build.STAMP.write_text("{not json")
    assert not build.stamp_is_current(set())


def test_failed_step_is_named(build, monkeypatch):
    class Result:
        returncode = 3

    monkeypatch.setattr(build.subprocess, "run", lambda *a, **k: Result())
    with pytest.raises(build.StepFailed, match="step 'install dependencies' failed: exit status 3"):
        build.ensure_venv(set())
    assert not build.STAMP.exists()


def test_pyproject_is_read_the_same_with_and_without_tomllib(build):
    parsed = build.read_pyproject()
    fallback = build._read_string_arrays(build.PYPROJECT.read_text())
    assert parsed == fallback
    assert any(d.startswith("torch") for d in parsed["dependencies"])
    assert any(d.startswith("facexlib") for d in parsed["no-deps"])
    assert "pytest" in " ".join(parsed["extras"]["test"])
    assert not any(d.startswith("opencv-python>") or d == "opencv-python" for d in parsed["dependencies"])


def test_package_without_packaging_module_gives_a_clear_message(build, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "plugin.packaging", None)
    assert build.main(["package"]) == 1
    assert "plugin/packaging.py is missing" in capsys.readouterr().err


def test_setup_only_makes_the_venv_and_names_its_python(build, monkeypatch, capsys):
    made = []
    monkeypatch.setattr(build, "ensure_venv", lambda extras=frozenset(): made.append(extras) or build.venv_python())
    assert build.main(["setup"]) == 0
    assert made == [frozenset()] and capsys.readouterr().out.strip() == str(build.venv_python())


def test_unknown_command_prints_usage(build, capsys):
    assert build.main(["frobnicate"]) == 2
    assert "build.py run" in capsys.readouterr().err


def test_headless_run_picks_the_best_model_with_weights(build, monkeypatch):
    class Listed:
        returncode = 0
        stdout = json.dumps([{"id": "bicubic", "weights": "bundled"}, {"id": "kdsr", "weights": "bundled"},
                             {"id": "mmrealsr", "weights": "missing"}])
        stderr = ""

    monkeypatch.setattr(build.subprocess, "run", lambda *a, **k: Listed())
    assert build.best_model(Path("python"), {}) == "kdsr"


def test_sample_image_is_shipped():
    spec = importlib.util.spec_from_file_location("build_script", ROOT / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from core.image_io import load_image

    sample = load_image(module.SAMPLE)
    assert (sample.width, sample.height, sample.channels) == (256, 256, 3)


def test_venv_from_another_python_is_recreated(build, monkeypatch):
    (build.VENV / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.2.1\n")
    assert build.venv_python_version() == "3.2.1"
    steps = []

    class Result:
        returncode = 1

    def fake_run(command, **kwargs):
        steps.append(command)
        return Result()

    monkeypatch.setattr(build.subprocess, "run", fake_run)
    with pytest.raises(build.StepFailed, match="recreate .venv"):
        build.ensure_venv(set())
    assert "--clear" in steps[0]


def test_pyenv_shim_additions_are_taken_off_path_for_children(build, monkeypatch):
    root = "/home/u/.pyenv"
    monkeypatch.setenv("PYENV_ROOT", root)
    monkeypatch.setenv("PYENV_HOOK_PATH", f"{root}/pyenv.d")
    monkeypatch.setenv("PATH", f"{root}/versions/3.11.7/bin:{root}/libexec:{root}/plugins/python-build/bin:"
                               f"{root}/plugins/pyenv-virtualenv/shims:{root}/shims:/usr/bin")
    env = build.child_env(EXTRA="1")
    assert env["PATH"] == f"{root}/plugins/pyenv-virtualenv/shims:{root}/shims:/usr/bin"
    assert env["EXTRA"] == "1" and "PYENV_HOOK_PATH" not in env
    monkeypatch.delenv("PYENV_HOOK_PATH")
    assert build.child_env()["PATH"].startswith(f"{root}/versions/3.11.7/bin")  # no shim: untouched
