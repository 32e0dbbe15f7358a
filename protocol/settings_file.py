"""Where the panel's settings file lives, and reading it without Qt.

ui/settings.py owns the settings (declared, observable, written); the GIMP plug-in, which has GTK
and not Qt, reads the same file for the engine's mode, URL and token and the chosen method, so the
location is decided here with the standard library, from the same folder Qt names.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FILE_NAME = "settings.json"


def generic_data_dir() -> Path:
    """Qt's GenericDataLocation, without Qt: the per-user data folder of the platform."""
    home = Path(os.path.expanduser("~"))
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    if sys.platform == "darwin":
        return home / "Library" / "Application Support"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")


def settings_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``$BLIND_UPSCALE_SETTINGS``, else ``<data_dir>/blind-upscale/settings.json`` (data_dir:
    the caller's own GenericDataLocation, else `generic_data_dir()`)."""
    override = os.environ.get("BLIND_UPSCALE_SETTINGS")
    if override:
        return Path(override)
    return Path(data_dir or generic_data_dir()) / "blind-upscale" / FILE_NAME


def read_settings(path: str | os.PathLike | None = None) -> dict:
    """The stored values as saved (no defaults filled in); {} when there is no file yet.
    An unreadable file raises ValueError naming it, so a host can say why it ignores it."""
    path = Path(path) if path is not None else settings_path()
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Settings file {path} is unreadable ({exc})") from None
    return stored if isinstance(stored, dict) else {}
