"""File → Batch…: every image of a folder upscaled with the panel's current settings into another
folder, by the code `python -m core batch` runs (core.batch: same relative paths, finished outputs
skipped, bad files listed, atomic writes), on a thread so the editor stays responsive. Stop ends
the batch at the next tile and leaves no partial file.
"""
from __future__ import annotations

import threading
from pathlib import Path

from ui.qt import (QCheckBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                   QListWidget, QProgressBar, QPushButton, QVBoxLayout, QWidget, Signal)

IMAGE_BOUND = ("region", "support")
"""Request fields that name places in the open image: meaningless for other images."""


def batch_request(request: dict) -> dict:
    """The panel's request for a whole folder: no boxes of the open image; faces found anew."""
    fields = {k: v for k, v in request.items() if k not in IMAGE_BOUND}
    if isinstance(fields.get("faces"), list):
        fields["faces"] = "auto"
    return fields


class BatchDialog(QDialog):
    outcome = Signal(object)        # core.batch.Outcome, from the batch thread
    ended = Signal(object, object)  # core.batch.Summary or None, error text or None

    def __init__(self, request: dict, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Blind Upscale: batch")
        self.request = batch_request(request)
        self.stop_event: threading.Event | None = None
        self.summary = None

        self.input_edit, self.output_edit = QLineEdit(), QLineEdit()
        self.recursive = QCheckBox("Include sub-folders")
        self.overwrite = QCheckBox("Redo images whose result exists")
        form = QFormLayout()
        form.addRow("Images in", self._with_browse(self.input_edit))
        form.addRow("Results to", self._with_browse(self.output_edit))
        form.addRow("", self.recursive)
        form.addRow("", self.overwrite)
        form.addRow("Method", QLabel(f"{self.request['model']}, ×{self.request.get('scale', 4)}"))
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.failures = QListWidget()
        self.start_button, self.stop_button = QPushButton("Start"), QPushButton("Stop")
        close_button = QPushButton("Close")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.start_button, self.stop_button, close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Files that failed:"))
        layout.addWidget(self.failures)
        layout.addLayout(buttons)
        self.outcome.connect(self._on_outcome)
        self.ended.connect(self._on_ended)
        self.resize(560, 420)

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit, 1)
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(edit))
        box.addWidget(browse)
        return row

    def _browse(self, edit: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if folder:
            edit.setText(folder)

    @property
    def running(self) -> bool:
        return self.stop_event is not None

    def start(self) -> None:
        from core.batch import collect, local_runner, run_batch
        from core.engine import UpscaleRequest
        from core.errors import BlindUpscaleError

        if self.running:
            return
        try:
            if not self.input_edit.text().strip() or not self.output_edit.text().strip():
                raise BlindUpscaleError("choose the folder of images and the folder for the results")
            request = UpscaleRequest.from_dict(dict(self.request))
            items = collect(self.input_edit.text().strip(), Path(self.output_edit.text().strip()),
                            recursive=self.recursive.isChecked())
        except BlindUpscaleError as exc:
            self.status.setText(f"Cannot start: {exc}.")
            return
        stop = self.stop_event = threading.Event()
        overwrite = self.overwrite.isChecked()
        self.failures.clear()
        self.progress.setRange(0, len(items))
        self.progress.setValue(0)
        self.status.setText(f"Upscaling {len(items)} images…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)

        def work() -> None:
            try:
                summary = run_batch(items, request.scale, local_runner(request, None), overwrite,
                                    report=self.outcome.emit, stop=stop)
                self.ended.emit(summary, None)
            except Exception as exc:  # shown in the dialog: the editor must not go down with it
                self.ended.emit(None, str(exc) or type(exc).__name__)

        threading.Thread(target=work, name="blind-upscale-batch", daemon=True).start()

    def stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()
            self.status.setText("Stopping…")

    def _on_outcome(self, outcome) -> None:
        self.progress.setValue(self.progress.value() + 1)
        if outcome.status == "failed":
            self.failures.addItem(f"{outcome.input}: {outcome.error}")

    def _on_ended(self, summary, error) -> None:
        self.stop_event = None
        self.summary = summary
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.status.setText(f"Failed: {error}" if error else summary.line())

    def closeEvent(self, event) -> None:  # noqa: N802
        self.stop()  # the thread ends at the next tile; it writes no partial file
        super().closeEvent(event)
