"""The Blind Upscale dock panel: pick a method, steer it, preview it, run it.

It sees the editor only through `ui.host.Host` and the engine only through a client with the
interface of docs/internals.md ("The client interface"). Client calls that may take a while (model
list, analyse, submit, result) run on short-lived threads and report back through a Qt signal; job
status is polled from a QTimer. The GUI thread never waits on the engine.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from protocol.host import Host, Rect
from protocol.raw_image import RawImage
from ui import images
from ui.qt import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout,
                   QLabel, QLineEdit, QListWidget, QListWidgetItem, QObject, QPixmap,
                   QProgressBar, QPushButton, QRadioButton, QSlider, QStandardItemModel, Qt,
                   QTimer, QVBoxLayout, QWidget, Signal, is_deleted)
from ui.settings import DEVICES, TILE_SIZES, Settings

PREVIEW_SOURCE = 40      # side of the preview crop in layer pixels
PREVIEW_DELAY_MS = 400   # debounce: the preview starts this long after the last change
POLL_MS = 100            # job status polling
HOST_POLL_MS = 500       # active layer / selection change polling
DIAL_STEPS = 100

SELECTION_USE_LABELS = {
    "area": "Area to upscale",
    "support": "Degradation sample",
    "face": "Face",
}
SELECTION_USE_NEEDS = {"support": "support_set", "face": "faces"}
SELECTION_USE_TIPS = {
    "area": "Upscale only the selected area; the result layer covers it.",
    "support": "Upscale the whole layer; the selection is a sample of the degradation (blur, noise) "
               "the method adapts to. Methods that adapt to a sample: CMDSR.",
    "face": "Upscale the whole layer; the selection is a face the method learns from. "
            "Methods that learn from faces: MetaF2N.",
}
DEVICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA (GPU)"}
STATE_WORDS = {"queued": "Waiting for the engine", "running": "Working"}


def sentence(text: str) -> str:
    """`text` as a sentence: capital first letter, final full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def plain_error(error: BaseException) -> str:
    """One sentence for the status line: the engine's own message, or what kind of failure it was."""
    message = getattr(error, "message", None) or str(error).strip()
    if isinstance(error, OSError) and not getattr(error, "message", None):
        return f"Cannot reach the engine ({message or type(error).__name__})."
    if not message:
        return f"The engine failed ({type(error).__name__})."
    return sentence(message)


class _Calls(QObject):
    """Runs one client call on a thread and hands its outcome back on the GUI thread."""

    finished = Signal(object, object, object)  # callback, result, error

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.finished.connect(self._deliver)

    def start(self, call: Callable[[], object], callback: Callable[[object, BaseException | None], None]):
        def work():
            try:
                result, error = call(), None
            except Exception as exc:  # delivered to the panel, which shows it in plain words
                result, error = None, exc
            self.finished.emit(callback, result, error)

        threading.Thread(target=work, name="blind-upscale-call", daemon=True).start()

    def _deliver(self, callback, result, error) -> None:
        if is_deleted(self):  # the panel went away while the call was out: nobody to tell
            return
        callback(result, error)


class _Job:
    """One engine job the panel follows: a run or a preview."""

    def __init__(self, kind: str, request: dict, source: Rect, generation: int = 0):
        self.kind = kind
        self.request = request
        self.source = source
        self.generation = generation
        self.id: str | None = None
        self.cancelled = False
        self.fetching = False
        self.polling = False
        self.mask: bytes | None = None
        self.layer_name = ""
        self.started = time.monotonic()


class Panel(QWidget):
    """The dock widget's content."""

    result_applied = Signal(str)   # the new layer's name
    job_started = Signal()         # a run was sent to the engine
    job_finished = Signal(str)     # "done", "failed" or "cancelled", after a run
    preview_updated = Signal(int)  # the generation shown
    models_loaded = Signal()
    engine_settings_changed = Signal()

    def __init__(self, host: Host, client, settings: Settings, parent: QWidget | None = None,
                 show_engine_settings: bool = True):
        super().__init__(parent)
        self.host = host
        self.client = client
        self.settings = settings
        self.models: list[dict] = []
        self.device_name = ""
        self.faces: list[tuple[int, int, int, int, float]] = []
        self.run_job: _Job | None = None
        self.preview_job: _Job | None = None
        self.preview_generation = 0
        self._calls = _Calls(self)
        self._host_revision: object = None
        self._faces_revision: object = None
        self._preview_rect: Rect | None = None
        self._updating = False

        self._build(show_engine_settings)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.start_preview)
        self._poll_timer = QTimer(self)
        self._poll_timer.setInterval(POLL_MS)
        self._poll_timer.timeout.connect(self._poll_jobs)
        self._host_timer = QTimer(self)
        self._host_timer.setInterval(HOST_POLL_MS)
        self._host_timer.timeout.connect(self._poll_host)
        self._host_timer.start()
        self.settings.changed.connect(self._on_setting_changed)
        if settings.load_error:
            self._show_error(settings.load_error)
        self.set_client(client)

    # ---------------------------------------------------------------- layout
    def _build(self, show_engine_settings: bool) -> None:
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(18)
        self.model_combo.currentIndexChanged.connect(self._on_model_picked)
        form.addRow("Method", self.model_combo)
        self.model_summary = QLabel()
        self.model_summary.setWordWrap(True)
        form.addRow(self.model_summary)
        self.config_combo = QComboBox()
        self.config_combo.currentIndexChanged.connect(self._on_config_picked)
        self.config_label = QLabel("Variant")
        form.addRow(self.config_label, self.config_combo)
        self.scale_combo = QComboBox()
        self.scale_combo.currentIndexChanged.connect(
            lambda: self._set_from_widget("scale", self.scale_combo.currentData()))
        form.addRow("Scale", self.scale_combo)
        self.device_combo = QComboBox()
        for device in DEVICES:
            self.device_combo.addItem(DEVICE_LABELS[device], device)
        self.device_combo.currentIndexChanged.connect(
            lambda: self._set_from_widget("device", self.device_combo.currentData()))
        form.addRow("Device", self.device_combo)
        self.tile_combo = QComboBox()
        for tile in TILE_SIZES:
            self.tile_combo.addItem("No tiling" if tile == 0 else f"{tile} px", tile)
        self.tile_combo.currentIndexChanged.connect(
            lambda: self._set_from_widget("tile", self.tile_combo.currentData()))
        form.addRow("Tile size", self.tile_combo)
        self.ensemble_check = QCheckBox("Self-ensemble (a little sharper, 8× slower)")
        self.ensemble_check.setToolTip("Upscales every tile in its 8 orientations and averages them")
        self.ensemble_check.toggled.connect(lambda on: self._set_from_widget("ensemble", on))
        form.addRow(self.ensemble_check)
        layout.addLayout(form)

        self.dials_box = QGroupBox("Degradation dials")
        dials = QFormLayout(self.dials_box)
        self.dials: dict[str, QSlider] = {}
        self.dial_values: dict[str, QLabel] = {}
        for name in ("blur", "noise"):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, DIAL_STEPS)
            slider.valueChanged.connect(lambda value, n=name: self._on_dial(n, value))
            value_label = QLabel()
            value_label.setMinimumWidth(32)
            row = QHBoxLayout()
            row.addWidget(slider)
            row.addWidget(value_label)
            dials.addRow(name.capitalize(), row)
            self.dials[name], self.dial_values[name] = slider, value_label
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Reset the dials to the engine's estimate for the layer or selection")
        self.auto_button.clicked.connect(self.estimate_dials)
        dials.addRow(self.auto_button)
        layout.addWidget(self.dials_box)

        self.use_box = QGroupBox("Use the selection as")
        use_layout = QVBoxLayout(self.use_box)
        self.use_group = QButtonGroup(self)
        self.use_buttons: dict[str, QRadioButton] = {}
        for use, label in SELECTION_USE_LABELS.items():
            button = QRadioButton(label)
            button.setToolTip(SELECTION_USE_TIPS[use])
            button.toggled.connect(lambda on, u=use: on and self._set_from_widget("selection_use", u))
            self.use_group.addButton(button)
            use_layout.addWidget(button)
            self.use_buttons[use] = button
        layout.addWidget(self.use_box)

        self.faces_box = QGroupBox("Faces")
        faces_layout = QVBoxLayout(self.faces_box)
        self.auto_faces_check = QCheckBox("Detect faces automatically")
        self.auto_faces_check.toggled.connect(lambda on: self._set_from_widget("auto_faces", on))
        faces_layout.addWidget(self.auto_faces_check)
        self.faces_list = QListWidget()
        self.faces_list.setMaximumHeight(80)
        self.faces_list.itemChanged.connect(lambda _item: self.schedule_preview())
        faces_layout.addWidget(self.faces_list)
        layout.addWidget(self.faces_box)

        preview_box = QGroupBox("Preview")
        preview_layout = QVBoxLayout(preview_box)
        self.live_preview_check = QCheckBox("Live preview")
        self.live_preview_check.toggled.connect(lambda on: self._set_from_widget("live_preview", on))
        preview_layout.addWidget(self.live_preview_check)
        pair = QHBoxLayout()
        self.before_label = QLabel()
        self.after_label = QLabel()
        for caption, label in (("Before", self.before_label), ("After", self.after_label)):
            column = QVBoxLayout()
            column.addWidget(QLabel(caption), alignment=Qt.AlignmentFlag.AlignHCenter)
            label.setFixedSize(PREVIEW_SOURCE * 4, PREVIEW_SOURCE * 4)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: #202020; color: #909090;")
            column.addWidget(label)
            pair.addLayout(column)
        preview_layout.addLayout(pair)
        self.preview_status = QLabel()
        preview_layout.addWidget(self.preview_status)
        layout.addWidget(preview_box)

        self.engine_box = QGroupBox("Engine")
        engine_form = QFormLayout(self.engine_box)
        self.engine_mode_combo = QComboBox()
        self.engine_mode_combo.addItem("Local (started by the plug-in)", "managed")
        self.engine_mode_combo.addItem("Remote (URL and token)", "remote")
        self.engine_mode_combo.currentIndexChanged.connect(
            lambda: self._set_from_widget("engine_mode", self.engine_mode_combo.currentData()))
        engine_form.addRow("Engine", self.engine_mode_combo)
        self.engine_url_edit = QLineEdit()
        self.engine_url_edit.editingFinished.connect(
            lambda: self._set_from_widget("engine_url", self.engine_url_edit.text().strip()))
        engine_form.addRow("URL", self.engine_url_edit)
        self.engine_token_edit = QLineEdit()
        self.engine_token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.engine_token_edit.editingFinished.connect(
            lambda: self._set_from_widget("engine_token", self.engine_token_edit.text().strip()))
        engine_form.addRow("Token", self.engine_token_edit)
        self.engine_box.setVisible(show_engine_settings)
        layout.addWidget(self.engine_box)

        run_row = QHBoxLayout()
        self.run_button = QPushButton("Blind Upscale")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.cancel_button)
        layout.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        layout.addWidget(self.progress)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._show_settings()

    # ---------------------------------------------------------------- engine connection
    def set_client(self, client) -> None:
        """Use another engine (the host calls this after restarting or relocating the engine)."""
        self.client = client
        self.models = []
        self._fill_models()
        if client is None:
            self._show_status("No engine connected.")
            return
        self._show_status("Connecting to the engine…")

        def fetch():
            return client.models(), client.health()

        self._calls.start(fetch, lambda result, error, c=client: self._on_models(c, result, error))

    def _on_models(self, client, result, error) -> None:
        if client is not self.client:
            return
        if error is not None:
            self._show_error(plain_error(error))
            return
        self.models, health = result
        self.device_name = str(health.get("device", ""))
        self._fill_models()
        self._show_status(f"Engine ready ({self.device_name or 'device unknown'}).")
        self.models_loaded.emit()
        self._faces_revision = None
        self._refresh_faces()
        self.schedule_preview()

    def _fill_models(self) -> None:
        self._updating = True
        self.model_combo.clear()
        model_items: QStandardItemModel = self.model_combo.model()
        for index, model in enumerate(self.models):
            line = f"{model.get('title') or model['id']}: {model.get('summary', '')}".rstrip(": ")
            missing = model.get("weights") == "missing"
            if missing:
                line += " (no weights)"
            self.model_combo.addItem(line, model["id"])
            item = model_items.item(index)
            item.setToolTip(self._model_tooltip(model))
            if missing:
                item.setEnabled(False)
        wanted = self.model_combo.findData(self.settings.model)
        if wanted < 0 or not model_items.item(wanted).isEnabled():
            wanted = next((i for i in range(len(self.models)) if model_items.item(i).isEnabled()), -1)
        self.model_combo.setCurrentIndex(wanted)
        self._updating = False
        if wanted >= 0:
            self._set_from_widget("model", self.model_combo.itemData(wanted))
        self._show_model()

    @staticmethod
    def _model_tooltip(model: dict) -> str:
        lines = [model.get("summary", "")]
        if model.get("weights") == "missing":
            lines.append("Disabled: no weights are installed for this method. Put the official "
                         "checkpoint in the Blind Upscale models folder to enable it.")
        for config in model.get("configs", []):
            params = config.get("params")
            size = f", {params / 1e6:.1f} M parameters" if params else ""
            lines.append(f"{config.get('id')}: weights {config.get('weights')}{size}")
        return "\n".join(line for line in lines if line)

    def current_model(self) -> dict | None:
        return next((m for m in self.models if m["id"] == self.settings.model), None)

    # ---------------------------------------------------------------- settings <-> widgets
    def _set_from_widget(self, name: str, value) -> None:
        if self._updating or value is None:
            return
        self.settings.set(name, value)

    def _on_model_picked(self, index: int) -> None:
        if self._updating or index < 0:
            return
        self._set_from_widget("model", self.model_combo.itemData(index))

    def _on_config_picked(self, index: int) -> None:
        if self._updating or index < 0:
            return
        configs = dict(self.settings.configs)
        configs[self.settings.model] = self.config_combo.itemData(index)
        self.settings.set("configs", configs)

    def current_config(self) -> str | None:
        """The chosen configuration of the current model if its weights are present, else None
        (the engine's default: the first configuration with weights)."""
        model = self.current_model()
        chosen = self.settings.configs.get(self.settings.model)
        if model is None or chosen is None:
            return None
        present = {c["id"].split(":", 1)[-1] for c in model.get("configs", []) if c.get("weights") != "missing"}
        return chosen if chosen in present else None

    def _on_dial(self, name: str, value: int) -> None:
        self.dial_values[name].setText(f"{value / DIAL_STEPS:.2f}")
        self._set_from_widget(name, value / DIAL_STEPS)

    def _on_setting_changed(self, name: str) -> None:
        self._show_settings()
        if name in ("engine_mode", "engine_url", "engine_token"):
            self.engine_settings_changed.emit()
            return
        if name == "model":
            self._show_model()
            self._refresh_faces()
        if name in ("model", "configs", "scale", "device", "ensemble", "blur", "noise", "selection_use",
                    "auto_faces", "live_preview"):
            self.schedule_preview()

    def _show_settings(self) -> None:
        """Put the settings' values into the widgets without echoing changes back."""
        self._updating = True
        s = self.settings
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(s.device)))
        tile_index = self.tile_combo.findData(s.tile)
        if tile_index < 0:
            self.tile_combo.addItem(f"{s.tile} px", s.tile)
            tile_index = self.tile_combo.count() - 1
        self.tile_combo.setCurrentIndex(tile_index)
        self.ensemble_check.setChecked(s.ensemble)
        for name, slider in self.dials.items():
            value = getattr(s, name)
            slider.setValue(round(value * DIAL_STEPS))
            self.dial_values[name].setText(f"{value:.2f}")
        model_index = self.model_combo.findData(s.model)
        if model_index >= 0:
            self.model_combo.setCurrentIndex(model_index)
        self.use_buttons[s.selection_use].setChecked(True)
        self.auto_faces_check.setChecked(s.auto_faces)
        self.live_preview_check.setChecked(s.live_preview)
        self.engine_mode_combo.setCurrentIndex(max(0, self.engine_mode_combo.findData(s.engine_mode)))
        self.engine_url_edit.setText(s.engine_url)
        self.engine_token_edit.setText(s.engine_token)
        self.engine_url_edit.setEnabled(s.engine_mode == "remote")
        self.engine_token_edit.setEnabled(s.engine_mode == "remote")
        self._updating = False

    def _show_model(self) -> None:
        model = self.current_model()
        self._updating = True
        self.scale_combo.clear()
        native = int(model.get("scale", 4)) if model else 4
        for factor in range(2, native + 1):
            self.scale_combo.addItem(f"×{factor}", factor)
        index = self.scale_combo.findData(self.settings.scale)
        self.scale_combo.setCurrentIndex(index if index >= 0 else self.scale_combo.count() - 1)
        self._updating = False
        if model and self.scale_combo.currentData() != self.settings.scale:
            self.settings.set("scale", self.scale_combo.currentData())
        self.model_summary.setText(model.get("summary", "") if model else "")
        self._updating = True
        self.config_combo.clear()
        usable = [c for c in (model.get("configs", []) if model else []) if c.get("weights") != "missing"]
        for config in usable:
            name = config["id"].split(":", 1)[-1]
            params = config.get("params") or 0
            size = f", {params / 1e6:.1f} M parameters" if params else ""
            self.config_combo.addItem(f"{name} ({config['weights']}{size})", name)
        chosen = self.current_config()
        self.config_combo.setCurrentIndex(max(0, self.config_combo.findData(chosen)) if usable else -1)
        self._updating = False
        self.config_combo.setVisible(len(usable) > 1)
        self.config_label.setVisible(len(usable) > 1)
        controls = {c["name"] for c in model.get("controls", [])} if model else set()
        self.dials_box.setVisible(bool(controls & set(self.dials)))
        for name, slider in self.dials.items():
            slider.setEnabled(name in controls)
        adaptation = set(model.get("adaptation", [])) if model else set()
        for use, button in self.use_buttons.items():
            needs = SELECTION_USE_NEEDS.get(use)
            button.setEnabled(needs is None or needs in adaptation)
        self.faces_box.setVisible("faces" in adaptation)
        self.run_button.setEnabled(model is not None and self.run_job is None)

    def selection_use(self) -> str:
        """The selection role in effect: the chosen one if the current method supports it."""
        model = self.current_model()
        use = self.settings.selection_use
        needs = SELECTION_USE_NEEDS.get(use)
        if needs and (model is None or needs not in model.get("adaptation", [])):
            return "area"
        return use

    # ---------------------------------------------------------------- requests
    def build_request(self) -> tuple[dict, Rect, bytes | None]:
        """The UpscaleRequest for a run of the current settings, the source rectangle the result
        will cover, and the selection coverage mask to apply to the result."""
        s = self.settings
        model = self.current_model()
        width, height = self.host.layer_size()
        source, mask = Rect(0, 0, width, height), None
        request: dict = {"model": s.model, "scale": s.scale, "device": s.device, "tile": s.tile}
        if s.ensemble:
            request["ensemble"] = True
        if self.current_config() is not None:
            request["config"] = self.current_config()
        controls = {c["name"] for c in model.get("controls", [])} if model else set()
        for name in ("blur", "noise"):
            if name in controls:
                request[name] = getattr(s, name)
        selection = self.host.selection()
        use = self.selection_use()
        if selection is not None and use == "area":
            source, mask = selection.bounds, selection.mask
            request["region"] = list(source.as_tuple())
        elif selection is not None and use == "support":
            request["support"] = list(selection.bounds.as_tuple())
        if model and "faces" in model.get("adaptation", []):
            request["faces"] = self._faces_request(selection.bounds if selection and use == "face" else None)
        return request, source, mask

    def _faces_request(self, chosen: Rect | None):
        boxes = [list(chosen.as_tuple())] if chosen else []
        if self.settings.auto_faces:
            checked = [self.faces[i][:4] for i in range(len(self.faces))
                       if self.faces_list.item(i).checkState() == Qt.CheckState.Checked]
            if not boxes and len(checked) == len(self.faces):
                return "auto"
            boxes += [list(face) for face in checked]
        return boxes or "none"

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        """Start a Blind Upscale of the active layer (or selection) with the current settings."""
        if self.run_job is not None:
            return
        if self.client is None:
            self._show_error("No engine connected.")
            return
        if self.current_model() is None:
            self._show_error("Pick a method first (the engine has not listed any yet).")
            return
        if not self.host.has_image():
            self._show_error("There is no layer to upscale.")
            return
        self._cancel_preview()
        try:
            request, source, mask = self.build_request()
            image = self.host.layer_pixels()
            layer_name = self.host.layer_name()
        except Exception as exc:  # the host cannot give this layer (format, size): say why
            self._show_error(f"Cannot read the layer: {plain_error(exc)}")
            return
        job = _Job("run", request, source)
        job.mask = mask
        job.layer_name = layer_name
        self.run_job = job
        self.job_started.emit()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat("Sending the image…")
        self._show_status(f"Upscaling with {self._model_title()}…")
        client = self.client
        self._calls.start(lambda: client.submit(image, request), lambda r, e: self._on_submitted(job, r, e))

    def cancel(self) -> None:
        job = self.run_job
        if job is None:
            return
        job.cancelled = True
        self.progress.setFormat("Cancelling…")
        if job.id is not None:
            client = self.client
            self._calls.start(lambda: client.cancel(job.id), lambda _r, e: e and self._show_error(plain_error(e)))

    def _on_submitted(self, job: _Job, job_id, error) -> None:
        if error is not None:
            self._finish_run(job, "failed", plain_error(error))
            return
        job.id = str(job_id)
        if job.cancelled:
            client = self.client
            self._calls.start(lambda: client.cancel(job.id), lambda _r, _e: None)
        self._poll_timer.start()

    def _poll_jobs(self) -> None:
        """Ask for the status of the jobs in flight, one question at a time per job, off the GUI
        thread (a remote engine may answer slowly)."""
        active = [job for job in (self.run_job, self.preview_job) if job is not None]
        if not active:
            self._poll_timer.stop()
            return
        for job in active:
            if job.id is None or job.fetching or job.polling:
                continue
            job.polling = True
            client = self.client
            self._calls.start(lambda j=job: client.status(j.id), lambda r, e, j=job: self._on_status(j, r, e))

    def _on_status(self, job: _Job, status, error) -> None:
        job.polling = False
        if job is not self.run_job and job is not self.preview_job:
            return  # finished or superseded meanwhile
        if error is not None:  # the engine went away: say so and stop following the job
            self._job_ended(job, "failed", plain_error(error))
            return
        state = status.get("state")
        if job.kind == "run":
            self.progress.setValue(int(1000 * float(status.get("progress") or 0.0)))
            stage = status.get("stage") or STATE_WORDS.get(state, "")
            self.progress.setFormat("Cancelling…" if job.cancelled else f"{stage} %p%")
        if state == "done":
            job.fetching = True
            client = self.client
            self._calls.start(lambda: client.result(job.id), lambda r, e: self._on_result(job, r, e))
        elif state in ("failed", "cancelled"):
            self._job_ended(job, state, status.get("error") or "")

    def _on_result(self, job: _Job, result: RawImage | None, error) -> None:
        if error is not None:
            self._job_ended(job, "failed", plain_error(error))
            return
        if job.kind == "preview":
            self._show_preview(job, result)
            return
        if job.cancelled:
            self._finish_run(job, "cancelled", "")
            return
        scale = int(job.request["scale"])
        model = self.current_model() or {}
        name = f"Blind Upscale ×{scale} ({model.get('family') or job.request['model']})"  # as issue 6 names it
        try:
            self.host.apply_result(result, job.source, scale, name, f"Blind Upscale ({self._model_title()})",
                                   mask=job.mask)
        except Exception as exc:  # the host refused the layer: nothing was changed
            self._finish_run(job, "failed", f"Could not add the result layer: {plain_error(exc)}")
            return
        self.result_applied.emit(name)
        self._finish_run(job, "done", "")

    def _job_ended(self, job: _Job, state: str, message: str) -> None:
        if job.kind == "preview":
            if job is self.preview_job:
                self.preview_job = None
                if state == "failed" and job.generation == self.preview_generation:
                    self.preview_status.setText(f"Preview failed: {sentence(message)}")
            return
        self._finish_run(job, state, message)

    def _finish_run(self, job: _Job, state: str, message: str) -> None:
        if job is not self.run_job:
            return
        self.run_job = None
        self.cancel_button.setEnabled(False)
        self.run_button.setEnabled(self.current_model() is not None)
        seconds = time.monotonic() - job.started
        if state == "done":
            self.progress.setValue(1000)
            self.progress.setFormat("Done")
            device = self.settings.device if self.settings.device != "auto" else (self.device_name or "auto")
            self._show_status(f"{self._model_title()} on {device}: {seconds:.1f} s.")
        elif state == "cancelled":
            self.progress.setValue(0)
            self.progress.setFormat("Cancelled")
            self._show_status("Cancelled; nothing was changed.")
        else:
            self.progress.setValue(0)
            self.progress.setFormat("Failed")
            self._show_error(sentence(message) or "The engine failed without saying why.")
        self.job_finished.emit(state)
        self.schedule_preview()

    def _model_title(self) -> str:
        model = self.current_model()
        return (model.get("title") or model["id"]) if model else self.settings.model

    # ---------------------------------------------------------------- preview
    def schedule_preview(self) -> None:
        """Restart the debounce timer: the preview follows the last of a burst of changes."""
        if self.settings.live_preview:
            self._preview_timer.start()
        else:
            self._preview_timer.stop()

    def preview_rect(self) -> Rect | None:
        """The small crop the preview shows: around the selection's centre when the selection is
        the area to upscale, otherwise around the view centre."""
        if not self.host.has_image():
            return None
        width, height = self.host.layer_size()
        selection = self.host.selection()
        if selection is not None and self.selection_use() == "area":
            b = selection.bounds
            cx, cy = b.x + b.width // 2, b.y + b.height // 2
        else:
            cx, cy = self.host.view_center()
        side_w, side_h = min(PREVIEW_SOURCE, width), min(PREVIEW_SOURCE, height)
        x = min(max(0, cx - side_w // 2), width - side_w)
        y = min(max(0, cy - side_h // 2), height - side_h)
        return Rect(x, y, side_w, side_h)

    def start_preview(self) -> None:
        """Ask the engine for the current settings' result on the preview crop.

        Only the crop is upscaled; the engine's global step (degradation sample, faces) still sees
        the whole layer, so the preview matches a run. Faces found by "auto" go as explicit boxes,
        so the preview adapts to the same faces a run would."""
        if self.run_job is not None or self.client is None or self.current_model() is None:
            return
        rect = self.preview_rect()
        if rect is None:
            return
        self._cancel_preview()
        self.preview_generation += 1
        generation = self.preview_generation
        try:
            request, _source, _mask = self.build_request()
            image = self.host.layer_pixels()
        except Exception as exc:  # shown where the preview would be; Run reports it too
            self.preview_status.setText(f"Preview: cannot read the layer: {plain_error(exc)}")
            return
        if request.get("faces") == "auto" and self.faces:
            request["faces"] = [list(face[:4]) for face in self.faces]
        request["region"] = list(rect.as_tuple())
        request["tile"] = 0
        before = images.to_qimage(images.crop(image, *rect.as_tuple()))
        self.before_label.setPixmap(QPixmap.fromImage(before.scaled(
            rect.width * 4, rect.height * 4, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.FastTransformation)))
        self.preview_status.setText("Preview: working…")
        job = _Job("preview", request, rect, generation)
        self.preview_job = job
        client = self.client
        self._calls.start(lambda: client.submit(image, request),
                          lambda r, e: self._on_preview_submitted(job, r, e))

    def _on_preview_submitted(self, job: _Job, job_id, error) -> None:
        if error is not None:
            self._job_ended(job, "failed", plain_error(error))
            return
        job.id = str(job_id)
        if job is not self.preview_job:  # superseded while being sent
            client = self.client
            self._calls.start(lambda: client.cancel(job.id), lambda _r, _e: None)
            return
        self._poll_timer.start()

    def _cancel_preview(self) -> None:
        job, self.preview_job = self.preview_job, None
        if job is not None and job.id is not None and self.client is not None:
            client = self.client
            self._calls.start(lambda: client.cancel(job.id), lambda _r, _e: None)

    def _show_preview(self, job: _Job, result: RawImage) -> None:
        if job is self.preview_job:
            self.preview_job = None
        if job.generation != self.preview_generation:
            return  # stale: the settings changed while it ran
        self.after_label.setPixmap(QPixmap.fromImage(images.to_qimage(result)))
        self.preview_status.setText(f"Preview: {self._model_title()}, {time.monotonic() - job.started:.1f} s")
        self.preview_updated.emit(job.generation)

    # ---------------------------------------------------------------- estimates and faces
    def estimate_dials(self) -> None:
        """"Auto": set the dials to the engine's estimate for the selection (or the whole layer)."""
        if self.client is None or not self.host.has_image():
            return
        selection = self.host.selection()
        region = selection.bounds.as_tuple() if selection is not None and self.selection_use() != "face" else None
        try:
            image = self.host.layer_pixels()
        except Exception as exc:
            self._show_error(f"Cannot read the layer: {plain_error(exc)}")
            return
        client = self.client
        self.auto_button.setEnabled(False)
        self.auto_button.setText("Estimating…")
        self._calls.start(lambda: client.analyse(image, region), self._on_estimate)

    def _on_estimate(self, result, error) -> None:
        self.auto_button.setEnabled(True)
        self.auto_button.setText("Auto")
        if error is not None:
            self._show_error(plain_error(error))
            return
        for name in ("blur", "noise"):
            if result.get(name) is not None:
                self.settings.set(name, float(result[name]))
        self._show_status(f"Estimated blur {self.settings.blur:.2f}, noise {self.settings.noise:.2f}.")

    def _refresh_faces(self) -> None:
        """Find faces in the layer when the method adapts to faces and the layer changed."""
        model = self.current_model()
        if self.client is None or model is None or "faces" not in model.get("adaptation", []):
            return
        if not self.host.has_image():
            return
        revision = self.host.revision()
        if revision == self._faces_revision:
            return
        self._faces_revision = revision
        try:
            image = self.host.layer_pixels()
        except Exception as exc:
            self.faces_list.clear()
            self.faces_list.addItem(f"Cannot read the layer: {plain_error(exc)}")
            return
        client = self.client
        self.faces = []
        self.faces_list.clear()
        self.faces_list.addItem("Looking for faces…")
        self._calls.start(lambda: client.analyse(image, None), lambda r, e: self._on_faces(revision, r, e))

    def _on_faces(self, revision, result, error) -> None:
        if revision != self._faces_revision:
            return
        self.faces_list.clear()
        if error is not None:
            self.faces_list.addItem(f"Face detection failed: {plain_error(error)}")
            return
        width, height = self.host.layer_size()
        self.faces = []
        for face in result.get("faces", []):  # boxes may come as floats: whole pixels inside the layer
            x, y = max(0, int(round(face[0]))), max(0, int(round(face[1])))
            w, h = min(int(round(face[2])), width - x), min(int(round(face[3])), height - y)
            if w > 0 and h > 0:
                self.faces.append((x, y, w, h, float(face[4]) if len(face) > 4 else 1.0))
        self.faces_list.blockSignals(True)
        for number, (x, y, w, h, score) in enumerate(self.faces, start=1):
            item = QListWidgetItem(f"Face {number}: {w}×{h} at ({x}, {y}), score {score:.2f}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.faces_list.addItem(item)
        if not self.faces:
            self.faces_list.addItem("No faces found.")
        self.faces_list.blockSignals(False)

    def _poll_host(self) -> None:
        """Follow the editor: new pixels or selection refresh faces and preview; a moved view only
        the preview (whose crop follows the view centre)."""
        if not self.host.has_image():
            return
        revision = self.host.revision()
        preview_rect = self.preview_rect()
        if revision != self._host_revision:
            self._host_revision = revision
            self._refresh_faces()
            self.schedule_preview()
        elif preview_rect != self._preview_rect:
            self.schedule_preview()
        self._preview_rect = preview_rect

    # ---------------------------------------------------------------- status line
    def _show_status(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _show_error(self, text: str) -> None:
        self.status_label.setStyleSheet("color: #d04040;")
        self.status_label.setText(text)
