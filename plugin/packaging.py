"""`python3 build.py package`: the Krita plug-in zip, importable with Krita's
Tools > Scripts > Import Python Plugin from File.

Krita's importer finds a plug-in through `<name>.desktop` and needs the entries `<name>/` and
`<name>/__init__.py` in the zip, so directory entries are written explicitly (a zip with files
only is refused with "No plugins found"). The zip carries the panel (ui/), the shared stdlib
package (protocol/: raw images, the engine client, the host interface) and the engine launcher
(plugin/engine_process.py), which Krita's Python runs with the standard library and Qt, plus
`engine.json` naming the venv python of the tree it was built from, so the plug-in starts its
engine with no further set-up.

The GIMP 3 plug-in is a folder, `blind-upscale/`, to copy into GIMP's `plug-ins/` folder: GIMP runs
`blind-upscale/blind-upscale.py` with its own Python, which finds beside it the same shared code
(protocol/, plugin/engine_process.py, and ui/request.py, the panel's Qt-free request rules) and
the same `engine.json`.
"""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from plugin.engine_process import project_python
from protocol.files import atomic_write

PLUGIN = "blind_upscale"
ZIP_NAME = "blind_upscale-krita.zip"
PACKAGES = ("ui", "protocol")
"""Top-level packages copied whole into the plug-in folder, which goes on Krita's sys.path."""
SHARED_FILES = ("plugin/engine_process.py",)
PLUGIN_PACKAGE_INIT = '"""The part of plugin/ the editor plug-ins need: the engine launcher."""\n'
GIMP_PLUGIN = "blind-upscale"
GIMP_SHARED_FILES = ("ui/__init__.py", "ui/request.py")
"""The Qt-free part of ui/ the GIMP plug-in uses; the rest of ui/ needs Qt, which GIMP lacks."""


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def shared_files(root: Path, packages: tuple[str, ...], files: tuple[str, ...]) -> dict[str, bytes]:
    """The shared code a plug-in carries, by path relative to the plug-in folder: whole `packages`,
    single `files`, plugin/engine_process.py as the package `plugin`, and engine.json."""
    shared = {}
    for package_name in packages:
        for path in _python_files(root / package_name):
            shared[path.relative_to(root).as_posix()] = path.read_bytes()
    for name in files + SHARED_FILES:
        shared[name] = (root / name).read_bytes()
    shared["plugin/__init__.py"] = PLUGIN_PACKAGE_INIT.encode("utf-8")
    engine = {"python": str(project_python(root)), "root": str(root)}
    shared["engine.json"] = (json.dumps(engine, indent=2) + "\n").encode("utf-8")
    return shared


def krita_zip_entries(root: Path) -> dict[str, bytes]:
    """Zip path -> content; folders end with "/" and have no content."""
    root = Path(root).resolve()
    source = root / "plugin" / "krita"
    entries: dict[str, bytes] = {}

    def add_file(name: str, data: bytes) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]) + "/", b"")
        entries[name] = data

    add_file(f"{PLUGIN}.desktop", (source / f"{PLUGIN}.desktop").read_bytes())
    package = source / PLUGIN
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            add_file(f"{PLUGIN}/{path.relative_to(package).as_posix()}", path.read_bytes())
    for name, data in shared_files(root, PACKAGES, ()).items():
        add_file(f"{PLUGIN}/{name}", data)
    return entries


def build_krita_zip(root: Path, dist: Path) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / ZIP_NAME
    with atomic_write(target) as partial, \
            zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(krita_zip_entries(root).items()):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            if name.endswith("/"):
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            else:
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    return target


def build_gimp_folder(root: Path, dist: Path) -> Path:
    """`dist/blind-upscale/`: the GIMP 3 plug-in folder, replaced whole (a half-written folder is
    never left under the final name)."""
    root = Path(root).resolve()
    target = Path(dist) / GIMP_PLUGIN
    partial = Path(dist) / f".{GIMP_PLUGIN}.{os.getpid()}.part"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        files = {f"{GIMP_PLUGIN}.py": (root / "plugin" / "gimp" / GIMP_PLUGIN / f"{GIMP_PLUGIN}.py").read_bytes()}
        files.update(shared_files(root, ("protocol",), GIMP_SHARED_FILES))
        for name, data in files.items():
            path = partial / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (partial / f"{GIMP_PLUGIN}.py").chmod(0o755)  # GIMP runs the file itself (#! python3)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def build_packages(root: Path, dist: Path) -> list[Path]:
    """Write the Krita plug-in zip and the GIMP plug-in folder into `dist`; returns the paths written."""
    Path(dist).mkdir(parents=True, exist_ok=True)
    return [build_krita_zip(Path(root), Path(dist)), build_gimp_folder(Path(root), Path(dist))]
