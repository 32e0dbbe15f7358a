"""Test driver for tests/test_krita_integration.py, installed next to the packaged plug-in.

Once Krita's window exists it: (1) opens `small.png`, triggers the `blind_upscale` action with the
plug-in's default settings and records the document, the new layer's pixels, the canvas zoom
before and after, where the docker's Run button lies on the screen, and a screenshot of the docker
(`docker.png`); (2) moves a community model file and face weights into the models folder, presses
Refresh, picks the model and upscales `user.png` with it; (3) ticks "Restore faces" and upscales
`portrait.png` with bicubic; selects the face of `face.png` with Krita's API, gives the selection
the role "Face" and upscales with MetaF2N, recording the requests the panel sends; (4) opens `large.png`, triggers the action (bicubic, 16-pixel tiles), kills the
engine process while the job runs, and records the document again and the panel's error. It writes `report.json` into
$BLIND_UPSCALE_TEST_DIR and leaves with os._exit (Krita would otherwise ask to save changes).
"""
import hashlib
import json
import os
import shutil
import signal
import time
import traceback

from krita import Extension, Krita, Selection

try:
    from PyQt6.QtCore import QTimer
except ImportError:
    from PyQt5.QtCore import QTimer

OUT = os.environ.get("BLIND_UPSCALE_TEST_DIR", "")
USER_MODEL = "user:compact4"  # the file tests/test_krita_integration.py stages: compact4.safetensors
FACE_BOX = (4, 4, 40, 40)  # where face.png has its face
WATCHDOG_S = 360  # a fresh profile on a busy machine: the engine alone may take a minute to start
report = {"steps": []}
sent = []  # the requests the panel handed its engine client, once record_requests() ran


def log(step):
    report["steps"].append([round(time.monotonic() - STARTED, 2), step])


def finish(code=0):
    try:
        with open(os.path.join(OUT, "report.json"), "w") as f:
            json.dump(report, f)
    finally:
        os._exit(code)


def fail(message):
    report["error"] = message
    finish(2)


def guarded(fn):
    def wrapper(*args):
        try:
            fn(*args)
        except Exception:
            fail(traceback.format_exc())
    return wrapper


def docker():
    from blind_upscale.extension import BlindUpscaleDocker
    return BlindUpscaleDocker.instances[0] if BlindUpscaleDocker.instances else None


def panel():
    return docker().panel if docker() is not None else None


def zoom():
    return Krita.instance().activeWindow().activeView().canvas().zoomLevel()


def placement(widget):
    """Whether `widget` shows on the screen: visible, not clipped away, inside the screen."""
    bottom = widget.mapToGlobal(widget.rect().bottomRight())
    screen = widget.screen().geometry()
    return {"visible": widget.isVisible(), "shown_area": not widget.visibleRegion().isEmpty(),
            "bottom": bottom.y(), "right": bottom.x(), "screen": [screen.width(), screen.height()]}


def open_document(name):
    app = Krita.instance()
    doc = app.openDocument(os.path.join(OUT, name))
    app.activeWindow().addView(doc)
    app.setActiveDocument(doc)
    doc.waitForDone()
    doc.setActiveNode(doc.topLevelNodes()[0])
    return doc


def describe(doc):
    nodes = doc.topLevelNodes()
    return {"size": [doc.width(), doc.height()], "layers": [n.name() for n in nodes],
            "depth": doc.colorDepth(), "model": doc.colorModel(),
            "first_layer_sha1": hashlib.sha1(bytes(nodes[0].pixelData(0, 0, doc.width(), doc.height()))).hexdigest()}


@guarded
def start():
    log("window created")
    if panel() is None:
        fail("the Blind Upscale docker was not created")
    doc = open_document("small.png")
    report["small_before"] = describe(doc)
    report["docker_shown_by_default"] = docker().isVisible()
    docker().show()
    report["zoom_before"] = zoom()
    p = panel()
    report["run_button"] = placement(p.run_section.run_button)
    report["progress_bar"] = placement(p.run_section.progress)
    report["panel_minimum_height"] = p.minimumSizeHint().height()
    p.job_finished.connect(on_small_finished)
    log("trigger 1")
    Krita.instance().action("blind_upscale").trigger()


def job_ended(name, handler, state):
    """Records `<name>_state/_status/_after` and writes the new layer's pixels to `<name>_layer.bgra`;
    returns the document and the new layer."""
    p = panel()
    p.job_finished.disconnect(handler)
    log(f"job {name} {state}")
    doc = Krita.instance().activeDocument()
    report[f"{name}_state"] = state
    report[f"{name}_status"] = p.status_label.text()
    report[f"{name}_after"] = describe(doc)
    new = [n for n in doc.topLevelNodes() if n.name() not in report[f"{name}_before"]["layers"]][0]
    with open(os.path.join(OUT, f"{name}_layer.bgra"), "wb") as f:
        f.write(bytes(new.pixelData(0, 0, doc.width(), doc.height())))
    return doc, new


@guarded
def on_small_finished(state):
    p = panel()
    doc, new = job_ended("small", on_small_finished, state)
    report["model"] = p.settings.model  # a fresh profile's default, once the engine listed its models
    report["zoom_after"] = zoom()
    report["active_layer_after"] = doc.activeNode().name()
    report["horizontal_scroll_bar"] = p.scroll.horizontalScrollBar().isVisible()
    report["restore_offered"] = [p.face_restore_section.restore_check.isEnabled()]  # no restorer yet
    report["new_layer"] = {"name": new.name(), "type": new.type(),
                           "bounds": [new.bounds().x(), new.bounds().y(), new.bounds().width(), new.bounds().height()]}
    # for the README: the docker floated to a usual size, once the preview of the source is back
    docker().setFloating(True)
    docker().resize(300, 720)
    p.settings.set("live_preview", True)
    p.preview_updated.connect(take_screenshot)
    QTimer.singleShot(20000, take_screenshot)


@guarded
def take_screenshot(*_):
    if "screenshot" in report:
        return
    report["screenshot"] = docker().grab().save(os.path.join(OUT, "docker.png"))
    panel().settings.set("live_preview", False)
    QTimer.singleShot(100, start_user_model)


@guarded
def start_user_model():
    """A user drops a community model and face weights into the models folder while Krita runs and
    presses Refresh."""
    staged = os.environ["BLIND_UPSCALE_TEST_STAGED"]
    for name in os.listdir(staged):
        shutil.move(os.path.join(staged, name), os.path.join(os.environ["BLIND_UPSCALE_MODELS"], name))
    p = panel()
    p.state.models_changed.connect(on_models_refreshed)
    log("refresh models")
    p.method_section.refresh_button.click()


@guarded
def on_models_refreshed():
    p = panel()
    p.state.models_changed.disconnect(on_models_refreshed)
    combo = p.method_section.model_combo
    index = combo.findData(USER_MODEL)
    report["user_model_listed"] = [combo.itemText(i) for i in range(combo.count())]
    report["user_model_enabled"] = index >= 0 and combo.model().item(index).isEnabled()
    report["restore_offered"].append(p.face_restore_section.restore_check.isEnabled())
    if index < 0:
        fail(f"{USER_MODEL} is not listed after Refresh: {report['user_model_listed']}")
    combo.setCurrentIndex(index)  # as the user picks it
    doc = open_document("user.png")
    report["user_before"] = describe(doc)
    p.job_finished.connect(on_user_model_finished)
    log("trigger user model")
    Krita.instance().action("blind_upscale").trigger()


@guarded
def on_user_model_finished(state):
    report["user_layer"] = job_ended("user", on_user_model_finished, state)[1].name()
    QTimer.singleShot(100, start_restore_faces)


def record_requests():
    """From now on, every request the panel hands its engine client goes to `sent` as handed
    (the box of a face selection cannot be told from MetaF2N's pixels)."""
    client = panel().client
    submit = client.submit

    def record(image, request):
        sent.append(dict(request))
        return submit(image, request)

    client.submit = record


@guarded
def start_restore_faces():
    record_requests()
    doc = open_document("portrait.png")
    report["restore_before"] = describe(doc)
    p = panel()
    p.settings.set("model", "bicubic")
    p.face_restore_section.restore_check.click()  # as the user ticks it: nothing while it is greyed
    p.job_finished.connect(on_restore_faces_finished)
    log("trigger restore faces")
    Krita.instance().action("blind_upscale").trigger()


@guarded
def on_restore_faces_finished(state):
    job_ended("restore", on_restore_faces_finished, state)
    report["restore_request"] = sent[-1]
    panel().face_restore_section.restore_check.click()
    QTimer.singleShot(100, start_face_box)


@guarded
def start_face_box():
    """The user selects the face, picks MetaF2N and says the selection is a face (and that faces are
    not to be detected besides)."""
    doc = open_document("face.png")
    report["face_box_before"] = describe(doc)
    chosen = Selection()
    chosen.select(*FACE_BOX, 255)
    doc.setSelection(chosen)
    selection = doc.selection()
    report["face_selection"] = [selection.x(), selection.y(), selection.width(), selection.height()]
    p = panel()
    p.faces_section.auto_check.setChecked(False)
    combo = p.method_section.model_combo
    combo.setCurrentIndex(combo.findData("metaf2n"))
    p.selection_section.buttons["face"].click()
    p.job_finished.connect(on_face_box_finished)
    log("trigger face box")
    Krita.instance().action("blind_upscale").trigger()


@guarded
def on_face_box_finished(state):
    job_ended("face_box", on_face_box_finished, state)
    report["face_box_request"] = sent[-1]
    QTimer.singleShot(100, start_large)


@guarded
def start_large():
    doc = open_document("large.png")
    report["large_before"] = describe(doc)
    p = panel()
    p.settings.set("model", "bicubic")
    p.settings.set("tile", 16)
    p.job_finished.connect(on_large_finished)
    log("trigger 2")
    Krita.instance().action("blind_upscale").trigger()
    QTimer.singleShot(50, kill_when_running)


@guarded
def kill_when_running():
    p = panel()
    job_id = p.run_section.follower.job_id
    if job_id is not None:
        status = p.client.status(job_id)
        if status["state"] == "running" and status["progress"] > 0.3:
            from blind_upscale.extension import BlindUpscaleExtension
            process = BlindUpscaleExtension.instance.connection.client.process
            report["killed_at"] = status
            log(f"kill engine {process.pid}")
            os.kill(process.pid, signal.SIGKILL)
            return
        if status["state"] not in ("queued", "running"):
            fail(f"the large job ended before it could be killed: {status}")
    QTimer.singleShot(20, kill_when_running)


@guarded
def on_large_finished(state):
    log(f"job 2 {state}")
    doc = Krita.instance().activeDocument()
    report["large_state"] = state
    report["large_status"] = panel().status_label.text()
    report["large_after"] = describe(doc)
    finish(0)


class TestDriver(Extension):
    def setup(self):
        notifier = Krita.instance().notifier()
        notifier.setActive(True)
        notifier.windowCreated.connect(lambda: QTimer.singleShot(500, start))
        QTimer.singleShot(WATCHDOG_S * 1000, lambda: fail(f"watchdog: no result after {WATCHDOG_S} s"))

    def createActions(self, window):
        pass


STARTED = time.monotonic()
Krita.instance().addExtension(TestDriver(Krita.instance()))
