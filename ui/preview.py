"""The preview section: the current settings' result on a small crop, before and after.

The preview follows the last of a burst of changes (debounced), never runs beside a run, and a
preview overtaken by a change is dropped at the engine and never shown. Only the crop is upscaled;
the engine's global step (degradation sample, faces) still sees the whole layer, so the preview
matches a run.
"""
from __future__ import annotations

import time

from ui import images
from ui.bind import bind
from protocol.errors import sentence
from ui.calls import plain_error
from protocol.host import Rect
from ui.job_follower import JobFollower
from ui.qt import QCheckBox, QHBoxLayout, QImage, QLabel, QPixmap, Qt, QTimer, QVBoxLayout, QWidget, Signal
from ui.request import preview_crop, preview_request, selection_use
from ui.settings import BY_NAME
from ui.state import PanelState

PREVIEW_SOURCE = 40      # side of the preview crop in layer pixels
PREVIEW_DELAY_MS = 400   # debounce: the preview starts this long after the last change
SHOWN = 100              # side of each picture: before and after fit side by side in a narrow docker
# The settings a preview shows the effect of (the tile size is not one: a preview is never tiled).
PREVIEWED = {"model", "configs", "scale", "device", "ensemble", "dials", "selection_use", "auto_faces",
             "live_preview"}


class PreviewSection(QWidget):
    updated = Signal(int)  # the generation shown

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.generation = 0  # counts the previews started; the one shown is the last
        self._started = 0.0
        self._title = ""  # the method of the preview under way
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.live_check = QCheckBox(BY_NAME["live_preview"].label)
        bind(state.settings, "live_preview", self.live_check)
        layout.addWidget(self.live_check)
        pair = QHBoxLayout()
        self.before_label, self.after_label = QLabel(), QLabel()
        for caption, label in (("Before", self.before_label), ("After", self.after_label)):
            column = QVBoxLayout()
            column.addWidget(QLabel(caption), alignment=Qt.AlignmentFlag.AlignHCenter)
            label.setFixedSize(SHOWN, SHOWN)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: #202020; color: #909090;")
            column.addWidget(label)
            pair.addLayout(column)
        layout.addLayout(pair)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.follower = JobFollower(state.calls, self)
        self.follower.ended.connect(self._on_ended)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.start)
        state.faces_changed.connect(self.schedule)
        state.layer_changed.connect(self.schedule)
        state.running_changed.connect(self._on_running_changed)
        state.settings.changed.connect(self._on_setting_changed)

    def _on_setting_changed(self, name: str) -> None:
        if name in PREVIEWED:
            self.schedule()

    def _on_running_changed(self) -> None:
        if self.state.running:
            self.follower.drop()
        else:
            self.schedule()

    def schedule(self) -> None:
        """Restart the debounce timer: the preview follows the last of a burst of changes. Without
        live preview, a preview already shown is marked out of date."""
        if self.state.settings.live_preview:
            self._timer.start()
            return
        self._timer.stop()
        if self.after_label.pixmap() is not None and not self.after_label.pixmap().isNull():
            self.status_label.setText("Preview: out of date (tick Live preview to refresh it)")

    def crop(self) -> Rect | None:
        """The small crop the preview shows: around the selection's centre when the selection is
        the area to upscale, otherwise around the view centre."""
        host = self.state.host
        if not host.has_image():
            return None
        width, height = host.layer_size()
        selection = host.selection()
        if selection is not None and selection_use(self.state.current_model(), self.state.settings.selection_use) == "area":
            b = selection.bounds
            cx, cy = b.x + b.width // 2, b.y + b.height // 2
        else:
            cx, cy = host.view_center()
        return preview_crop((width, height), (cx, cy), PREVIEW_SOURCE)

    def start(self) -> None:
        """Ask the engine for the current settings' result on the crop."""
        state = self.state
        if state.running or state.client is None or state.current_model() is None:
            return
        rect = self.crop()
        if rect is None:
            return
        self.follower.drop()
        self.generation += 1
        try:
            request = preview_request(state.request_state(), rect)
            image = state.host.layer_pixels()
        except Exception as exc:  # shown where the preview would be; Run reports it too
            self.status_label.setText(f"Preview: cannot read the layer: {plain_error(exc)}")
            return
        self.before_label.setPixmap(_fitted(images.to_qimage(images.crop(image, *rect.as_tuple())),
                                            Qt.TransformationMode.FastTransformation))
        self.status_label.setText("Preview: working…")
        self._started = time.monotonic()
        self._title = state.model_title()
        self.follower.start(state.client, image, request)

    def _on_ended(self, outcome: str, result, message: str) -> None:
        if outcome == "done":
            self.after_label.setPixmap(_fitted(images.to_qimage(result), Qt.TransformationMode.SmoothTransformation))
            self.status_label.setText(f"Preview: {self._title}, {time.monotonic() - self._started:.1f} s")
            self.updated.emit(self.generation)
        elif outcome == "failed":
            self.status_label.setText(f"Preview failed: {sentence(message)}")


def _fitted(image: QImage, how) -> QPixmap:
    """`image` scaled to fill a picture of the preview (the crop enlarged, the result shrunk)."""
    return QPixmap.fromImage(image.scaled(SHOWN, SHOWN, Qt.AspectRatioMode.KeepAspectRatio, how))
