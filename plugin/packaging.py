"""`python3 build.py package`: the Krita plug-in zip, importable with Krita's
Tools > Scripts > Import Python Plugin from File.

Krita's importer finds a plug-in through `<name>.desktop` and needs the entries `<name>/` and
`<name>/__init__.py` in the zip, so directory entries are written explicitly (a zip with files
only is refused with "No plugins found"). The zip carries the panel (ui/), the shared stdlib
package (protocol/: raw images, the engine client, the host interface) and the engine launcher
(plugin/engine_process.py), which Krita's Python runs with the standard library and Qt, plus
`engine.json` naming the venv python of the tree it was built from, so the plug-in starts its
engine with no further set-up.

No GIMP folder is written: GIMP 3 cannot be installed on this Debian 12 base (docs/krita.md, "Host facts"),
so a GIMP adapter could not be run or tested here.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from plugin.engine_process import project_python
from protocol.files import atomic_write

PLUGIN = "blind_upscale"
ZIP_NAME = "blind_upscale-krita.zip"
PACKAGES = ("ui", "protocol")
"""Top-level packages copied whole into the plug-in folder, which goes on Krita's sys.path."""
SHARED_FILES = ("plugin/engine_process.py",)
PLUGIN_PACKAGE_INIT = '"""The part of plugin/ the Krita plug-in needs: the engine launcher."""\n'


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


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
    for package_name in PACKAGES:
        for path in _python_files(root / package_name):
            add_file(f"{PLUGIN}/{path.relative_to(root).as_posix()}", path.read_bytes())
    add_file(f"{PLUGIN}/plugin/__init__.py", PLUGIN_PACKAGE_INIT.encode("utf-8"))
    for name in SHARED_FILES:
        add_file(f"{PLUGIN}/{name}", (root / name).read_bytes())
    engine = {"python": str(project_python(root)), "root": str(root)}
    add_file(f"{PLUGIN}/engine.json", (json.dumps(engine, indent=2) + "\n").encode("utf-8"))
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


def build_packages(root: Path, dist: Path) -> list[Path]:
    """Write the Krita plug-in zip into `dist`; returns the paths written."""
    return [build_krita_zip(Path(root), Path(dist))]
