"""The dock panel's controls drive the right engine requests (real widgets, offscreen Qt).

The engine side is a recording client: it answers like an engine (models list, analyse estimate,
jobs that finish at once with a 4x image) and keeps every request the panel sent.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from protocol.host import Host, Rect, Selection
from protocol.raw_image import RawImage
from ui.panel import Panel
from ui.qt import QLabel, Qt, sip
from ui.settings import Settings

MODELS = [
    {"id": "bicubic", "family": "Bicubic", "title": "Bicubic", "summary": "plain interpolation",
     "scale": 4, "controls": [], "adaptation": [], "configs": [], "weights": "bundled"},
    {"id": "mmrealsr", "family": "MM-RealSR", "title": "MM-RealSR", "summary": "blur and noise dials",
     "scale": 4, "controls": [{"name": "blur", "label": "Blur", "min": 0, "max": 1, "default": None},
                              {"name": "noise", "label": "Noise", "min": 0, "max": 1, "default": None}],
     "adaptation": [], "weights": "user",
     "configs": [{"id": "mmrealsr:official", "params": 26_000_000, "weights": "user"},
                 {"id": "mmrealsr:lite", "params": 900_000, "weights": "bundled"},
                 {"id": "mmrealsr:big", "params": 90_000_000, "weights": "missing"}]},
    {"id": "cmdsr", "family": "CMDSR", "title": "CMDSR", "summary": "adapts to a sample",
     "scale": 4, "controls": [], "adaptation": ["support_set"], "configs": [], "weights": "bundled"},
    {"id": "metaf2n", "family": "MetaF2N", "title": "MetaF2N", "summary": "learns from faces",
     "scale": 4, "controls": [], "adaptation": ["faces"], "configs": [], "weights": "bundled"},
    {"id": "kdsr", "family": "KDSR", "title": "KDSR", "summary": "fully blind",
     "scale": 4, "controls": [], "adaptation": [], "configs": [], "weights": "missing"},
]


class RecordingClient:
    def __init__(self):
        self.submitted: list[tuple[RawImage, dict]] = []
        self.analysed: list[tuple | None] = []
        self.cancelled: list[str] = []
        self.fail_with: str | None = None
        self.held: set[str] = set()  # jobs that stay "running" until removed from here
        self.steps: list[dict] = []  # statuses the next job reports, one per poll, before "done"

    def health(self):
        return {"version": "test", "device": "cpu", "busy": False}

    def models(self):
        return MODELS

    def analyse(self, image, region=None):
        self.analysed.append(region)
        return {"blur": 0.25, "noise": 0.75, "faces": [[2.2, 3.0, 9.6, 12.0, 0.9], [20, 4, 8, 8, 0.8],
                                                        [60.0, 40.0, 9.0, 9.0, 0.7]]}

    def submit(self, image, request):
        self.submitted.append((image, dict(request)))
        return str(len(self.submitted))

    def status(self, job_id):
        if self.steps:
            return {"state": "running", "error": None, **self.steps.pop(0)}
        if job_id in self.held:
            return {"state": "running", "progress": 0.5, "stage": "upscaling tile 1/2", "error": None}
        if self.fail_with:
            return {"state": "failed", "progress": 0.0, "stage": "", "error": self.fail_with}
        return {"state": "done", "progress": 1.0, "stage": "finished", "error": None}

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def result(self, job_id):
        image, request = self.submitted[int(job_id) - 1]
        x, y, w, h = request.get("region") or (0, 0, image.width, image.height)
        s = request["scale"]
        return RawImage(w * s, h * s, 4, "u8", bytes(w * s * h * s * 4))


class GridHost(Host):
    """A 64x48 RGBA layer held in memory."""

    def __init__(self):
        self.image = RawImage(64, 48, 4, "u8", bytes(range(256)) * (64 * 48 * 4 // 256))
        self.sel: Selection | None = None
        self.centre = (32, 24)
        self.applied: list[tuple] = []

    def has_image(self):
        return True

    def layer_name(self):
        return "Background"

    def layer_size(self):
        return (self.image.width, self.image.height)

    def layer_pixels(self, rect=None):
        return self.image

    def selection(self):
        return self.sel

    def view_center(self):
        return self.centre

    def revision(self):
        return (id(self.image), self.sel)

    def apply_result(self, image, source, scale, name, undo_label, mask=None):
        self.applied.append((image.width, image.height, source, scale, name, undo_label))


@pytest.fixture
def panel(qtbot, tmp_path):
    client, host = RecordingClient(), GridHost()
    settings = Settings(tmp_path / "settings.json")
    settings.set("live_preview", False)
    widget = Panel(host, client, settings)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.models_loaded, timeout=5000):
        pass
    return widget, client, host


def pick(widget, model_id):
    widget.method_section.model_combo.setCurrentIndex(widget.method_section.model_combo.findData(model_id))


def run_and_wait(qtbot, widget):
    with qtbot.waitSignal(widget.job_finished, timeout=5000) as finished:
        widget.run_section.run_button.click()
    return finished.args[0]


def test_models_listed_one_line_each_and_missing_weights_disabled(panel):
    widget, _client, _host = panel
    assert widget.method_section.model_combo.count() == len(MODELS)
    kdsr = widget.method_section.model_combo.findData("kdsr")
    item = widget.method_section.model_combo.model().item(kdsr)
    assert not item.isEnabled()
    assert "no weights" in widget.method_section.model_combo.itemText(kdsr)
    assert "models folder" in item.toolTip()
    assert "\n" not in widget.method_section.model_combo.itemText(widget.method_section.model_combo.findData("cmdsr"))


def test_controls_drive_the_request_and_result_becomes_a_layer(qtbot, panel):
    widget, client, host = panel
    pick(widget, "mmrealsr")
    widget.advanced_section.device_combo.setCurrentIndex(widget.advanced_section.device_combo.findData("cpu"))
    widget.advanced_section.tile_combo.setCurrentIndex(widget.advanced_section.tile_combo.findData(128))
    widget.dials_section.sliders["blur"].setValue(30)
    widget.dials_section.sliders["noise"].setValue(80)
    assert run_and_wait(qtbot, widget) == "done"
    image, request = client.submitted[-1]
    assert request == {"model": "mmrealsr", "scale": 4, "device": "cpu", "tile": 128,
                       "blur": 0.3, "noise": 0.8}
    assert image.width == 64
    assert host.applied[-1][:4] == (256, 192, Rect(0, 0, 64, 48), 4)
    assert "MM-RealSR" in host.applied[-1][5]
    assert "MM-RealSR on cpu" in widget.status_label.text()
    widget.advanced_section.ensemble_check.setChecked(True)
    assert run_and_wait(qtbot, widget) == "done"
    assert client.submitted[-1][1]["ensemble"] is True
    assert Settings(widget.settings.path).ensemble is True


def test_auto_lets_the_engine_estimate_and_shows_its_estimate(qtbot, panel):
    widget, client, host = panel
    pick(widget, "mmrealsr")
    host.sel = Selection(Rect(8, 8, 16, 16))
    dials = widget.dials_section
    dials.sliders["blur"].setValue(90)
    assert widget.settings.dials["blur"] == 0.9
    dials.auto_button.click()
    assert widget.settings.dials == {"blur": None, "noise": None}
    qtbot.waitUntil(lambda: dials.auto_button.isEnabled(), timeout=5000)
    assert client.analysed[-1] is None  # the whole layer, as the engine estimates in a run
    assert dials.sliders["blur"].value() == 25 and dials.sliders["noise"].value() == 75
    assert dials.values["noise"].text() == "0.75 (auto)"
    assert widget.status_label.text() == "Estimated blur 0.25, noise 0.75."
    assert run_and_wait(qtbot, widget) == "done"
    request = client.submitted[-1][1]
    assert "blur" not in request and "noise" not in request  # None: the engine estimates them


def test_dials_come_from_the_model_controls(qtbot, tmp_path, panel):
    widget, client, _host = panel
    sharpen = {"id": "sharpen", "family": "Sharpen", "title": "Sharpen", "summary": "one dial",
               "scale": 4, "controls": [{"name": "amount", "label": "Amount", "min": 0, "max": 2,
                                         "default": 1.0}],
               "adaptation": [], "configs": [], "weights": "bundled"}
    widget.state.set_models(MODELS + [sharpen], {"device": "cpu"})
    pick(widget, "bicubic")
    assert widget.dials_section.isHidden() and widget.dials_section.sliders == {}
    pick(widget, "sharpen")
    dials = widget.dials_section
    assert not dials.isHidden() and list(dials.sliders) == ["amount"]
    assert dials.sliders["amount"].value() == 50 and dials.values["amount"].text() == "1.00 (auto)"
    dials.sliders["amount"].setValue(75)
    assert run_and_wait(qtbot, widget) == "done"
    assert client.submitted[-1][1]["amount"] == 1.5


def test_selection_roles(qtbot, panel):
    widget, client, host = panel
    host.sel = Selection(Rect(4, 6, 20, 10))

    pick(widget, "bicubic")
    widget.selection_section.buttons["area"].setChecked(True)
    run_and_wait(qtbot, widget)
    assert client.submitted[-1][1]["region"] == [4, 6, 20, 10]
    assert host.applied[-1][:3] == (80, 40, Rect(4, 6, 20, 10))

    pick(widget, "cmdsr")
    assert widget.selection_section.buttons["support"].isEnabled() and not widget.selection_section.buttons["face"].isEnabled()
    widget.selection_section.buttons["support"].setChecked(True)
    run_and_wait(qtbot, widget)
    request = client.submitted[-1][1]
    assert request["support"] == [4, 6, 20, 10] and "region" not in request

    pick(widget, "metaf2n")
    qtbot.waitUntil(lambda: len(widget.state.faces) == 3, timeout=5000)
    assert widget.state.faces[0][:4] == (2, 3, 10, 12) and widget.state.faces[2][:4] == (60, 40, 4, 8)  # whole, inside
    widget.selection_section.buttons["face"].setChecked(True)
    widget.faces_section.faces_list.item(1).setCheckState(Qt.CheckState.Unchecked)
    run_and_wait(qtbot, widget)
    assert client.submitted[-1][1]["faces"] == [[4, 6, 20, 10], [2, 3, 10, 12], [60, 40, 4, 8]]
    widget.faces_section.auto_check.setChecked(False)
    host.sel = None
    run_and_wait(qtbot, widget)
    assert client.submitted[-1][1]["faces"] == "none"


def test_engine_error_in_plain_words(qtbot, panel):
    widget, client, host = panel
    client.fail_with = "the weights of mmrealsr:lite are missing: put them in the models folder"
    pick(widget, "mmrealsr")
    assert run_and_wait(qtbot, widget) == "failed"
    assert widget.status_label.text() == "The weights of mmrealsr:lite are missing: put them in the models folder."
    assert host.applied == []
    assert widget.run_section.run_button.isEnabled()


def test_live_preview_is_debounced_and_drops_stale_results(qtbot, panel):
    widget, client, host = panel
    pick(widget, "mmrealsr")
    widget.settings.set("live_preview", True)
    for value in (10, 20, 30, 40):
        widget.dials_section.sliders["noise"].setValue(value)
    with qtbot.waitSignal(widget.preview_updated, timeout=5000) as shown:
        pass
    previews = [r for _i, r in client.submitted if r.get("tile") == 0]
    assert len(previews) == 1  # four changes, one preview
    assert previews[0]["noise"] == 0.4
    assert previews[0]["region"] == [12, 4, 40, 40]  # around the view centre
    assert shown.args[0] == widget.preview_section.generation
    assert widget.preview_section.after_label.pixmap().width() == 100
    assert host.applied == []


def test_settings_persist(tmp_path, qtbot, panel):
    widget, _client, _host = panel
    pick(widget, "cmdsr")
    widget.selection_section.buttons["support"].setChecked(True)
    widget.engine_section.remote_check.setChecked(True)
    reloaded = Settings(widget.settings.path)
    assert (reloaded.model, reloaded.selection_use, reloaded.engine_mode) == ("cmdsr", "support", "remote")


def test_variant_picker_lists_configs_with_weights(qtbot, panel):
    widget, client, _host = panel
    pick(widget, "mmrealsr")
    assert not widget.method_section.config_combo.isHidden()
    assert [widget.method_section.config_combo.itemData(i) for i in range(widget.method_section.config_combo.count())] == ["official", "lite"]
    widget.method_section.config_combo.setCurrentIndex(1)
    run_and_wait(qtbot, widget)
    assert client.submitted[-1][1]["config"] == "lite"
    pick(widget, "bicubic")
    assert widget.method_section.config_combo.isHidden()
    run_and_wait(qtbot, widget)
    assert "config" not in client.submitted[-1][1]


def test_unreadable_layer_reported_not_raised(qtbot, panel):
    widget, client, host = panel

    def refuse(rect=None):
        raise ValueError("CMYK layers are not supported; convert the image to RGB")

    host.layer_pixels = refuse
    widget.run_section.run_button.click()
    assert widget.status_label.text() == "Cannot read the layer: CMYK layers are not supported; convert the image to RGB."
    assert client.submitted == [] and widget.run_section.run_button.isEnabled()


def test_a_preview_overtaken_by_a_change_is_cancelled_and_never_shown(qtbot, panel):
    widget, client, _host = panel
    pick(widget, "mmrealsr")
    client.held.add("1")
    widget.settings.set("live_preview", True)
    qtbot.waitUntil(lambda: len(client.submitted) == 1, timeout=5000)
    shown = []
    widget.preview_updated.connect(shown.append)
    widget.dials_section.sliders["blur"].setValue(66)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    client.held.clear()
    qtbot.wait(300)
    assert client.cancelled == ["1"]
    assert shown == [2] and widget.preview_section.generation == 2
    assert client.submitted[1][1]["blur"] == 0.66


def test_run_shows_stage_and_cancel_reaches_the_engine(qtbot, panel):
    widget, client, host = panel
    client.held.add("1")
    widget.run_section.run_button.click()
    qtbot.waitUntil(lambda: "upscaling tile 1/2" in widget.run_section.progress.format(), timeout=5000)
    assert widget.run_section.cancel_button.isEnabled() and not widget.run_section.run_button.isEnabled()
    widget.run_section.cancel_button.click()
    qtbot.waitUntil(lambda: client.cancelled == ["1"], timeout=5000)
    with qtbot.waitSignal(widget.job_finished, timeout=5000) as finished:
        client.held.clear()  # the engine finished the job anyway: the panel still drops it
    assert finished.args == ["cancelled"]
    assert host.applied == []


def test_preview_follows_the_view_without_new_face_detection(qtbot, panel):
    widget, client, host = panel
    pick(widget, "metaf2n")
    qtbot.waitUntil(lambda: len(widget.state.faces) == 3, timeout=5000)
    detections = len(client.analysed)
    widget.settings.set("live_preview", True)
    with qtbot.waitSignal(widget.preview_updated, timeout=5000):
        pass
    submitted = len(client.submitted)
    host.centre = (10, 10)
    with qtbot.waitSignal(widget.preview_updated, timeout=5000):
        pass
    assert len(client.submitted) == submitted + 1
    assert widget.preview_section.crop() == Rect(0, 0, 40, 40)
    assert client.submitted[-1][1]["region"] == [0, 0, 40, 40]  # only the crop is upscaled
    assert len(client.analysed) == detections


def test_preview_upscales_only_the_crop_and_sends_the_sample(qtbot, panel):
    widget, client, host = panel
    pick(widget, "cmdsr")
    host.sel = Selection(Rect(50, 30, 10, 10))
    widget.selection_section.buttons["support"].setChecked(True)
    widget.settings.set("live_preview", True)
    with qtbot.waitSignal(widget.preview_updated, timeout=5000):
        pass
    request = client.submitted[-1][1]
    assert request["support"] == [50, 30, 10, 10]
    assert request["region"] == [12, 4, 40, 40]  # the view crop; the sample lies outside it
    assert widget.preview_section.after_label.pixmap().width() == 100


def test_preview_adapts_to_the_faces_auto_found(qtbot, panel):
    widget, client, _host = panel
    pick(widget, "metaf2n")
    qtbot.waitUntil(lambda: len(widget.state.faces) == 3, timeout=5000)
    widget.settings.set("live_preview", True)
    with qtbot.waitSignal(widget.preview_updated, timeout=5000):
        pass
    request = client.submitted[-1][1]
    assert request["faces"] == [[2, 3, 10, 12], [20, 4, 8, 8], [60, 40, 4, 8]]
    assert request["region"] == list(widget.preview_section.crop().as_tuple())


def test_panels_sharing_the_settings_follow_each_other_and_outlive_each_other(qtbot, panel):
    widget, client, host = panel
    other = Panel(host, client, widget.settings)  # Krita: one panel per window, one settings object
    with qtbot.waitSignal(other.models_loaded, timeout=5000):
        pass
    combo = widget.advanced_section.device_combo
    combo.setCurrentIndex(combo.findData("cpu"))
    assert other.advanced_section.device_combo.currentData() == "cpu"
    pick(other, "cmdsr")
    other.selection_section.buttons["support"].setChecked(True)
    assert widget.selection_section.buttons["support"].isChecked()
    sip.delete(other)  # a window closed: its widgets are gone, the settings live on
    widget.settings.set("device", "auto")
    widget.settings.set("selection_use", "area")
    assert combo.currentData() == "auto"


# ---------------------------------------------------------------- issue 25: the panel as a user meets it
def test_the_panel_fits_a_short_narrow_docker_with_run_and_progress_always_shown(qtbot, panel):
    widget, _client, _host = panel
    widget.resize(240, 340)
    widget.show()
    for model in ("bicubic", "mmrealsr", "metaf2n", "cmdsr"):
        pick(widget, model)
        qtbot.wait(10)
        hint = widget.minimumSizeHint()
        assert hint.height() < 350 and hint.width() <= 240, (model, hint)
        # the settings scroll; Run, Cancel and the progress sit below them, inside the panel
        for shown in (widget.run_section.run_button, widget.run_section.progress):
            bottom = shown.mapTo(widget, shown.rect().bottomLeft()).y()
            assert shown.isVisible() and bottom <= widget.height(), (model, bottom)
    assert not widget.advanced_fold.expanded and widget.advanced_section.isHidden() is False
    assert not widget.advanced_fold.body.isVisible()
    widget.advanced_fold.header.click()
    assert widget.advanced_fold.body.isVisible() and widget.advanced_section.device_combo.isVisible()
    assert widget.preview_fold.expanded
    widget.preview_fold.header.click()
    assert not widget.preview_section.isVisible()
    widget.show_error("CUDA was requested but no CUDA GPU is usable here; choose the CPU or Auto device "
                      "instead: /a/very/long/path/that/does/not/break/anywhere/" + "x" * 120)
    assert widget.minimumSizeHint().width() <= 240  # the error wraps; it does not widen the panel


def test_method_names_are_short_and_the_full_text_is_a_tooltip(panel):
    widget, _client, _host = panel
    combo = widget.method_section.model_combo
    assert combo.itemText(combo.findData("mmrealsr")) == "MM-RealSR"
    pick(widget, "cmdsr")
    assert "adapts to a sample" in combo.toolTip() and "adapts to a sample" not in combo.currentText()
    labels = [label.text() for label in widget.findChildren(QLabel)]
    assert not any("adapts to a sample" in text for text in labels)  # no repeated summary
    long = {**MODELS[0], "id": "user:a-community-checkpoint", "title": "a-community-checkpoint-x4-v2-final"}
    widget.state.set_models(MODELS + [long], {"device": "cpu"})
    pick(widget, "user:a-community-checkpoint")
    widget.resize(200, 400)
    widget.show()
    assert combo.shown_text().endswith("…") and combo.shown_text() != combo.currentText()
    assert combo.toolTip().startswith("a-community-checkpoint-x4-v2-final\n")  # the full name and summary


def test_disabled_selection_roles_say_why_in_the_panel(qtbot, panel):
    widget, _client, host = panel
    section = widget.selection_section
    pick(widget, "bicubic")
    assert section.reason_label.text() == ("CMDSR uses the selection as a sample and MetaF2N as a face; "
                                           "Bicubic does not.")
    assert not section.reason_label.isHidden()
    pick(widget, "cmdsr")
    section.buttons["support"].setChecked(True)
    assert section.reason_label.text() == "MetaF2N uses the selection as a face; CMDSR does not."
    pick(widget, "bicubic")  # the greyed sample role is not left checked: the run uses the area
    assert section.buttons["area"].isChecked() and not section.buttons["support"].isChecked()
    host.sel = Selection(Rect(4, 6, 20, 10))
    run_and_wait(qtbot, widget)
    assert widget_request(widget)["region"] == [4, 6, 20, 10]
    pick(widget, "cmdsr")  # the saved choice comes back with a method that can use it
    assert section.buttons["support"].isChecked()


def widget_request(widget):
    return widget.state.client.submitted[-1][1]


def test_remote_engine_fields_only_when_a_remote_engine_is_used(qtbot, panel):
    widget, _client, _host = panel
    widget.show()
    widget.advanced_fold.set_expanded(True)
    engine = widget.engine_section
    assert not engine.remote_check.isChecked() and not engine.url_edit.isVisible()
    engine.remote_check.setChecked(True)
    assert engine.url_edit.isVisible() and engine.token_edit.isVisible()
    assert widget.settings.engine_mode == "remote"
    widget.settings.set("engine_mode", "managed")
    assert not engine.remote_check.isChecked() and not engine.url_edit.isVisible()


def test_devices_the_engine_cannot_use_are_not_offered(qtbot, tmp_path):
    settings = Settings(tmp_path / "settings.json")
    settings.set("device", "cuda")
    widget = Panel(GridHost(), RecordingClient(), settings)  # the engine reports a CPU
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.models_loaded, timeout=5000):
        pass
    combo = widget.advanced_section.device_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "cpu"]
    assert settings.device == "auto" and combo.currentData() == "auto"


def test_a_run_moves_the_progress_in_plain_words(qtbot, panel):
    widget, client, _host = panel
    client.steps = [{"progress": 0.05, "stage": "Estimating blur and noise"},
                    {"progress": 0.30, "stage": "Upscaling: tile 1 of 3"},
                    {"progress": 0.55, "stage": "Upscaling: tile 2 of 3"},
                    {"progress": 0.78, "stage": "Upscaling: tile 3 of 3, about 2 s left"}]
    seen = []
    widget.run_section.progress.valueChanged.connect(
        lambda value: seen.append((value, widget.run_section.progress.format())))
    assert run_and_wait(qtbot, widget) == "done"
    assert seen[1:] == [(50, "Estimating blur and noise %p%"), (300, "Upscaling: tile 1 of 3 %p%"),
                        (550, "Upscaling: tile 2 of 3 %p%"), (780, "Upscaling: tile 3 of 3, about 2 s left %p%"),
                        (980, "Adding the layer"), (1000, "Adding the layer")]
    assert widget.run_section.progress.format() == "Done"


def test_labels_come_from_the_jobs_own_request(qtbot, panel):
    widget, client, host = panel
    pick(widget, "mmrealsr")
    client.held.add("1")
    widget.run_section.run_button.click()
    qtbot.waitUntil(lambda: len(client.submitted) == 1, timeout=5000)
    pick(widget, "bicubic")  # changed during the run
    with qtbot.waitSignal(widget.job_finished, timeout=5000):
        client.held.clear()
    assert host.applied[-1][4] == "Blind Upscale ×4 (MM-RealSR)"
    assert host.applied[-1][5] == "Blind Upscale (MM-RealSR)"
    assert widget.status_label.text().startswith("MM-RealSR on ")


def test_a_stale_preview_is_marked_out_of_date(qtbot, panel):
    widget, _client, _host = panel
    pick(widget, "mmrealsr")
    widget.settings.set("live_preview", True)
    with qtbot.waitSignal(widget.preview_updated, timeout=5000):
        pass
    widget.settings.set("live_preview", False)
    widget.dials_section.sliders["blur"].setValue(70)
    assert widget.preview_section.status_label.text().startswith("Preview: out of date")


def test_a_fresh_profile_starts_on_the_best_method_with_weights(qtbot, tmp_path):
    """The order of PREFERRED_MODELS (best on real photos first), skipping those without weights."""
    def fresh_panel(models, name):
        client = RecordingClient()
        client.models = lambda: models
        widget = Panel(GridHost(), client, Settings(tmp_path / name))
        qtbot.addWidget(widget)
        with qtbot.waitSignal(widget.models_loaded, timeout=5000):
            pass
        return widget.method_section.model_combo.currentData()

    assert fresh_panel(MODELS, "a.json") == "mmrealsr"
    no_mmrealsr = [{**m, "weights": "missing"} if m["id"] == "mmrealsr" else m for m in MODELS]
    assert fresh_panel([{**m, "weights": "bundled"} if m["id"] == "kdsr" else m for m in no_mmrealsr],
                       "b.json") == "kdsr"
    assert fresh_panel(no_mmrealsr, "c.json") == "cmdsr"


def test_a_failed_model_listing_can_be_asked_again_and_is_never_doubled(qtbot, tmp_path):
    client = RecordingClient()
    answers = [RuntimeError("The engine at http://127.0.0.1:1 is not reachable (timed out)."), MODELS]
    calls = []

    def models():
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client.models = models
    widget = Panel(GridHost(), client, Settings(tmp_path / "s.json"))
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.engine_unavailable, timeout=5000) as failed:
        pass
    assert "not reachable" in failed.args[0] and widget.current_model() is None
    with qtbot.waitSignal(widget.models_loaded, timeout=5000):
        widget.list_models()
        widget.list_models()  # already on its way: not asked twice
    assert len(calls) == 2 and widget.current_model() is not None


def test_a_hung_engine_fails_the_run_in_one_sentence_and_leaves_the_document(qtbot, tmp_path):
    """Issue 21, defect 4, end to end: the panel's run on a real engine that is stopped (SIGSTOP)
    mid-job ends "failed" with the supervisor's sentence, and the layer is left as it was."""
    import signal
    import sys
    from pathlib import Path

    from plugin.engine_process import EngineProcess, SupervisedClient

    process = EngineProcess(sys.executable, str(Path(__file__).resolve().parents[1]), start_timeout=120)
    client, host = SupervisedClient(process), GridHost()
    host.image = RawImage(600, 600, 4, "u8", bytes(range(256)) * (600 * 600 * 4 // 256))
    before = host.image.data
    settings = Settings(tmp_path / "settings.json")
    for name, value in (("live_preview", False), ("auto_faces", False), ("tile", 16)):
        settings.set(name, value)
    try:
        client.health()  # starts the engine
        process.client.timeout = 300.0  # a loaded test machine lists the models slowly the first time
        widget = Panel(host, client, settings)
        qtbot.addWidget(widget)
        qtbot.waitUntil(lambda: widget.method_section.model_combo.count() > 0, timeout=300_000)
        process.client.answer_timeout = 2.0  # the default 5 s, shortened for the test
        hung_pid = process.pid
        with qtbot.waitSignal(widget.run_section.follower.progressed, timeout=60_000):
            widget.run_section.run_button.click()
        os.kill(hung_pid, signal.SIGSTOP)
        with qtbot.waitSignal(widget.job_finished, timeout=60_000) as finished:
            pass
        assert finished.args == ["failed"]
        assert widget.status_label.text().startswith("The engine stopped answering (no reply within 2 s)")
        assert host.applied == [] and host.image.data == before
        assert not process.running() and widget.run_section.run_button.isEnabled()
    finally:
        client.close()


USER_MODELS = [
    {"id": "user:4x-span", "family": "SPAN", "title": "4x-span", "summary": "Your own SPAN ×4 model",
     "scale": 4, "controls": [], "adaptation": [], "weights": "user",
     "configs": [{"id": "user:4x-span:checkpoint", "params": 400_000, "weights": "user"}],
     "checkpoint": {"file": "/m/4x-span.pth", "architecture": "SPAN", "scale": 4, "params": 400_000,
                    "tags": [], "tiling": "supported",
                    "size_requirements": {"minimum": 16, "multiple_of": 8, "square": False}}},
    {"id": "user:evil", "family": "unusable", "title": "evil", "summary": "evil.pth was refused",
     "scale": 1, "controls": [], "adaptation": [], "weights": "unusable",
     "configs": [{"id": "user:evil:checkpoint", "params": 0, "weights": "unusable"}],
     "checkpoint": {"file": "/m/evil.pth"}, "reason": "evil.pth was refused: it holds pickled code"},
]


def test_user_models_have_their_own_group_and_refresh_without_restart(qtbot, tmp_path):
    class FolderClient(RecordingClient):
        listed = list(MODELS)

        def models(self):
            return self.listed

        def health(self):
            return {**super().health(), "models_dir": str(tmp_path / "elsewhere" / "models")}

    client = FolderClient()
    widget = Panel(GridHost(), client, Settings(tmp_path / "settings.json"))
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.models_loaded, timeout=5000):
        pass
    combo = widget.method_section.model_combo
    assert combo.findText("Your own models") < 0

    client.listed = MODELS + USER_MODELS
    with qtbot.waitSignal(widget.state.models_changed, timeout=5000):
        widget.method_section.refresh_button.click()
    items = combo.model()
    heading = combo.findText("Your own models")
    span, evil = combo.findData("user:4x-span"), combo.findData("user:evil")
    assert max(combo.findData(m["id"]) for m in MODELS) < heading < span < evil
    assert not items.item(heading).isEnabled() and combo.itemData(heading) is None
    assert items.item(span).isEnabled()
    assert "Input: at least 16 px, a multiple of 8 px" in items.item(span).toolTip()
    assert not items.item(evil).isEnabled() and "(unusable)" in combo.itemText(evil)
    assert items.item(evil).toolTip() == "Disabled: evil.pth was refused: it holds pickled code"
    assert "1 of your own models usable, 1 not" in widget.status_label.text()
    pick(widget, "user:4x-span")
    assert widget.state.settings.model == "user:4x-span"
    scales = widget.method_section.scale_combo
    assert [scales.itemData(i) for i in range(scales.count())] == [2, 3, 4]

    client.listed = MODELS + [{**USER_MODELS[0], "id": "user:1x-denoise", "scale": 1}]
    with qtbot.waitSignal(widget.state.models_changed, timeout=5000):
        widget.method_section.refresh_button.click()
    pick(widget, "user:1x-denoise")
    assert [scales.itemData(i) for i in range(scales.count())] == [1]
    assert widget.state.settings.scale == 1

    # the folder of an engine on another machine is named, not opened
    widget.method_section.folder_button.click()
    qtbot.waitUntil(lambda: "models folder" in widget.status_label.text(), timeout=5000)
    assert str(tmp_path / "elsewhere" / "models") in widget.status_label.text()


class RestorerClient(RecordingClient):
    """An engine whose health says whether its face restorer is installed; a finished job's last
    stage carries the engine's notes, as core.job_queue reports it."""

    restorer: str | None = "missing"

    def health(self):
        health = super().health()
        return health if self.restorer is None else {**health, "face_restorer": self.restorer}

    def status(self, job_id):
        status = super().status(job_id)
        if status["state"] == "done":
            status["stage"] = "Done in 0.1 s; 1 face(s) restored"
        return status


def test_restore_faces_is_offered_after_any_method_once_the_engine_has_a_restorer(qtbot, tmp_path):
    client, settings = RestorerClient(), Settings(tmp_path / "settings.json")
    settings.set("live_preview", False)
    settings.set("restore_faces", True)  # chosen in an earlier session, with another engine
    widget = Panel(GridHost(), client, settings)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.models_loaded, timeout=5000):
        pass
    section = widget.face_restore_section
    assert not section.restore_check.isEnabled() and not section.restore_check.isChecked()
    assert section.reason_label.text() == ("No face restorer is installed: put face_restorer_lite.safetensors "
                                           "in the models folder, then Refresh.")
    assert not section.reason_label.isHidden()
    pick(widget, "bicubic")
    assert run_and_wait(qtbot, widget) == "done"
    assert "restore_faces" not in widget_request(widget)
    assert settings.restore_faces is True  # greyed, not forgotten

    client.restorer = "user"  # the user put the file in the models folder
    with qtbot.waitSignal(widget.state.models_changed, timeout=5000):
        widget.method_section.refresh_button.click()
    assert section.restore_check.isEnabled() and section.restore_check.isChecked()
    assert section.reason_label.isHidden()
    for model in ("metaf2n", "cmdsr", "bicubic"):  # bicubic last: no face search is out when the test ends
        pick(widget, model)
        assert run_and_wait(qtbot, widget) == "done"
        assert widget_request(widget)["restore_faces"] is True
    assert widget.status_label.text().endswith("; 1 face(s) restored.")

    section.restore_check.setChecked(False)
    assert Settings(tmp_path / "settings.json").restore_faces is False  # saved at once
    assert run_and_wait(qtbot, widget) == "done"
    assert "restore_faces" not in widget_request(widget)

    client.restorer = None  # an engine from before the option
    with qtbot.waitSignal(widget.state.models_changed, timeout=5000):
        widget.method_section.refresh_button.click()
    assert not section.restore_check.isEnabled()
    assert section.reason_label.text() == "This engine cannot restore faces; update it."
