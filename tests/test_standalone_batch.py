"""The standalone editor's File → Batch…: the panel's settings over a folder, through core.batch."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from conftest import gradient_pixels
from core.image_io import Image, image_size, save_image
from plugin.standalone.batch_dialog import BatchDialog, batch_request
from plugin.standalone.document import Document
from plugin.standalone.local_engine import LocalEngine
from plugin.standalone.window import EditorWindow
from ui.settings import Settings


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "in"
    (images / "sub").mkdir(parents=True)
    save_image(Image(gradient_pixels(10, 12, 3), 8), images / "a.png")
    save_image(Image(gradient_pixels(9, 7, 4), 16), images / "sub" / "b.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return images


def test_batch_menu_runs_the_panel_settings_over_a_folder(qtbot, tmp_path, folder):
    engine = LocalEngine()
    settings = Settings(tmp_path / "settings.json")
    settings.set("live_preview", False)
    settings.set("model", "bicubic")
    window = EditorWindow(Document.from_file(folder / "a.png"), engine, settings)
    qtbot.addWidget(window)
    window.show()
    try:
        with qtbot.waitSignal(window.panel.models_loaded, timeout=60000):
            pass
        dialog = window.batch_dialog()
        assert dialog is not None and dialog.request["model"] == "bicubic"
        dialog.input_edit.setText(str(folder))
        dialog.output_edit.setText(str(tmp_path / "out"))
        dialog.recursive.setChecked(True)
        with qtbot.waitSignal(dialog.ended, timeout=60000):
            dialog.start_button.click()
        assert dialog.summary.done == 2 and dialog.summary.failed == 1
        assert dialog.failures.count() == 1 and "broken.png" in dialog.failures.item(0).text()
        assert image_size(tmp_path / "out" / "a.png") == (48, 40)
        assert image_size(tmp_path / "out" / "sub" / "b.png") == (28, 36)
        assert dialog.status.text().startswith("2 done, 0 skipped, 1 failed of 3")
        with qtbot.waitSignal(dialog.ended, timeout=60000):  # again: the finished ones are skipped
            dialog.start_button.click()
        assert (dialog.summary.done, dialog.summary.skipped) == (0, 2)
        dialog.close()
    finally:
        window.undo_stack.setClean()
        engine.close()


def test_a_missing_folder_is_said_in_the_dialog(qtbot, tmp_path):
    dialog = BatchDialog({"model": "bicubic", "scale": 4})
    qtbot.addWidget(dialog)
    dialog.input_edit.setText(str(tmp_path / "nowhere"))
    dialog.output_edit.setText(str(tmp_path / "out"))
    dialog.start_button.click()
    assert dialog.status.text().startswith("Cannot start: ") and "nowhere" in dialog.status.text()
    assert not dialog.running and not (tmp_path / "out").exists()


def test_boxes_of_the_open_image_are_not_used_for_other_images():
    request = {"model": "metaf2n", "region": [0, 0, 4, 4], "support": [1, 1, 2, 2], "faces": [[0, 0, 3, 3]]}
    assert batch_request(request) == {"model": "metaf2n", "faces": "auto"}
