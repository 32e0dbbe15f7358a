"""The run section: the Blind Upscale button, Cancel, the progress bar; the result as a new layer."""
from __future__ import annotations

import time

from protocol.errors import sentence
from ui.calls import plain_error
from protocol.host import Rect
from ui.job_follower import JobFollower
from ui.qt import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget, Signal
from ui.request import build_request, engine_notes, result_area, result_layer_name
from ui.state import PanelState

STATE_WORDS = {"queued": "Waiting for the engine", "running": "Working"}


class RunSection(QWidget):
    started = Signal()         # a run was sent to the engine
    finished = Signal(str)     # "done", "failed" or "cancelled"
    applied = Signal(str)      # the new layer's name

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._source: Rect | None = None
        self._mask: bytes | None = None
        self._request: dict = {}
        self._model: dict = {}  # the method of the run under way: labels never read the combo
        self._started = 0.0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.run_button = QPushButton("Blind Upscale")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        layout.addWidget(self.progress)
        self.follower = JobFollower(state.calls, self)
        self.follower.progressed.connect(self._on_progress)
        self.follower.ended.connect(self._on_ended)
        state.models_changed.connect(self._enable)
        state.settings.changed.connect(self._on_setting_changed)
        self._enable()

    def _on_setting_changed(self, name: str) -> None:
        if name == "model":
            self._enable()

    def _enable(self) -> None:
        self.run_button.setEnabled(self.state.current_model() is not None and not self.state.running)

    def run(self) -> None:
        """Start a Blind Upscale of the active layer (or selection) with the current settings."""
        state = self.state
        if state.running:
            return
        if state.client is None:
            state.show_error("No engine connected.")
            return
        if state.current_model() is None:
            state.show_error("Pick a method first (the engine has not listed any yet).")
            return
        if not state.host.has_image():
            state.show_error("There is no layer to upscale.")
            return
        try:
            request_state = state.request_state()
            image = state.host.layer_pixels()
        except Exception as exc:  # the host cannot give this layer (format, size): say why
            state.show_error(f"Cannot read the layer: {plain_error(exc)}")
            return
        self._request = build_request(request_state)
        self._model = request_state.model
        self._source, self._mask = result_area(request_state)
        self._started = time.monotonic()
        state.set_running(True)
        self.follower.start(state.client, image, self._request)
        self.started.emit()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat("Sending the image…")
        state.show_status(f"Upscaling with {self._title()}…")

    def _title(self) -> str:
        return self._model.get("title") or self._request.get("model", "")

    def cancel(self) -> None:
        if self.follower.busy:
            self.follower.cancel()
            self.progress.setFormat("Cancelling…")

    def _on_progress(self, status: dict) -> None:
        stage = status.get("stage") or STATE_WORDS.get(status.get("state"), "")
        self.progress.setFormat("Cancelling…" if self.follower.cancelling else f"{stage} %p%")
        self.progress.setValue(int(1000 * float(status.get("progress") or 0.0)))

    def _on_ended(self, outcome: str, result, message: str) -> None:
        notes = ""
        if outcome == "done":
            notes = engine_notes(message)
            outcome, message = self._apply(result)
        self.cancel_button.setEnabled(False)
        state = self.state
        if outcome == "done":
            self.progress.setValue(1000)
            self.progress.setFormat("Done")
            device = self._request["device"] if self._request["device"] != "auto" else (state.device_name or "auto")
            state.show_status(f"{self._title()} on {device}: {time.monotonic() - self._started:.1f} s"
                              + (f"; {notes}" if notes else "") + ".")
        elif outcome == "cancelled":
            self.progress.setValue(0)
            self.progress.setFormat("Cancelled")
            state.show_status("Cancelled; nothing was changed.")
        else:
            self.progress.setValue(0)
            self.progress.setFormat("Failed")
            state.show_error(sentence(message) or "The engine failed without saying why.")
        state.set_running(False)
        self._enable()
        self.finished.emit(outcome)

    def _apply(self, result) -> tuple[str, str]:
        """The result as a new layer above the source; ("failed", why) when the host refuses it."""
        scale = int(self._request["scale"])
        name = result_layer_name(scale, self._model or {"id": self._request["model"]})
        self.progress.setFormat("Adding the layer")
        self.progress.setValue(980)
        self.progress.repaint()  # the host works on the GUI thread: show the step before it
        try:
            self.state.host.apply_result(result, self._source, scale, name,
                                         f"Blind Upscale ({self._title()})", mask=self._mask)
        except Exception as exc:  # the host refused the layer: nothing was changed
            return "failed", f"Could not add the result layer: {plain_error(exc)}"
        self.applied.emit(name)
        return "done", ""
