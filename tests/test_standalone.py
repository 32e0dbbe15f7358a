"""The standalone editor end to end: real window, real panel, the real engine in-process.

Each test makes its own image; nothing from /work/shared is read.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image as PILImage

from core.registry import get_model
from plugin.standalone.document import Document
from plugin.standalone.local_engine import LocalEngine
from plugin.standalone.window import EditorWindow
from protocol.errors import EngineError
from protocol.host import Rect
from ui.qt import QApplication, QMessageBox, QPoint, Qt, QTimer
from ui.settings import Settings
from conftest import wait_for_job

def _weights_present(model_id: str) -> bool:
    try:
        return get_model(model_id).weights != "missing"
    except Exception:  # a model not registered yet has no weights either
        return False


RUNNABLE = [m for m in ("bicubic", "kdsr") if _weights_present(m)]


def make_png(path, width=48, height=40, deep=False):
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / (width - 1), y / (height - 1), ((x // 6 + y // 6) % 2) * 0.8 + 0.1], -1)
    if deep:
        import cv2
        cv2.imwrite(str(path), (rgb[..., ::-1] * 65535).astype(np.uint16))
    else:
        PILImage.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path



@pytest.fixture
def engine():
    client = LocalEngine()
    yield client
    client.close()


@pytest.fixture
def editor(qtbot, tmp_path, engine):
    settings = Settings(tmp_path / "settings.json")
    settings.set("live_preview", False)
    settings.set("tile", 0)
    window = EditorWindow(Document.from_file(make_png(tmp_path / "in.png")), engine, settings)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.panel.models_loaded, timeout=10000):
        pass
    yield window
    window.undo_stack.setClean()  # closing at teardown must not stop on the "save changes?" question


def drag_select(qtbot, canvas, start, end):
    """Drag the selection tool from one document point to another with real mouse events."""
    def widget_point(x, y):
        return QPoint(round(canvas.offset.x() + x * canvas.zoom), round(canvas.offset.y() + y * canvas.zoom))

    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=widget_point(*start))
    qtbot.mouseMove(canvas, widget_point(*end))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=widget_point(*end))


def pick(window, model_id):
    combo = window.panel.method_section.model_combo
    combo.setCurrentIndex(combo.findData(model_id))
    assert window.panel.settings.model == model_id


@pytest.mark.parametrize("model_id", RUNNABLE)
def test_select_upscale_undo(qtbot, editor, model_id):
    pick(editor, model_id)
    assert editor.canvas.zoom >= 2  # the small image is fitted into the view, enlarged
    drag_select(qtbot, editor.canvas, (8.5, 4.5), (31.5, 23.5))
    assert editor.document.selection == Rect(8, 4, 24, 20)
    with qtbot.waitSignal(editor.panel.job_finished, timeout=60000) as finished:
        editor.upscale_action.trigger()
    assert finished.args == ["done"], editor.panel.status_label.text()
    layers = editor.document.layers
    assert len(layers) == 2
    result = layers[-1]
    assert (result.raw.width, result.raw.height) == (24 * 4, 20 * 4)
    assert (result.x, result.y, result.pixel_size) == (8 * 4, 4 * 4, 1)
    assert (editor.document.width, editor.document.height) == (48 * 4, 40 * 4)
    assert editor.layers.count() == 2
    assert "s." in editor.panel.status_label.text()  # "<model> on cpu: 0.3 s."

    out = editor.document.path.with_name("out.png")
    assert editor.save_file(out)
    saved = np.asarray(PILImage.open(out))
    assert saved.shape == (160, 192, 3)  # the grown canvas, alpha dropped: every layer is opaque
    region = saved[16:16 + 80, 32:32 + 96]
    assert np.array_equal(region, np.frombuffer(result.raw.data, np.uint8).reshape(80, 96, 3))

    assert editor.undo_action.isEnabled() and editor.undo_action.text().startswith("&Undo Blind Upscale")
    editor.undo_action.trigger()
    assert len(editor.document.layers) == 1
    assert (editor.document.width, editor.document.height) == (48, 40)
    assert editor.document.layers[0].pixel_size == 1
    editor.redo_action.trigger()
    assert editor.document.layers[-1] is result


def test_cancel_leaves_nothing(qtbot, editor, engine):
    pick(editor, "bicubic")
    editor.panel.settings.set("tile", 16)
    with qtbot.waitSignal(editor.panel.job_finished, timeout=30000) as finished:
        editor.upscale_action.trigger()
        assert not editor.layers.isEnabled() and not editor.undo_action.isEnabled()
        editor.panel.run_section.cancel_button.click()
    assert finished.args == ["cancelled"]
    assert len(editor.document.layers) == 1 and editor.layers.isEnabled()
    assert editor.undo_stack.count() == 0
    assert "Cancelled" in editor.panel.status_label.text()


def test_engine_cancels_running_and_queued_jobs(engine):
    from protocol.raw_image import RawImage

    big = RawImage(512, 512, 3, "u8", bytes(512 * 512 * 3))
    running = engine.submit(big, {"model": "bicubic", "tile": 16, "overlap": 2})
    queued = engine.submit(big, {"model": "bicubic", "tile": 16, "overlap": 2})
    engine.cancel(running)
    engine.cancel(queued)
    wait_for_job(engine, running)
    assert engine.status(running)["state"] == "cancelled"
    assert engine.status(queued)["state"] == "cancelled"
    with pytest.raises(EngineError):
        engine.result(running)


def test_engine_errors_are_plain_sentences(engine):
    from protocol.raw_image import RawImage

    image = RawImage(8, 8, 3, "u8", bytes(8 * 8 * 3))
    job = engine.submit(image, {"model": "no-such-model"})
    status = wait_for_job(engine, job)
    assert status["state"] == "failed"
    assert status["error"].startswith("Unknown model 'no-such-model'") and status["error"].endswith(".")
    with pytest.raises(EngineError, match="^Region .* is empty"):
        engine.submit(image, {"model": "bicubic", "region": [0, 0, 0, 4]})


def test_sixteen_bit_kept_through_upscale_and_save(qtbot, tmp_path, engine):
    settings = Settings(tmp_path / "settings.json")
    settings.set("live_preview", False)
    window = EditorWindow(Document.from_file(make_png(tmp_path / "deep.png", 20, 16, deep=True)), engine, settings)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.panel.models_loaded, timeout=10000):
        pass
    pick(window, "bicubic")
    assert window.document.active.raw.dtype == "u16"
    with qtbot.waitSignal(window.panel.job_finished, timeout=30000):
        window.panel.run_section.run_button.click()
    assert window.document.active.raw.dtype == "u16"
    assert window.save_file(tmp_path / "out.png")
    from core.image_io import load_image
    saved = load_image(tmp_path / "out.png")
    assert saved.bit_depth == 16 and (saved.width, saved.height) == (80, 64)
    samples = np.round(saved.pixels * 65535).astype(np.int64)
    assert np.mean(samples % 257 != 0) > 0.5  # 8-bit data widened to 16 bits would be multiples of 257


def test_zoom_keeps_the_view_centre_and_a_click_clears_the_selection(qtbot, editor):
    canvas = editor.canvas
    before = canvas.view_center()
    canvas.zoom_in()
    canvas.zoom_in()
    assert abs(canvas.view_center()[0] - before[0]) <= 1 and abs(canvas.view_center()[1] - before[1]) <= 1
    drag_select(qtbot, canvas, (2.5, 2.5), (10.5, 10.5))
    assert editor.document.selection == Rect(2, 2, 9, 9)
    drag_select(qtbot, canvas, (5.5, 5.5), (5.5, 5.5))
    assert editor.document.selection is None


def test_closing_with_an_unsaved_result_asks_first(qtbot, editor):
    pick(editor, "bicubic")
    with qtbot.waitSignal(editor.panel.job_finished, timeout=30000):
        editor.upscale_action.trigger()
    answers = []

    def answer(button):
        box = QApplication.activeModalWidget()
        answers.append(box.text())
        box.button(button).click()

    QTimer.singleShot(200, lambda: answer(QMessageBox.StandardButton.Cancel))
    assert not editor.close()
    assert editor.isVisible() and len(editor.document.layers) == 2
    QTimer.singleShot(200, lambda: answer(QMessageBox.StandardButton.Discard))
    assert editor.close()
    assert answers == ["Save the changes to in.png?"] * 2
