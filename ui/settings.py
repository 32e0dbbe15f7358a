"""The panel's settings: observable, saved as JSON in the platform's app-data folder.

The file lives outside any plug-in folder (which an update replaces):
``<generic data location>/blind-upscale/settings.json``, e.g. ``~/.local/share/blind-upscale/`` on
Linux, ``%APPDATA%/blind-upscale/`` on Windows; ``$BLIND_UPSCALE_SETTINGS`` names another file.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from protocol.files import atomic_write
from ui.qt import QObject, QStandardPaths, Signal

ENGINE_MODES = ("managed", "remote")
DEVICES = ("auto", "cpu", "cuda")
SELECTION_USES = ("area", "support", "face")
TILE_SIZES = (0, 128, 256, 512, 1024)


@dataclass
class Values:
    model: str = "bicubic"
    configs: dict = field(default_factory=dict)  # model id -> chosen configuration ("lite", ...)
    scale: int = 4
    device: str = "auto"
    tile: int = 256
    ensemble: bool = False
    blur: float = 0.5
    noise: float = 0.5
    selection_use: str = "area"
    auto_faces: bool = True
    live_preview: bool = True
    engine_mode: str = "managed"
    engine_url: str = "http://127.0.0.1:8765"
    engine_token: str = ""


_CHOICES = {"device": DEVICES, "selection_use": SELECTION_USES, "engine_mode": ENGINE_MODES}


def default_path() -> Path:
    override = os.environ.get("BLIND_UPSCALE_SETTINGS")
    if override:
        return Path(override)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "blind-upscale" / "settings.json"


class Settings(QObject):
    """Attribute access to the values; every change emits `changed(name)` and is saved at once."""

    changed = Signal(str)

    def __init__(self, path: Path | str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.path = Path(path) if path is not None else default_path()
        self._values = Values()
        self.load_error = ""
        self._load()

    def __getattr__(self, name: str):
        values = self.__dict__.get("_values")
        if values is not None and name in _FIELD_TYPES:
            return getattr(values, name)
        raise AttributeError(name)

    def set(self, name: str, value) -> None:
        if name not in _FIELD_TYPES:
            raise KeyError(f"unknown setting {name!r}")
        value = _checked(name, value)
        if getattr(self._values, name) == value:
            return
        setattr(self._values, name, value)
        self.save()
        self.changed.emit(name)

    def as_dict(self) -> dict:
        return asdict(self._values)

    def save(self) -> None:
        """Write atomically, so a crash mid-write never leaves a truncated file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as temp:
            temp.write_text(json.dumps(self.as_dict(), indent=2), encoding="utf-8")

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.load_error = f"Settings file {self.path} is unreadable ({exc}); using defaults."
            return
        if not isinstance(stored, dict):
            return
        for name, value in stored.items():
            if name in _FIELD_TYPES:
                try:
                    setattr(self._values, name, _checked(name, value))
                except (TypeError, ValueError):
                    continue  # one bad value keeps its default; the others still load


_FIELD_TYPES = {f.name: type(getattr(Values(), f.name)) for f in fields(Values)}


def _checked(name: str, value):
    kind = _FIELD_TYPES[name]
    if kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in value.items()):
            raise TypeError(f"{name} must map names to names")
        value = dict(value)
    elif kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false")
    elif kind is int:
        value = int(value)
    elif kind is float:
        value = min(1.0, max(0.0, float(value)))
    else:
        value = str(value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}")
    if name == "scale" and value < 1:
        raise ValueError("scale must be at least 1")
    if name == "tile" and value < 0:
        raise ValueError("tile must be 0 (no tiling) or a size in pixels")
    return value
