"""The Krita zip: the layout Krita's importer needs, and a plug-in that runs from the zip alone."""
from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from plugin.packaging import build_packages, project_python

ROOT = Path(__file__).resolve().parents[1]


def test_zip_layout(tmp_path):
    path, _ = build_packages(ROOT, tmp_path / "dist")
    assert path == tmp_path / "dist" / "blind_upscale-krita.zip"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        desktop = configparser.ConfigParser()
        desktop.read_string(archive.read("blind_upscale.desktop").decode("utf-8"))
        engine = json.loads(archive.read("blind_upscale/engine.json"))
        action = archive.read("blind_upscale/blind_upscale.action").decode("utf-8")
    assert desktop["Desktop Entry"]["X-KDE-Library"] == "blind_upscale"
    assert desktop["Desktop Entry"]["ServiceTypes"] == "Krita/PythonPlugin"
    # Krita's importer needs the folder entries themselves, not only the files in them.
    for folder in ("blind_upscale/", "blind_upscale/ui/", "blind_upscale/plugin/",
                   "blind_upscale/protocol/"):
        assert folder in names
    files = {n for n in names if not n.endswith("/")}
    for folder in {n.rsplit("/", 1)[0] + "/" for n in files if "/" in n}:
        assert folder in names, folder
    expected = {"blind_upscale/__init__.py", "blind_upscale/extension.py", "blind_upscale/host.py",
                "blind_upscale/pixels.py", "blind_upscale/plugin/__init__.py",
                "blind_upscale/plugin/engine_process.py", "blind_upscale/protocol/__init__.py",
                "blind_upscale/protocol/client.py", "blind_upscale/protocol/raw_image.py",
                "blind_upscale/protocol/host.py", "blind_upscale/protocol/errors.py",
                "blind_upscale/ui/__init__.py", "blind_upscale/ui/panel.py", "blind_upscale/ui/qt.py"}
    assert expected <= files
    assert not any("__pycache__" in n or n.endswith(".pyc") or "/core/" in n for n in names)
    assert engine == {"python": str(project_python(ROOT)), "root": str(ROOT)}
    assert '<Action name="blind_upscale">' in action and "<text>Blind Upscale</text>" in action
    assert "<shortcut>Ctrl+Alt+U</shortcut>" in action


def test_plugin_runs_from_the_zip_alone_without_numpy_or_torch(tmp_path):
    path, _ = build_packages(ROOT, tmp_path / "dist")
    pykrita = tmp_path / "pykrita"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(pykrita)
    script = (
        "import sys\n"
        "from PyQt6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "import blind_upscale, krita\n"
        "k = krita.Krita.instance()\n"
        "assert type(k.extensions[0]).__name__ == 'BlindUpscaleExtension', k.extensions\n"
        "assert k.factories[0].dock_id == 'blind_upscale_docker'\n"
        "import plugin.engine_process, protocol.client, ui.panel\n"
        f"assert plugin.engine_process.__file__.startswith({str(pykrita)!r}), plugin.engine_process.__file__\n"
        f"assert protocol.client.__file__.startswith({str(pykrita)!r}), protocol.client.__file__\n"
        f"assert ui.panel.__file__.startswith({str(pykrita)!r}), ui.panel.__file__\n"
        "heavy = sorted({'numpy', 'torch', 'core', 'PIL'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BLIND_UPSCALE_SETTINGS"] = str(tmp_path / "settings.json")
    env["PYTHONPATH"] = os.pathsep.join([str(pykrita), str(ROOT / "tests" / "mock_krita")])
    env["QT_QPA_PLATFORM"] = "offscreen"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_gimp_folder_carries_the_shared_code_and_no_qt(tmp_path):
    _, folder = build_packages(ROOT, tmp_path / "dist")
    assert folder == tmp_path / "dist" / "blind-upscale"
    script = folder / "blind-upscale.py"
    assert os.access(script, os.X_OK) and script.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"protocol/client.py", "protocol/raw_image.py", "protocol/settings_file.py", "plugin/__init__.py",
            "plugin/engine_process.py", "ui/__init__.py", "ui/request.py", "engine.json"} <= files
    # The panel's Qt modules stay out: GIMP's Python has GTK, not Qt.
    assert not {"ui/qt.py", "ui/panel.py"} & files and not any("__pycache__" in f for f in files)
    assert json.loads((folder / "engine.json").read_text()) == {"python": str(project_python(ROOT)), "root": str(ROOT)}
    # Building again replaces the folder whole and leaves nothing half-written beside it.
    (folder / "stale.py").write_text("")
    build_packages(ROOT, tmp_path / "dist")
    assert not (folder / "stale.py").exists()
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["blind-upscale", "blind_upscale-krita.zip"]


def test_gimp_plugin_shared_code_imports_without_gimp_qt_or_numpy(tmp_path):
    """The modules blind-upscale.py imports besides gi, from the folder alone, in a bare Python."""
    _, folder = build_packages(ROOT, tmp_path / "dist")
    script = ("import sys\n"
              "import plugin.engine_process, protocol.client, protocol.settings_file, ui.request\n"
              f"assert ui.request.__file__.startswith({str(folder)!r}), ui.request.__file__\n"
              "heavy = sorted({'numpy', 'torch', 'core', 'PyQt5', 'PyQt6'} & set(sys.modules))\n"
              "assert not heavy, heavy\n"
              "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(folder)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
