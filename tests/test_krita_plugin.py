"""The Krita plug-in against a mock `krita` module (tests/mock_krita) on PyQt6, the Krita 6 path.

Pixel layouts follow what was measured in Krita 5.1.5 (B,G,R,A for U8/U16, R,G,B,A for F16/F32).
The end-to-end tests drive the real panel and a real engine server over HTTP on 127.0.0.1.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from array import array
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_SETTINGS_DIR = tempfile.mkdtemp(prefix="blind-upscale-krita-test-")
os.environ["BLIND_UPSCALE_SETTINGS"] = os.path.join(_SETTINGS_DIR, "settings.json")
HERE = Path(__file__).resolve().parent
for path in (HERE / "mock_krita", HERE.parent / "plugin" / "krita"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import pytest  # noqa: E402

import krita  # noqa: E402  (the mock)
from blind_upscale import extension, pixels  # noqa: E402
from blind_upscale.host import KritaHost  # noqa: E402
from core.image_io import from_raw, to_raw  # noqa: E402
from core.engine import Engine, UpscaleRequest  # noqa: E402
from core.server import EngineServer  # noqa: E402
from protocol.host import Rect  # noqa: E402
from protocol.raw_image import RawImage  # noqa: E402
from ui.qt import QT_MAJOR, QApplication, QFileDialog  # noqa: E402


def krita_bytes(width, height, model="RGBA", depth="U8") -> bytes:
    """A deterministic pattern in Krita's own layout for the colour model and depth."""
    channels = krita.CHANNELS[model]
    values = [((x * 37 + y * 11 + c * 71) % 255) / 255.0
              for y in range(height) for x in range(width) for c in range(channels)]
    if depth == "U8":
        return bytes(round(v * 255) for v in values)
    if depth == "U16":
        return array("H", (round(v * 65535) for v in values)).tobytes()
    if depth == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    return array("f", values).tobytes()


def make_document(app, width=12, height=8, model="RGBA", depth="U8", profile="sRGB-elle-V2-srgbtrc.icc"):
    doc = app.createDocument(width, height, "test", model, depth, profile, 300.0)
    layer = doc.createNode("Photo", "paintlayer")
    layer.setPixelData(krita_bytes(width, height, model, depth), 0, 0, width, height)
    doc.rootNode().addChildNode(layer, None)
    layer.writes.clear()
    doc.undo_steps.clear()
    doc.setActiveNode(layer)
    app.setActiveDocument(doc)
    return doc, layer


# ---------------------------------------------------------------- pixel layouts
def test_qt_binding_is_pyqt6():
    assert QT_MAJOR == 6


def test_u8_bgra_becomes_rgba_and_back():
    bgra = bytes([10, 20, 30, 255, 1, 2, 3, 4])
    raw = pixels.krita_to_raw(bgra, 2, 1, "RGBA", "U8")
    assert (raw.channels, raw.dtype, raw.data) == (4, "u8", bytes([30, 20, 10, 255, 3, 2, 1, 4]))
    assert type(raw) is RawImage and "transfer" not in raw.header()
    assert pixels.raw_to_krita(raw, "RGBA", "U8") == bgra


def test_u16_bgra_becomes_rgba_and_back():
    bgra = array("H", [100, 200, 300, 65535]).tobytes()
    raw = pixels.krita_to_raw(bgra, 1, 1, "RGBA", "U16", "sRGB-elle-V2-g10.icc")
    assert array("H", raw.data).tolist() == [300, 200, 100, 65535]
    assert raw.header()["transfer"] == "linear"
    assert RawImage.from_bytes(raw.to_bytes()).data == raw.data
    assert pixels.raw_to_krita(raw, "RGBA", "U16") == bgra


def test_f16_travels_as_half_floats_in_rgba_order():
    values = [0.25, 0.5, 1.0, 0.75, 0.0, 2.0, 0.125, 1.0]
    half = struct.pack("<8e", *values)
    raw = pixels.krita_to_raw(half, 2, 1, "RGBA", "F16", "sRGB-elle-V2-g10.icc")
    assert (raw.dtype, raw.data, raw.header()["transfer"]) == ("f16", half, "linear")
    assert pixels.raw_to_krita(raw, "RGBA", "F16") == half


def test_f32_and_gray_pass_through():
    data = array("f", [0.1, 0.2, 0.3, 1.0]).tobytes()
    raw = pixels.krita_to_raw(data, 1, 1, "RGBA", "F32", "sRGB-elle-V2-srgbtrc.icc")
    assert raw.data == data and "transfer" not in raw.header()
    gray = pixels.krita_to_raw(bytes([9, 255, 7, 128]), 2, 1, "GRAYA", "U8")
    assert (gray.channels, gray.order, gray.data) == (2, "GA", bytes([9, 255, 7, 128]))


def test_coverage_multiplies_alpha_for_every_sample_type():
    u8 = pixels.with_coverage(RawImage(2, 1, 2, "u8", bytes([7, 200, 9, 255])), bytes([255, 128]))
    assert u8.data == bytes([7, 200, 9, 128])
    u16 = pixels.with_coverage(RawImage(1, 1, 4, "u16", array("H", [1, 2, 3, 65535]).tobytes()), bytes([51]))
    assert array("H", u16.data).tolist() == [1, 2, 3, 13107]
    linear = pixels.LinearRawImage(1, 1, 4, "f32", array("f", [0.5, 0.5, 0.5, 1.0]).tobytes())
    f32 = pixels.with_coverage(linear, bytes([0]))
    assert array("f", f32.data).tolist() == [0.5, 0.5, 0.5, 0.0] and f32.header()["transfer"] == "linear"
    f16 = pixels.with_coverage(RawImage(2, 1, 2, "f16", struct.pack("<4e", 0.25, 1.0, 0.5, 0.5)), bytes([51, 255]))
    assert struct.unpack("<4e", f16.data) == (0.25, 0.199951171875, 0.5, 0.5)  # 0.2 in half precision


def test_other_colour_models_are_refused_clearly():
    with pytest.raises(pixels.UnsupportedLayer, match="RGB and gray layers; this layer is CMYKA.*Convert"):
        pixels.krita_to_raw(bytes(5), 1, 1, "CMYKA", "U8")


# ---------------------------------------------------------------- host adapter
@pytest.fixture()
def app(qapp):
    return krita.Krita.reset()


def test_layer_pixels_are_rgba(app):
    doc, layer = make_document(app, 4, 3)
    host = KritaHost(app)
    assert host.has_image() and host.layer_size() == (4, 3) and host.layer_name() == "Photo"
    raw = host.layer_pixels(Rect(1, 1, 2, 2))
    bgra = bytes(layer.pixelData(1, 1, 2, 2))
    assert raw.data[0::4] == bgra[2::4] and raw.data[2::4] == bgra[0::4] and raw.data[3::4] == bgra[3::4]


def test_selection_bounds_and_coverage(app):
    doc, _ = make_document(app, 10, 10)
    host = KritaHost(app)
    assert host.selection() is None
    whole = krita.Selection()
    whole.select(2, 3, 4, 2, 255)
    doc.setSelection(whole)
    assert host.selection().bounds == Rect(2, 3, 4, 2) and host.selection().mask is None
    soft = krita.Selection(8, 8, 4, 4, bytes(range(0, 160, 10)))
    doc.setSelection(soft)
    sel = host.selection()
    assert sel.bounds == Rect(8, 8, 2, 2) and sel.mask == bytes([0, 10, 40, 50])


def test_non_paint_layers_are_refused(app):
    doc, _ = make_document(app)
    group = doc.createNode("Group", "grouplayer")
    doc.rootNode().addChildNode(group, None)
    doc.setActiveNode(group)
    host = KritaHost(app)
    assert not host.has_image()
    with pytest.raises(pixels.UnsupportedLayer, match="Select a paint layer.*grouplayer"):
        host.layer_pixels()


def test_apply_result_scales_and_adds_a_layer_without_touching_the_source(app):
    doc, layer = make_document(app, 6, 4, depth="U16", profile="sRGB-elle-V2-g10.icc")
    host = KritaHost(app)
    host.layer_pixels()
    canvas = app.activeWindow().activeView().canvas()
    canvas.setZoomLevel(2.0)
    zoom_before = canvas.zoomLevel()
    source = Rect(2, 1, 3, 2)
    result = RawImage(12, 8, 4, "u16", array("H", range(12 * 8 * 4)).tobytes())
    mask = bytes([0, 255, 255, 255, 255, 0])
    host.apply_result(result, source, 4, "Blind Upscale ×4 (Bicubic)", "Blind Upscale", mask=mask)

    assert (doc.width(), doc.height()) == (24, 16)
    assert layer.writes == []  # the user's layer is never written to
    names = [n.name() for n in doc.rootNode().childNodes()]
    assert names == ["Photo", "Blind Upscale ×4 (Bicubic)"]
    new = doc.rootNode().childNodes()[1]
    assert new.writes == [(8, 4, 12, 8)]
    written = pixels.krita_to_raw(bytes(new.pixelData(8, 4, 12, 8)), 12, 8, "RGBA", "U16")
    got, sent = array("H", written.data), array("H", result.data)
    assert got[0::4] == sent[0::4] and got[1::4] == sent[1::4] and got[2::4] == sent[2::4]
    alpha = got[3::4]  # the selection's coverage, scaled x4, shapes the new layer's alpha
    assert alpha[0] == 0 and alpha[-1] == 0 and alpha[6] == sent[3::4][6]
    assert new.childNodes() == []
    assert doc.activeNode() is layer  # the source stays the layer the panel works on
    assert canvas.zoomLevel() == pytest.approx(zoom_before / 4)  # the image keeps its size on screen


def test_apply_result_checks_everything_before_changing_the_document(app):
    doc, layer = make_document(app, 6, 4)
    host = KritaHost(app)
    host.layer_pixels()
    wrong = RawImage(8, 8, 4, "u8", bytes(8 * 8 * 4))
    with pytest.raises(pixels.UnsupportedLayer, match="returned 8x8 pixels, expected 24x16"):
        host.apply_result(wrong, Rect(0, 0, 6, 4), 4, "x", "x")
    wrong_type = RawImage(24, 16, 4, "f32", bytes(24 * 16 * 16))
    with pytest.raises(ValueError, match="expected 4 of u8"):
        host.apply_result(wrong_type, Rect(0, 0, 6, 4), 4, "x", "x")
    assert (doc.width(), doc.height()) == (6, 4)
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Photo"] and doc.undo_steps == []


def test_a_refused_result_layer_is_reported_before_the_document_changes(app, monkeypatch):
    doc, _layer = make_document(app, 6, 4)
    host = KritaHost(app)
    host.layer_pixels()
    monkeypatch.setattr(doc, "createNode", lambda name, kind: None)  # Krita returns None on failure
    with pytest.raises(pixels.UnsupportedLayer, match="could not create the result layer"):
        host.apply_result(RawImage(24, 16, 4, "u8", bytes(24 * 16 * 4)), Rect(0, 0, 6, 4), 4, "x", "x")
    assert (doc.width(), doc.height()) == (6, 4) and doc.undo_steps == []


# ---------------------------------------------------------------- the plug-in end to end
@pytest.fixture()
def engine_server():
    server = EngineServer(("127.0.0.1", 0), Engine(), "krita-test")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def start_plugin(app, url, token):
    settings_file = Path(os.environ["BLIND_UPSCALE_SETTINGS"])
    settings_file.write_text(f'{{"engine_mode": "remote", "engine_url": "{url}", "engine_token": "{token}", '
                             f'"model": "bicubic", "live_preview": false}}')
    extension.BlindUpscaleDocker.instances.clear()
    extension.register()
    plugin = app.extensions[-1]
    window = app.activeWindow()
    plugin.createActions(window)
    docker = app.factories[-1].create()
    docker.setParent(window.qwindow())
    return plugin, window.actions["blind_upscale"], docker.panel


def test_the_action_upscales_the_active_layer_without_a_dialog(app, engine_server, qtbot):
    doc, layer = make_document(app, 10, 6)
    plugin, (action, menu), panel = start_plugin(app, engine_server.url, "krita-test")
    assert menu == "tools/scripts" and action.objectName() == "blind_upscale"
    assert app.factories[-1].position == krita.DockWidgetFactoryBase.DockPosition.DockRight
    with qtbot.waitSignal(panel.job_finished, timeout=30000) as finished:
        action.trigger()  # the models may still be loading: the run starts when they are
    assert finished.args == ["done"], panel.status_label.text()
    assert (doc.width(), doc.height()) == (40, 24) and layer.writes == []
    new = doc.rootNode().childNodes()[1]
    assert new.name() == "Blind Upscale ×4 (Bicubic)"
    got = pixels.krita_to_raw(bytes(new.pixelData(0, 0, 40, 24)), 40, 24, "RGBA", "U8")
    source = pixels.krita_to_raw(krita_bytes(10, 6), 10, 6, "RGBA", "U8")
    expected = to_raw(Engine().upscale(from_raw(source), UpscaleRequest(model="bicubic")), "u8")
    assert got.data == expected.data
    assert QApplication.activeModalWidget() is None
    # the preview keeps to the source layer; a second press upscales the source, not the result
    assert panel.state.host.layer_name() == "Photo"
    panel.settings.set("live_preview", True)
    with qtbot.waitSignal(panel.preview_updated, timeout=30000):
        pass
    assert panel.preview_section.status_label.text().startswith("Preview: Bicubic")
    assert panel.state.host.layer_name() == "Photo"
    panel.settings.set("live_preview", False)


def photo_document(app, rgb):
    """A document whose one layer holds `rgb` (H×W×3 float 0..1), in Krita's BGRA."""
    import numpy as np

    height, width = rgb.shape[:2]
    doc, layer = make_document(app, width, height)
    rgba = np.concatenate([rgb, np.ones((height, width, 1), np.float32)], axis=2)
    raw = RawImage(width, height, 4, "u8", (rgba * 255 + 0.5).astype(np.uint8).tobytes())
    layer.setPixelData(pixels.raw_to_krita(raw, "RGBA", "U8"), 0, 0, width, height)
    layer.writes.clear()
    return doc, layer


def test_faces_from_the_docker_restore_and_a_selected_face_adapts_metaf2n(app, engine_server, qtbot, tmp_path,
                                                                         monkeypatch):
    from tests.test_face_paths import face_photo, metaf2n_weights, restorer_weights

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(models))
    restorer_weights(models)
    metaf2n_weights(models)
    doc, layer = photo_document(app, face_photo())
    plugin, (action, _), panel = start_plugin(app, engine_server.url, "krita-test")
    check = panel.face_restore_section.restore_check
    qtbot.waitUntil(check.isEnabled, timeout=30000)  # the engine's health says a restorer is installed
    check.setChecked(True)
    with qtbot.waitSignal(panel.job_finished, timeout=120000) as finished:
        action.trigger()
    assert finished.args == ["done"], panel.status_label.text()
    assert panel.status_label.text().endswith("; 1 face(s) restored.")
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Photo", "Blind Upscale ×4 (Bicubic)"]

    check.setChecked(False)
    small, _ = photo_document(app, face_photo()[80:128, 128:176])
    chosen = krita.Selection()
    chosen.select(4, 4, 40, 40, 255)
    small.setSelection(chosen)
    panel.settings.set("auto_faces", False)
    combo = panel.method_section.model_combo
    combo.setCurrentIndex(combo.findData("metaf2n"))
    panel.selection_section.buttons["face"].setChecked(True)
    with qtbot.waitSignal(panel.job_finished, timeout=120000) as finished:
        action.trigger()
    assert finished.args == ["done"], panel.status_label.text()
    status = panel.status_label.text()
    assert "1 face box(es) given (targets from the face restorer); adapted to 1 face(s)" in status, status
    assert (small.width(), small.height()) == (192, 192)  # the whole layer, the selection only taught it


def test_engine_failure_leaves_the_document_untouched(app, qtbot):
    doc, layer = make_document(app, 10, 6)
    plugin, (action, _), panel = start_plugin(app, "http://127.0.0.1:9", "t")
    with qtbot.waitSignal(panel.job_finished, timeout=30000) as finished:
        panel.state.set_models([{"id": "bicubic", "title": "Bicubic", "scale": 4, "controls": [],
                                 "adaptation": [], "weights": "bundled"}], {})
        action.trigger()
    assert finished.args == ["failed"]
    assert "not reachable" in panel.status_label.text()
    assert (doc.width(), doc.height()) == (10, 6)
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Photo"] and doc.undo_steps == []


def test_managed_engine_without_a_python_says_so_instead_of_guessing(app, monkeypatch):
    monkeypatch.delenv("BLIND_UPSCALE_PYTHON", raising=False)
    Path(os.environ["BLIND_UPSCALE_SETTINGS"]).write_text('{"engine_mode": "managed"}')
    connection = extension.EngineConnection(app, extension.Settings())
    assert connection.connect() is None and "Python is not set" in connection.problem.error
    assert connection.problem.command == "cd <project folder> && python3 build.py setup"
    app.writeSetting("blind_upscale", "engine_python", sys.executable)
    client = connection.connect()
    assert client.process.python == sys.executable and not client.process.running()
    assert connection.problem is None


# ---------------------------------------------------------------- first run: no venv, a broken venv
ROOT = HERE.parent


def start_managed_plugin(app, monkeypatch, chosen: Path):
    """The plug-in on a fresh profile (no engine python set), the folder dialog answering `chosen`."""
    monkeypatch.delenv("BLIND_UPSCALE_PYTHON", raising=False)
    Path(os.environ["BLIND_UPSCALE_SETTINGS"]).write_text('{"engine_mode": "managed", "live_preview": false}')
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *args: str(chosen)))
    app.app_data = str(chosen.parent)  # the engine's log
    extension.BlindUpscaleDocker.instances.clear()
    extension.register()
    plugin = app.extensions[-1]
    docker = app.factories[-1].create()
    docker.setParent(app.activeWindow().qwindow())
    return plugin, docker.panel


def project_folder(tmp_path: Path) -> Path:
    """A project folder as a user has it: build.py and the packages, the venv still to make."""
    folder = tmp_path / "blind-upscale"
    folder.mkdir()
    for name in ("build.py", "core", "protocol", "resources"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def test_missing_venv_shows_path_error_command_and_retry_starts_the_engine_once_made(app, monkeypatch, qtbot,
                                                                                     tmp_path):
    folder = project_folder(tmp_path)
    plugin, panel = start_managed_plugin(app, monkeypatch, folder)
    setup = panel.engine_setup
    assert not setup.isHidden() and setup.tried_label.text() == "No engine Python is set yet."
    assert setup.retry_button.text() == "Retry" and setup.choose_button.text() == "Choose the project folder…"
    setup.choose_button.click()  # the dialog answers the project folder
    python = folder / ".venv" / "bin" / "python"
    assert setup.tried_label.text() == f"Tried: {python}"
    assert "does not exist" in setup.error_label.text()
    assert setup.command_label.text() == f'cd "{folder}" && python3 build.py setup'
    try:
        (folder / ".venv").symlink_to(ROOT / ".venv")  # the user ran the command
        with qtbot.waitSignal(panel.models_loaded, timeout=120000):
            setup.retry_button.click()
        assert setup.isHidden() and plugin.connection.client.process.running()
        assert plugin.connection.client.process.python == str(python)
    finally:
        plugin.connection.close()


def test_broken_venv_shows_the_error_and_retry_starts_the_engine_once_it_is_mended(app, monkeypatch, qtbot,
                                                                                   tmp_path):
    folder = project_folder(tmp_path)
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(folder / ".venv")], check=True)
    plugin, panel = start_managed_plugin(app, monkeypatch, folder)
    setup = panel.engine_setup
    try:
        with qtbot.waitSignal(panel.engine_unavailable, timeout=120000):
            setup.choose_button.click()
        python = folder / ".venv" / "bin" / "python"
        assert not setup.isHidden() and setup.tried_label.text() == f"Tried: {python}"
        assert "No module named" in setup.error_label.text()
        assert setup.command_label.text() == f'cd "{folder}" && python3 build.py setup'
        with qtbot.waitSignal(panel.engine_unavailable, timeout=120000):
            plugin.upscale()  # the shortcut while broken is a Retry, and says the same again
        assert not setup.isHidden() and "No module named" in setup.error_label.text()
        shutil.rmtree(folder / ".venv")
        (folder / ".venv").symlink_to(ROOT / ".venv")  # mended
        with qtbot.waitSignal(panel.models_loaded, timeout=120000):
            setup.retry_button.click()
        assert setup.isHidden() and plugin.connection.client.process.running()
    finally:
        plugin.connection.close()


def test_a_folder_that_is_no_project_is_refused_and_changes_nothing(app, monkeypatch, tmp_path):
    plugin, panel = start_managed_plugin(app, monkeypatch, tmp_path)
    panel.engine_setup.choose_button.click()
    assert "is not the Blind Upscale project folder" in panel.engine_setup.error_label.text()
    assert app.readSetting("blind_upscale", "engine_python", "") == ""
