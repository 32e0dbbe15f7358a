"""Client calls off the GUI thread: outcomes reach a live panel on the GUI thread, and a panel closed
while its calls are out is never touched by them (a crash there takes the host and its unsaved work)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.test_panel import GridHost, RecordingClient
from ui.calls import Calls
from ui.panel import Panel
from ui.qt import QObject, sip
from ui.settings import Settings


def join_calls() -> None:
    for thread in threading.enumerate():
        if thread.name == "blind-upscale-call":
            thread.join(timeout=5)


def test_outcomes_and_errors_come_back_on_the_gui_thread(qtbot):
    owner = QObject()
    calls = Calls(owner)
    seen = {}
    calls.start(lambda: 4, lambda result, error: seen.update(result=(result, error, threading.current_thread())))
    calls.start(lambda: 1 / 0, lambda result, error: seen.update(error=(result, type(error), threading.current_thread())))
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
    main = threading.main_thread()
    assert seen == {"result": (4, None, main), "error": (None, ZeroDivisionError, main)}


class HeldClient(RecordingClient):
    """Answers the model list only once `gate` is set."""

    def __init__(self, gate: threading.Event):
        super().__init__()
        self.gate = gate

    def models(self):
        self.gate.wait()
        return super().models()


def test_a_panel_closed_with_calls_out_is_left_alone(qtbot, tmp_path, monkeypatch):
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(repr(args.exc_value)))
    gate = threading.Event()
    panel = Panel(GridHost(), HeldClient(gate), Settings(tmp_path / "settings.json"))
    loaded = []
    panel.models_loaded.connect(lambda: loaded.append(True))
    for _ in range(10):
        panel.state.calls.start(gate.wait, lambda _r, _e: loaded.append(False))
    sip.delete(panel)  # the docker closed while the model list was out
    gate.set()
    join_calls()
    qtbot.wait(50)
    assert loaded == [] and thread_errors == []  # before: RuntimeError "wrapped C/C++ object ... deleted"


# Panels deleted (sip.delete, deleteLater) while their calls' threads finish: before the relay,
# a worker emitting on a Calls that Qt was destroying segfaulted within a few rounds.
STRESS = """
import random, threading, time
from ui.qt import QApplication, QObject, QtCore, sip
from ui.settings import Settings
from ui.state import PanelState

app = QApplication([])
settings = Settings(SETTINGS)
late, thread_errors = [], []
threading.excepthook = lambda args: thread_errors.append(repr(args.exc_value))
random.seed(0)
for _ in range(ROUNDS):
    gate = threading.Event()
    panels = [QObject() for _ in range(5)]
    for panel in panels:
        state = PanelState(None, None, settings, panel)
        for _ in range(20):
            state.calls.start(gate.wait, lambda _r, _e, panel=panel: late.append(1) if sip.isdeleted(panel) else None)
    delay = random.random() * 0.002
    threading.Timer(delay, gate.set).start()
    for number, panel in enumerate(panels):
        time.sleep(delay / 5)
        panel.deleteLater() if number % 2 else sip.delete(panel)
        app.processEvents()
        app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    del panels, panel, state
    time.sleep(0.005)
    app.processEvents()
for thread in threading.enumerate():
    if thread.name == "blind-upscale-call":
        thread.join(timeout=5)
app.processEvents()
print("late", len(late), "thread errors", thread_errors[:3])
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], cwd=Path(__file__).resolve().parents[1],
                          env=env, capture_output=True, text=True, timeout=300)


def test_panels_deleted_while_their_calls_finish_do_not_crash(tmp_path):
    done = run_python(STRESS.replace("SETTINGS", repr(str(tmp_path / "settings.json"))).replace("ROUNDS", "60"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "late 0 thread errors []" in done.stdout, done.stdout + done.stderr[-3000:]


# The application quits as its calls' threads finish: before, four exits in five crashed or printed
# RuntimeErrors (Qt objects deleted at exit under a worker's emit).
AT_EXIT = """
import random, threading
from ui.calls import Calls
from ui.qt import QApplication, QObject

app = QApplication([])
panel = QObject()
calls = Calls(panel)
gate = threading.Event()
for _ in range(100):
    calls.start(gate.wait, lambda _r, _e: None)
threading.Timer(random.random() * 0.002, gate.set).start()
"""


def test_quitting_while_calls_finish_does_not_crash():
    for _ in range(20):
        done = run_python(AT_EXIT)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
