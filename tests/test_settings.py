"""Panel settings: saved as JSON at once, reloaded, bad files and bad values never lose the rest."""
from __future__ import annotations

import json

import pytest

from protocol.client import PREFERRED_MODELS
from protocol.settings_file import read_settings, settings_path
from ui.settings import BY_NAME, SETTINGS, Settings, default_path


def test_changes_are_saved_and_announced(qtbot, tmp_path):
    path = tmp_path / "deep" / "settings.json"
    settings = Settings(path)
    with qtbot.waitSignal(settings.changed) as changed:
        settings.set("engine_url", "http://gpu-box:8765")
    assert changed.args == ["engine_url"]
    assert json.loads(path.read_text())["engine_url"] == "http://gpu-box:8765"
    settings.set_dial("noise", 0.75)
    settings.set_dial("blur", None)
    assert Settings(path).dials == {"noise": 0.75, "blur": None}  # None: the engine estimates it
    with pytest.raises(ValueError):
        settings.set("device", "tpu")


def test_a_damaged_file_keeps_what_it_can(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model": "cmdsr", "device": "tpu", "tile": "big", "auto_faces": "yes",
                                "unknown": 1}))
    settings = Settings(path)
    assert (settings.model, settings.device, settings.tile, settings.auto_faces) == ("cmdsr", "auto", 256, True)
    path.write_text("{not json")
    broken = Settings(path)
    assert broken.model == PREFERRED_MODELS[0] and "unreadable" in broken.load_error


def test_location_is_the_app_data_folder_or_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv("BLIND_UPSCALE_SETTINGS", raising=False)
    assert default_path().parts[-2:] == ("blind-upscale", "settings.json")
    monkeypatch.setenv("BLIND_UPSCALE_SETTINGS", str(tmp_path / "mine.json"))
    assert default_path() == tmp_path / "mine.json"


def test_an_older_file_keeps_its_dials_and_stays_readable(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model": "mmrealsr", "blur": 0.3, "noise": 0.5}))
    settings = Settings(path)
    assert settings.dials == {"blur": 0.3, "noise": 0.5}
    settings.set("model", "kdsr")
    stored = json.loads(path.read_text())
    assert stored["dials"] == {"blur": 0.3, "noise": 0.5} and "blur" not in stored


def test_every_setting_carries_its_label_and_choices_their_tooltips():
    assert all(setting.label for setting in SETTINGS)
    uses = BY_NAME["selection_use"]
    assert set(uses.choice_descs) == set(uses.choices) == {"area", "support", "face"}


def test_the_file_with_the_engine_token_is_readable_by_the_owner_only(tmp_path):
    """Issue 21, defect 10: the remote engine's token was saved with mode 0644."""
    import os

    path = tmp_path / "settings.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    old_umask = os.umask(0o022)
    try:
        Settings(path).set("engine_token", "a-secret-token-for-the-remote-engine")
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o600


def test_hosts_without_qt_find_and_read_the_same_file(monkeypatch, tmp_path):
    """The GIMP plug-in reads the panel's file through protocol/settings_file.py, without Qt."""
    monkeypatch.delenv("BLIND_UPSCALE_SETTINGS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert settings_path() == tmp_path / "data" / "blind-upscale" / "settings.json"
    assert default_path() == settings_path()  # Qt's GenericDataLocation follows XDG_DATA_HOME too
    assert read_settings(settings_path()) == {}
    Settings(settings_path()).set("engine_mode", "remote")
    assert read_settings()["engine_mode"] == "remote"
    settings_path().write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        read_settings()
