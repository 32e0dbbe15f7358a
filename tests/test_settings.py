"""Panel settings: saved as JSON at once, reloaded, bad files and bad values never lose the rest."""
from __future__ import annotations

import json

import pytest

from ui.settings import Settings, default_path


def test_changes_are_saved_and_announced(qtbot, tmp_path):
    path = tmp_path / "deep" / "settings.json"
    settings = Settings(path)
    with qtbot.waitSignal(settings.changed) as changed:
        settings.set("engine_url", "http://gpu-box:8765")
    assert changed.args == ["engine_url"]
    assert json.loads(path.read_text())["engine_url"] == "http://gpu-box:8765"
    settings.set("noise", 3.0)
    assert Settings(path).noise == 1.0  # dials clamp to 0..1
    with pytest.raises(ValueError):
        settings.set("device", "tpu")


def test_a_damaged_file_keeps_what_it_can(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model": "kdsr", "device": "tpu", "tile": "big", "auto_faces": "yes",
                                "unknown": 1}))
    settings = Settings(path)
    assert (settings.model, settings.device, settings.tile, settings.auto_faces) == ("kdsr", "auto", 256, True)
    path.write_text("{not json")
    broken = Settings(path)
    assert broken.model == "bicubic" and "unreadable" in broken.load_error


def test_location_is_the_app_data_folder_or_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv("BLIND_UPSCALE_SETTINGS", raising=False)
    assert default_path().parts[-2:] == ("blind-upscale", "settings.json")
    monkeypatch.setenv("BLIND_UPSCALE_SETTINGS", str(tmp_path / "mine.json"))
    assert default_path() == tmp_path / "mine.json"
