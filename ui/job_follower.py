"""One engine job followed from submission to its outcome: the machine a run and the preview share.

    start -> submitting -> polling the status every POLL_MS -> fetching the result -> `ended`

`cancel()` asks the engine to stop and ends the job "cancelled" even if the engine finishes it
anyway; `drop()` forgets the job (the engine is told to stop) and reports nothing, for a preview
overtaken by a change. Outcomes of a job that is no longer the current one are ignored, so no
callback needs to know what happened meanwhile.
"""
from __future__ import annotations

from ui.calls import Calls, plain_error
from ui.qt import QObject, QTimer, Signal

POLL_MS = 100


class _Job:
    def __init__(self, client):
        self.client = client
        self.id: str | None = None
        self.cancelled = False
        self.asking = False  # a status or result call is out: one question at a time


class JobFollower(QObject):
    progressed = Signal(object)        # the status dict while the job is queued or running
    ended = Signal(str, object, str)   # "done", "failed" or "cancelled"; the RawImage when done; the error,
    #                                    or when done the engine's last stage ("Done in 1.2 s; <notes>")

    def __init__(self, calls: Calls, parent: QObject | None = None):
        super().__init__(parent)
        self._calls = calls
        self._job: _Job | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def job_id(self) -> str | None:
        """The engine's id of the job followed, once it was submitted."""
        return self._job.id if self._job is not None else None

    @property
    def cancelling(self) -> bool:
        return self._job is not None and self._job.cancelled

    def start(self, client, image, request: dict) -> None:
        """Submit a job (the current one, if any, is dropped)."""
        self.drop()
        job = self._job = _Job(client)
        self._calls.start(lambda: client.submit(image, request), lambda r, e: self._on_submitted(job, r, e))

    def cancel(self) -> None:
        job = self._job
        if job is None or job.cancelled:
            return
        job.cancelled = True
        if job.id is not None:
            self._tell_cancel(job)

    def drop(self) -> None:
        job, self._job = self._job, None
        self._timer.stop()
        if job is not None and job.id is not None:
            self._tell_cancel(job)

    def _tell_cancel(self, job: _Job) -> None:
        # A failed cancel needs no report of its own: the next status poll meets the same failure.
        self._calls.start(lambda: job.client.cancel(job.id), lambda _r, _e: None)

    def _on_submitted(self, job: _Job, job_id, error) -> None:
        if error is not None:
            self._end(job, "failed", None, plain_error(error))
            return
        job.id = str(job_id)
        if job is not self._job or job.cancelled:  # dropped or cancelled while being sent
            self._tell_cancel(job)
        if job is self._job:
            self._timer.start()

    def _poll(self) -> None:
        """Ask for the status off the GUI thread (a remote engine may answer slowly)."""
        job = self._job
        if job is None or job.id is None or job.asking:
            return
        job.asking = True
        self._calls.start(lambda: job.client.status(job.id), lambda r, e: self._on_status(job, r, e))

    def _on_status(self, job: _Job, status, error) -> None:
        if job is not self._job:
            return
        if error is not None:  # the engine went away: say so and stop following the job
            self._end(job, "failed", None, plain_error(error))
            return
        state = status.get("state")
        if state == "done":
            self._timer.stop()
            stage = str(status.get("stage") or "")
            self._calls.start(lambda: job.client.result(job.id), lambda r, e: self._on_result(job, r, e, stage))
            return
        job.asking = False
        if state in ("failed", "cancelled"):
            self._end(job, state, None, status.get("error") or "")
        else:
            self.progressed.emit(status)

    def _on_result(self, job: _Job, result, error, stage: str) -> None:
        if error is not None:
            self._end(job, "failed", None, plain_error(error))
        elif job.cancelled:
            self._end(job, "cancelled", None, "")
        else:
            self._end(job, "done", result, stage)

    def _end(self, job: _Job, state: str, result, message: str) -> None:
        if job is not self._job:
            return
        self._job = None
        self._timer.stop()
        self.ended.emit(state, result, message)
