"""The panel's settings: declared once with their labels, observable, saved as JSON in app data.

Each `Setting` keeps its default, label, tooltip and choices together, so a widget bound to it
(ui/bind.py) needs nothing else. The file lives outside any plug-in folder (which an update
replaces): ``<generic data location>/blind-upscale/settings.json``, e.g. ``~/.local/share/blind-upscale/``
on Linux, ``%LOCALAPPDATA%/blind-upscale/`` on Windows; ``$BLIND_UPSCALE_SETTINGS`` names another file.
protocol/settings_file.py decides the location and reads the file for hosts without Qt (GIMP).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from protocol.client import PREFERRED_MODELS
from protocol.files import atomic_write
from protocol.settings_file import read_settings, settings_path
from ui.qt import QObject, QStandardPaths, Signal


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    label: str = ""
    desc: str = ""                                         # the tooltip
    choices: dict = field(default_factory=dict)            # value -> label, when only these are allowed
    choice_descs: dict = field(default_factory=dict)       # value -> tooltip
    minimum: int | None = None


SETTINGS = (
    # a fresh profile starts on the method that does best on real photos (the panel falls back to
    # the next of PREFERRED_MODELS with weights while this one has none)
    Setting("model", PREFERRED_MODELS[0], "Method"),
    Setting("configs", {}, "Variant", "The chosen configuration of each method (\"lite\", ...)"),
    Setting("scale", 4, "Scale", minimum=1),
    Setting("device", "auto", "Device", choices={"auto": "Auto", "cpu": "CPU", "cuda": "CUDA (GPU)"}),
    Setting("tile", 256, "Tile size", minimum=0),
    Setting("ensemble", False, "Self-ensemble (a little sharper, 8× slower)",
            "Upscales every tile in its 8 orientations and averages them"),
    Setting("dials", {}, "Degradation dials",
            "The method's dials by name; a dial left out or None is estimated by the engine"),
    Setting("selection_use", "area", "Use the selection as",
            choices={"area": "Area to upscale", "support": "Degradation sample", "face": "Face"},
            choice_descs={
                "area": "Upscale only the selected area; the result layer covers it.",
                "support": "Upscale the whole layer; the selection is a sample of the degradation "
                           "(blur, noise) the method adapts to. Methods that adapt to a sample: CMDSR.",
                "face": "Upscale the whole layer; the selection is a face the method learns from. "
                        "Methods that learn from faces: MetaF2N."}),
    Setting("auto_faces", True, "Detect faces automatically"),
    Setting("restore_faces", False, "Restore faces",
            "After the method, restore the faces found with the face restorer and blend them back in, "
            "with any method"),
    Setting("live_preview", True, "Live preview"),
    Setting("engine_mode", "managed", "Engine",
            choices={"managed": "Local (started by the plug-in)", "remote": "Remote (URL and token)"}),
    Setting("engine_url", "http://127.0.0.1:8765", "URL"),
    Setting("engine_token", "", "Token"),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
TILE_SIZES = (0, 128, 256, 512, 1024)
LEGACY_DIALS = ("blur", "noise")  # before `dials`, the file had one key per MM-RealSR dial


def default_path() -> Path:
    return settings_path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation))


class Settings(QObject):
    """Attribute access to the values; every change emits `changed(name)` and is saved at once."""

    changed = Signal(str)

    def __init__(self, path: Path | str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.path = Path(path) if path is not None else default_path()
        self._values = {s.name: checked(s.name, s.default) for s in SETTINGS}
        self.load_error = ""
        self._load()

    def __getattr__(self, name: str):
        values = self.__dict__.get("_values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def set(self, name: str, value) -> None:
        if name not in BY_NAME:
            raise KeyError(f"unknown setting {name!r}")
        value = checked(name, value)
        if self._values[name] == value:
            return
        self._values[name] = value
        self.save()
        self.changed.emit(name)

    def set_dial(self, name: str, value: float | None) -> None:
        """One dial's value, or None to let the engine estimate it."""
        self.set("dials", {**self.dials, name: value})

    def as_dict(self) -> dict:
        return {name: dict(value) if isinstance(value, dict) else value for name, value in self._values.items()}

    def save(self) -> None:
        """Write atomically, so a crash mid-write never leaves a truncated file, and readable by
        the owner only: it may hold the remote engine's token."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, private=True) as temp:
            temp.write_text(json.dumps(self.as_dict(), indent=2), encoding="utf-8")

    def _load(self) -> None:
        try:
            stored = read_settings(self.path)
        except ValueError as exc:
            self.load_error = f"{exc}; using defaults."
            return
        if "dials" not in stored:  # an older file: its dial values move into `dials`
            stored["dials"] = {name: stored[name] for name in LEGACY_DIALS if name in stored}
        for name, value in stored.items():
            if name in BY_NAME:
                try:
                    self._values[name] = checked(name, value)
                except (TypeError, ValueError):
                    continue  # one bad value keeps its default; the others still load


def checked(name: str, value):
    """`value` as setting `name` holds it; TypeError or ValueError when it cannot be."""
    setting = BY_NAME[name]
    kind = type(setting.default)
    if name == "dials":
        if not isinstance(value, dict):
            raise TypeError("dials must map names to numbers")
        return {str(k): None if v is None else float(v) for k, v in value.items()}
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
    else:
        value = str(value)
    if setting.choices and value not in setting.choices:
        raise ValueError(f"{name} must be one of {', '.join(setting.choices)}")
    if setting.minimum is not None and value < setting.minimum:
        raise ValueError(f"{name} must be at least {setting.minimum}")
    return value
