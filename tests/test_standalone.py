"""The standalone editor end to end: real window, real panel, the real engine in-process.

Each test makes its own image; nothing from /work/shared is read.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
from ui.qt import QApplication, QFileDialog, QMessageBox, QPoint, QPointF, QRectF, Qt, QTimer
from ui.settings import Settings
from conftest import community_checkpoint, wait_for_job

ROOT = Path(__file__).resolve().parents[1]


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


def open_editor(qtbot, tmp_path, engine, image_path) -> EditorWindow:
    """A shown editor on `image_path` whose panel has its models, live preview off, whole-image tiles."""
    settings = Settings(tmp_path / "settings.json")
    settings.set("live_preview", False)
    settings.set("tile", 0)
    window = EditorWindow(Document.from_file(image_path), engine, settings)
    # pytest-qt closes the window before fixtures tear down: a left unsaved result must not ask then
    qtbot.addWidget(window, before_close_func=lambda w: w.undo_stack.setClean())
    window.show()
    with qtbot.waitSignal(window.panel.models_loaded, timeout=60000):  # a loaded machine is slow
        pass
    return window


@pytest.fixture
def editor(qtbot, tmp_path, engine):
    return open_editor(qtbot, tmp_path, engine, make_png(tmp_path / "in.png"))


def when_modal(act, seen: list, seconds: float = 10.0) -> None:
    """Once a modal dialog is up (polled from the event loop), note its text and let `act` answer it."""
    deadline = time.monotonic() + seconds

    def poll():
        box = QApplication.activeModalWidget()
        if box is not None:
            seen.append(box.text() if isinstance(box, QMessageBox) else box)
            act(box)
        elif time.monotonic() < deadline:
            QTimer.singleShot(50, poll)

    QTimer.singleShot(50, poll)


def run_and_wait(qtbot, window) -> None:
    with qtbot.waitSignal(window.panel.job_finished, timeout=60000) as finished:
        window.upscale_action.trigger()
    assert finished.args == ["done"], window.panel.status_label.text()


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
    status = editor.panel.status_label.text()  # "<model> on cpu: 0.3 s." or "...: 0.8 s; <the engine's notes>."
    assert " s." in status or " s; " in status, status

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


def test_a_community_model_dropped_into_the_models_folder_upscales_after_a_refresh(qtbot, tmp_path, models, engine):
    """No code change and no restart: the file appears under "Your own models" after Refresh,
    and the new layer is that checkpoint's own output (spandrel's net run directly)."""
    import spandrel
    import torch

    image = make_png(tmp_path / "in.png")
    window = open_editor(qtbot, tmp_path, engine, image)
    combo = window.panel.method_section.model_combo
    assert combo.findData("user:compact4") < 0
    checkpoint = community_checkpoint(models / "compact4.safetensors")
    with qtbot.waitSignal(window.panel.state.models_changed, timeout=60000):
        window.panel.method_section.refresh_button.click()
    assert combo.findText("Your own models") < combo.findData("user:compact4")
    pick(window, "user:compact4")
    run_and_wait(qtbot, window)
    result = window.document.layers[-1].raw
    assert (result.width, result.height, result.channels) == (192, 160, 3)
    got = np.frombuffer(result.data, np.uint8).reshape(160, 192, 3)

    net = spandrel.ModelLoader().load_from_file(str(checkpoint)).model.eval()
    pixels = torch.from_numpy(np.asarray(PILImage.open(image), np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = net(pixels)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255
    assert np.abs(got.astype(float) - expected).max() <= 1.01


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
    window = open_editor(qtbot, tmp_path, engine, make_png(tmp_path / "deep.png", 20, 16, deep=True))
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
    window.undo_stack.setClean()


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


def test_ctrl_s_after_an_upscale_asks_for_a_new_name_and_keeps_the_original(qtbot, editor):
    original = editor.document.path
    before = original.read_bytes()
    pick(editor, "bicubic")
    run_and_wait(qtbot, editor)
    suggested = []

    def save_as_suggested(dialog):
        suggested.append(dialog.selectedFiles()[0])
        qtbot.keyClick(dialog, Qt.Key.Key_Return)

    seen: list = []
    when_modal(save_as_suggested, seen)
    qtbot.keyClick(editor.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert len(seen) == 1 and isinstance(seen[0], QFileDialog)
    assert Path(suggested[0]) == original.with_name("in_x4.png")
    assert original.read_bytes() == before  # the opened photo is untouched
    assert PILImage.open(original.with_name("in_x4.png")).size == (192, 160)
    assert editor.undo_stack.isClean()

    editor.undo_action.trigger()  # back to 48x40: the next Ctrl+S writes to the chosen name, not the original
    seen.clear()
    when_modal(lambda box: qtbot.keyClick(box, Qt.Key.Key_Escape), seen, seconds=1.0)
    editor.save_action.trigger()  # File > Save (the dialog took the keyboard focus from the window)
    qtbot.wait(1200)
    assert seen == [] and original.read_bytes() == before and editor.undo_stack.isClean()
    assert PILImage.open(original.with_name("in_x4.png")).size == (48, 40)


def test_saving_sixteen_bits_as_jpeg_says_what_is_lost(qtbot, tmp_path, engine):
    window = open_editor(qtbot, tmp_path, engine, make_png(tmp_path / "deep.png", 20, 16, deep=True))
    out = tmp_path / "out.jpg"
    seen: list = []
    when_modal(lambda box: box.button(QMessageBox.StandardButton.Cancel).click(), seen)
    assert not window.save_file(out)
    assert not out.exists()
    assert len(seen) == 1 and "16-bit" in seen[0] and "8 bits" in seen[0]
    when_modal(lambda box: box.button(QMessageBox.StandardButton.Save).click(), seen)
    assert window.save_file(out)
    assert len(seen) == 2 and PILImage.open(out).mode == "RGB"
    seen.clear()
    when_modal(lambda box: qtbot.keyClick(box, Qt.Key.Key_Escape), seen, seconds=1.0)
    assert window.save_file(tmp_path / "out.tif")  # TIFF keeps the 16 bits: nothing to ask
    qtbot.wait(1200)
    assert seen == []


def test_after_an_upscale_the_view_shows_the_same_part_and_the_source_stays_active(qtbot, editor):
    canvas, document = editor.canvas, editor.document
    source = document.active
    pick(editor, "bicubic")
    assert canvas.visible_rect() == QRectF(0, 0, 48, 40)  # fitted: the whole image shows
    zoom, offset = canvas.zoom, canvas.offset
    run_and_wait(qtbot, editor)
    assert (document.width, document.height) == (192, 160)
    assert canvas.zoom == pytest.approx(zoom / 4) and canvas.offset == offset
    assert canvas.visible_rect() == QRectF(0, 0, 192, 160)  # the whole result, where the image was
    assert document.active is source and editor.host.layer_name() == "in"
    assert editor.layers.layer_at(editor.layers.currentRow()) is source

    run_and_wait(qtbot, editor)  # a second press upscales the source again: x4, not x16
    assert (document.width, document.height) == (192, 160) and len(document.layers) == 3
    assert (document.layers[-1].raw.width, document.layers[-1].raw.height) == (192, 160)
    editor.undo_action.trigger()
    editor.undo_action.trigger()
    assert canvas.zoom == pytest.approx(zoom) and canvas.visible_rect() == QRectF(0, 0, 48, 40)


def test_a_result_outside_the_view_is_brought_into_it(qtbot, editor):
    canvas, document = editor.canvas, editor.document
    pick(editor, "bicubic")
    canvas.set_zoom(32.0)
    canvas.offset = QPointF(0, 0)  # looking at the top-left corner only
    assert not canvas.visible_rect().intersects(QRectF(36, 30, 12, 10))
    document.set_selection(Rect(36, 30, 12, 10))
    run_and_wait(qtbot, editor)
    result = document.layers[-1]
    assert result.doc_rect == QRectF(144, 120, 48, 40)
    assert canvas.visible_rect().contains(result.doc_rect)


@pytest.fixture
def big_editor(qtbot, tmp_path, engine):
    return open_editor(qtbot, tmp_path, engine, make_png(tmp_path / "big.png", 700, 700))


def test_closing_during_a_run_cancels_the_job_and_closes_at_once(qtbot, big_editor, engine):
    window = big_editor
    pick(window, "bicubic")
    window.document.set_selection(Rect(0, 0, 8, 8))
    run_and_wait(qtbot, window)  # an unsaved result: closing must still ask
    window.document.set_selection(None)
    window.upscale_action.trigger()  # the whole 700x700 layer in one tile: seconds of work
    qtbot.waitUntil(lambda: window.panel.run_section.follower.job_id is not None, timeout=10000)
    job = window.panel.run_section.follower.job_id
    qtbot.waitUntil(lambda: engine.status(job)["state"] == "running", timeout=10000)
    answered: list[float] = []

    def discard(box):
        answered.append(time.monotonic())
        box.button(QMessageBox.StandardButton.Discard).click()

    seen: list = []
    when_modal(discard, seen)
    assert window.close()
    closed_after = time.monotonic() - answered[0]
    assert seen == ["Save the changes to big.png?"] and not window.isVisible()
    assert closed_after < 1.0, f"closing took {closed_after:.2f} s"
    assert engine.status(job)["state"] in ("running", "cancelled")  # told to stop, finishing its step
    assert wait_for_job(engine, job, seconds=120)["state"] == "cancelled"
    assert len(window.document.layers) == 2  # the cancelled result was not added


def test_a_python_without_the_engine_packages_opens_the_editor_with_the_fix(tmp_path):
    script = tmp_path / "first_run.py"
    script.write_text("""
import sys
sys.modules["numpy"] = None  # as in a Python where numpy was never installed
from ui.qt import QApplication, QTimer
from plugin.standalone.__main__ import main
from plugin.standalone.window import EditorWindow

def report():
    window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, EditorWindow))
    print(window.panel.status_label.text())
    window.close()

app = QApplication(sys.argv[:1])
QTimer.singleShot(500, report)
sys.exit(main([]))
""")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    status = done.stdout.strip()
    assert status.startswith(f"The engine cannot start in {sys.executable} (")
    assert "numpy" in status and ("build.py run" in status or "-m plugin.standalone" in status)


# ---------------------------------------------------------------- faces, with weights the tests make
@pytest.fixture
def face_models(tmp_path, monkeypatch):
    """A models folder holding random-init MetaF2N lite weights (no trained ones exist yet)."""
    from tests.test_face_paths import metaf2n_weights

    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder))
    metaf2n_weights(folder)
    return folder


def save_rgb(pixels: np.ndarray, path: Path) -> Path:
    PILImage.fromarray((pixels * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def recording_submits(engine, monkeypatch) -> list[dict]:
    """The requests the panel hands the in-process engine, as it hands them."""
    sent: list[dict] = []
    submit = engine.submit

    def record(image, request):
        sent.append(dict(request))
        return submit(image, request)

    monkeypatch.setattr(engine, "submit", record)
    return sent


def faces_looked_for(qtbot, window) -> None:
    """Wait until the panel has looked for faces in the document as it now is: a search still out
    when the test closes the window would report to a deleted panel."""
    section, host = window.panel.faces_section, window.panel.state.host
    qtbot.waitUntil(lambda: section._revision == host.revision()
                    and section.faces_list.item(0).text() != "Looking for faces…", timeout=30000)


def test_a_selected_face_reaches_metaf2n_and_the_status_says_it_adapted(qtbot, tmp_path, engine, face_models,
                                                                      monkeypatch):
    from tests.test_face_paths import face_photo

    window = open_editor(qtbot, tmp_path, engine, save_rgb(face_photo()[80:128, 128:176], tmp_path / "face.png"))
    sent = recording_submits(engine, monkeypatch)
    pick(window, "metaf2n")
    window.panel.settings.set("auto_faces", False)
    window.panel.selection_section.buttons["face"].setChecked(True)
    drag_select(qtbot, window.canvas, (4.5, 4.5), (43.5, 43.5))
    assert window.document.selection == Rect(4, 4, 40, 40)
    with qtbot.waitSignal(window.panel.job_finished, timeout=120000) as finished:
        window.upscale_action.trigger()
    assert finished.args == ["done"], window.panel.status_label.text()
    assert sent[-1]["faces"] == [[4, 4, 40, 40]] and "region" not in sent[-1]
    status = window.panel.status_label.text()
    assert "1 face box(es) given; adapted to 1 face(s)" in status, status
    result = window.document.layers[-1]
    assert (result.raw.width, result.raw.height) == (192, 192)  # the whole layer, not the face box
    faces_looked_for(qtbot, window)


def test_a_faceless_layer_falls_back_and_the_panel_says_so(qtbot, tmp_path, engine, face_models):
    window = open_editor(qtbot, tmp_path, engine, make_png(tmp_path / "pattern.png"))
    pick(window, "metaf2n")
    faces = window.panel.faces_section.faces_list
    qtbot.waitUntil(lambda: faces.count() == 1 and faces.item(0).text() == "No faces found.", timeout=30000)
    with qtbot.waitSignal(window.panel.job_finished, timeout=120000) as finished:
        window.upscale_action.trigger()
    assert finished.args == ["done"], window.panel.status_label.text()
    status = window.panel.status_label.text()
    assert "0 face(s) found" in status and "upscaling with the unadapted weights" in status, status
    assert len(window.document.layers) == 2
    faces_looked_for(qtbot, window)


def test_cancel_during_the_adaptation_step_leaves_nothing(qtbot, tmp_path, engine, face_models):
    from tests.test_face_paths import face_photo

    window = open_editor(qtbot, tmp_path, engine, save_rgb(face_photo()[60:220, 80:240], tmp_path / "face.png"))
    pick(window, "metaf2n")
    window.panel.settings.set("auto_faces", False)
    window.panel.selection_section.buttons["face"].setChecked(True)
    window.document.set_selection(Rect(10, 0, 140, 150))
    seen: list[str] = []
    window.panel.run_section.follower.progressed.connect(lambda status: seen.append(status.get("stage", "")))
    with qtbot.waitSignal(window.panel.job_finished, timeout=120000) as finished:
        window.upscale_action.trigger()
        qtbot.waitUntil(lambda: any(s.startswith("Learning from 1 face(s)") for s in seen), timeout=60000)
        window.panel.run_section.cancel_button.click()
    assert finished.args == ["cancelled"]
    assert not any("adapted to" in s or s.startswith("Upscal") for s in seen), seen  # stopped while adapting
    assert len(window.document.layers) == 1 and window.undo_stack.count() == 0
    assert "Cancelled" in window.panel.status_label.text()


def test_restore_faces_after_any_method_once_a_restorer_is_installed(qtbot, tmp_path, engine, face_models):
    from tests.test_face_paths import FACE_BOX, face_photo, restorer_weights

    window = open_editor(qtbot, tmp_path, engine, save_rgb(face_photo(), tmp_path / "portrait.png"))
    section = window.panel.face_restore_section
    pick(window, "bicubic")
    assert not section.restore_check.isEnabled() and "No face restorer is installed" in section.reason_label.text()
    run_and_wait(qtbot, window)
    first = window.document.layers[-1]
    plain = first.raw
    assert "restored" not in window.panel.status_label.text()

    restorer_weights(face_models)  # random-init, visibly not the identity
    with qtbot.waitSignal(window.panel.state.models_changed, timeout=60000):
        window.panel.method_section.refresh_button.click()
    assert section.restore_check.isEnabled() and section.reason_label.isHidden()
    section.restore_check.setChecked(True)
    assert window.document.active is window.document.layers[0]  # the source stays active after a run
    run_and_wait(qtbot, window)
    assert "; 1 face(s) restored." in window.panel.status_label.text()
    (second,) = [layer for layer in window.document.layers[1:] if layer is not first]  # above the source
    restored = second.raw
    channels = plain.channels
    before = np.frombuffer(plain.data, np.uint8).reshape(plain.height, plain.width, channels)
    after = np.frombuffer(restored.data, np.uint8).reshape(restored.height, restored.width, channels)
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 2
    x, y, w, h = (4 * v for v in FACE_BOX)
    assert changed[y + h // 2, x + w // 2] and not changed[:y - 60].any()  # the face, feathered in; not the frame
