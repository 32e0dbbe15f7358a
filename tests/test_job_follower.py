"""The job follower's machine on its own: submit, poll, result, cancel, drop, errors."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from ui.calls import Calls
from ui.job_follower import JobFollower
from ui.qt import QObject


class Client:
    def __init__(self, states):
        self.states = list(states)  # the status answers, in order; the last one repeats
        self.cancelled: list[str] = []
        self.submit_error: Exception | None = None

    def submit(self, image, request):
        if self.submit_error:
            raise self.submit_error
        return 7

    def status(self, job_id):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"state": state, "progress": 0.5, "stage": "", "error": "boom" if state == "failed" else None}

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def result(self, job_id):
        return f"image of {job_id}"


@pytest.fixture
def machine(qapp):
    owner = QObject()  # the panel's part: parent of the calls and the follower
    yield JobFollower(Calls(owner), owner)


def test_a_job_is_followed_to_its_result(qtbot, machine):
    client = Client(["queued", "running", "done"])
    seen = []
    machine.progressed.connect(lambda status: seen.append(status["state"]))
    with qtbot.waitSignal(machine.ended, timeout=5000) as ended:
        machine.start(client, None, {})
    assert ended.args == ["done", "image of 7", ""] and seen == ["queued", "running"]
    assert not machine.busy


def test_a_cancelled_job_ends_cancelled_even_if_the_engine_finishes_it(qtbot, machine):
    client = Client(["done"])
    with qtbot.waitSignal(machine.ended, timeout=5000) as ended:
        machine.start(client, None, {})
        machine.cancel()  # before the engine even named the job: told once it has
    assert ended.args[0] == "cancelled" and client.cancelled == ["7"]


def test_failures_come_as_sentences_and_a_dropped_job_reports_nothing(qtbot, machine):
    client = Client(["failed"])
    with qtbot.waitSignal(machine.ended, timeout=5000) as ended:
        machine.start(client, None, {})
    assert ended.args == ["failed", None, "boom"]
    client.submit_error = OSError("connection refused")
    with qtbot.waitSignal(machine.ended, timeout=5000) as ended:
        machine.start(client, None, {})
    assert ended.args[2] == "Cannot reach the engine (connection refused)."
    client.submit_error, client.states = None, ["running"]
    ended = []
    machine.ended.connect(lambda *args: ended.append(args))
    machine.start(client, None, {})
    qtbot.waitUntil(lambda: machine.job_id == "7", timeout=5000)
    machine.drop()
    qtbot.waitUntil(lambda: client.cancelled == ["7"], timeout=5000)
    qtbot.wait(200)
    assert ended == [] and not machine.busy
