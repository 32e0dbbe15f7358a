"""The Blind Upscale dock panel: pick a method, steer it, preview it, run it.

This file only assembles the sections (ui/sections.py, ui/faces.py, ui/preview.py, ui/run.py)
around the shared `PanelState`, follows the editor, and offers the hosts their API. It sees the
editor only through `protocol.host.Host` and the engine only through a client with the interface of
docs/internals.md ("The client interface"); client calls run off the GUI thread (ui/calls.py).
"""
from __future__ import annotations

from ui.calls import plain_error
from ui.engine_setup import EngineSetupSection, wrapping_label
from ui.faces import FacesSection
from protocol.host import Host
from ui.preview import PreviewSection
from ui.qt import QFrame, QScrollArea, Qt, QTimer, QVBoxLayout, QWidget, Signal
from ui.run import RunSection
from ui.sections import (AdvancedSection, Collapsible, DialsSection, EngineSection, FaceRestoreSection,
                         MethodSection, SelectionSection)
from ui.settings import Settings
from ui.state import PanelState

HOST_POLL_MS = 500  # active layer / selection / view change polling


class Panel(QWidget):
    """The dock widget's content: the settings scroll, folded into "Preview" and "Advanced"; the
    Run/Cancel row, the progress and the status stay at the bottom, visible in a short docker."""

    result_applied = Signal(str)   # the new layer's name
    job_started = Signal()         # a run was sent to the engine
    job_finished = Signal(str)     # "done", "failed" or "cancelled", after a run
    preview_updated = Signal(int)  # the generation shown
    models_loaded = Signal()
    engine_settings_changed = Signal()
    engine_unavailable = Signal(str)   # the engine did not answer the model list: why
    engine_folder_chosen = Signal(str)  # first run: the user picked this project folder
    engine_retry = Signal()            # first run: the user asked to try the engine again

    def __init__(self, host: Host, client, settings: Settings, parent: QWidget | None = None,
                 show_engine_settings: bool = True):
        super().__init__(parent)
        self.state = PanelState(host, client, settings, self)
        self.settings = settings
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.method_section = MethodSection(self.state)
        self.face_restore_section = FaceRestoreSection(self.state)
        self.dials_section = DialsSection(self.state)
        self.selection_section = SelectionSection(self.state)
        self.faces_section = FacesSection(self.state)
        self.preview_section = PreviewSection(self.state)
        self.advanced_section = AdvancedSection(self.state)
        self.engine_section = EngineSection(self.state)
        self.engine_section.setVisible(show_engine_settings)
        self.preview_fold = Collapsible("Preview", self.preview_section, expanded=True)
        self.advanced_fold = Collapsible("Advanced", self.advanced_section, self.engine_section)
        self.run_section = RunSection(self.state)
        self.status_label = wrapping_label(selectable=True)  # a long message wraps, never widens the panel
        self.engine_setup = EngineSetupSection()
        self.engine_setup.folder_chosen.connect(self.engine_folder_chosen)
        self.engine_setup.retry.connect(self.engine_retry)

        content = QWidget()
        settings_layout = QVBoxLayout(content)
        settings_layout.setContentsMargins(0, 0, 0, 0)
        for section in (self.method_section, self.face_restore_section, self.dials_section, self.selection_section,
                        self.faces_section, self.preview_fold, self.advanced_fold):
            settings_layout.addWidget(section)
        settings_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(content)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        layout.addWidget(self.engine_setup)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.run_section)
        layout.addWidget(self.status_label)

        self.run_section.started.connect(self.job_started)
        self.run_section.finished.connect(self.job_finished)
        self.run_section.applied.connect(self.result_applied)
        self.preview_section.updated.connect(self.preview_updated)
        self.state.message.connect(self._show_message)
        settings.changed.connect(self._on_setting_changed)
        self._host_revision: object = None
        self._listing = None  # the client whose model list is on its way
        self._preview_crop = None
        self._host_timer = QTimer(self)
        self._host_timer.setInterval(HOST_POLL_MS)
        self._host_timer.timeout.connect(self._poll_host)
        self._host_timer.start()
        if settings.load_error:
            self.show_error(settings.load_error)
        self.set_client(client)

    # ---------------------------------------------------------------- the hosts' API
    @property
    def client(self):
        return self.state.client

    @property
    def is_running(self) -> bool:
        """True from the start of a run until `job_finished`."""
        return self.state.running

    def current_model(self) -> dict | None:
        """The chosen method's `models()` entry, or None while the engine has not listed it."""
        return self.state.current_model()

    def run(self) -> None:
        """Start a Blind Upscale of the active layer (or selection) with the current settings."""
        self.run_section.run()

    def cancel(self) -> None:
        """Stop the run in progress, if any; the document is left as it was."""
        self.run_section.cancel()

    def schedule_preview(self) -> None:
        """Refresh the preview soon (after the host changed what the panel cannot see)."""
        self.preview_section.schedule()

    def show_status(self, text: str) -> None:
        self.state.show_status(text)

    def show_error(self, text: str) -> None:
        self.state.show_error(text)

    def show_engine_problem(self, tried: str, error: str, command: str, start_folder: str = "") -> None:
        """First run: the local engine cannot start. Shows the python tried, the error, the command
        that creates the venv, and the buttons behind `engine_folder_chosen` and `engine_retry`;
        it stays until the engine lists its models."""
        self.engine_setup.show_problem(tried, error, command, start_folder)
        self.show_error("The engine could not start: see above.")

    def set_client(self, client) -> None:
        """Use another engine (the host calls this after restarting or relocating the engine)."""
        self.state.set_client(client)
        self._listing = None
        if client is None:
            self.show_status("No engine connected.")
            return
        self.show_status("Connecting to the engine…")
        self._listing = client
        self.state.calls.start(lambda: (client.models(), client.health()),
                               lambda result, error: self._on_models(client, result, error))

    def list_models(self) -> None:
        """Ask the engine for its methods again (after a failed listing), unless a listing is
        already on its way; `models_loaded` follows."""
        if self.state.client is not None and self._listing is None:
            self.set_client(self.state.client)

    # ---------------------------------------------------------------- internals
    def _on_models(self, client, result, error) -> None:
        if client is not self.state.client:
            return  # another engine was chosen meanwhile
        self._listing = None
        if error is not None:
            self.show_error(plain_error(error))
            self.engine_unavailable.emit(plain_error(error))
            return
        self.engine_setup.setVisible(False)
        models, health = result
        self.state.set_models(models, health)
        self.show_status(f"Engine ready ({self.state.device_name or 'device unknown'}).")
        self.models_loaded.emit()
        self.schedule_preview()

    def _on_setting_changed(self, name: str) -> None:
        if name in ("engine_mode", "engine_url", "engine_token"):
            self.engine_settings_changed.emit()

    def _poll_host(self) -> None:
        """Follow the editor: new pixels or selection refresh faces and preview; a moved view only
        the preview (whose crop follows the view centre)."""
        if not self.state.host.has_image():
            return
        revision = self.state.host.revision()
        crop = self.preview_section.crop()
        if revision != self._host_revision:
            self._host_revision = revision
            self.state.layer_changed.emit()
        elif crop != self._preview_crop:
            self.schedule_preview()
        self._preview_crop = crop

    def _show_message(self, text: str, error: bool) -> None:
        self.status_label.setStyleSheet("color: #d04040;" if error else "")
        self.status_label.setText(text)
