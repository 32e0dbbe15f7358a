"""The faces section: the faces the engine finds in the layer, each one ticked to be learnt from.

Shown for methods that adapt to faces (`"faces"` in their `adaptation`). Detection runs when such a
method is picked or the layer changes; the faces found and their ticks live in `PanelState`.
"""
from __future__ import annotations

from ui.bind import SignalBlocker, bind
from ui.calls import plain_error
from ui.qt import QCheckBox, QGroupBox, QListWidget, QListWidgetItem, Qt, QVBoxLayout, QWidget
from ui.settings import BY_NAME
from ui.state import PanelState


class FacesSection(QGroupBox):
    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__("Faces", parent)
        self.state = state
        self._revision: object = None  # the host revision the faces were looked for in
        layout = QVBoxLayout(self)
        self.auto_check = QCheckBox(BY_NAME["auto_faces"].label)
        bind(state.settings, "auto_faces", self.auto_check)
        layout.addWidget(self.auto_check)
        self.faces_list = QListWidget()
        self.faces_list.setMaximumHeight(80)
        self.faces_list.itemChanged.connect(self._on_ticked)
        layout.addWidget(self.faces_list)
        state.models_changed.connect(self.look_again)
        state.layer_changed.connect(self.refresh)
        state.settings.changed.connect(self._on_setting_changed)
        self.setVisible(False)

    def _on_setting_changed(self, name: str) -> None:
        if name == "model":
            self.refresh()

    def look_again(self) -> None:
        """Forget what was found (a new engine, a new model list) and look again."""
        self._revision = None
        self.refresh()

    def refresh(self) -> None:
        """Find the faces in the layer when the method adapts to faces and the layer changed."""
        state, host = self.state, self.state.host
        adapts = "faces" in state.adaptation()
        self.setVisible(adapts)
        if state.client is None or not adapts or not host.has_image():
            return
        revision = host.revision()
        if revision == self._revision:
            return
        self._revision = revision
        try:
            image = host.layer_pixels()
        except Exception as exc:  # the host cannot give this layer: say why where the faces would be
            self._show_line(f"Cannot read the layer: {plain_error(exc)}")
            return
        state.set_faces([])
        self._show_line("Looking for faces…")
        client = state.client
        state.calls.start(lambda: client.analyse(image, None), lambda r, e: self._on_found(revision, r, e))

    def _on_found(self, revision, result, error) -> None:
        if revision != self._revision:
            return  # the layer changed meanwhile: a newer search is out
        if error is not None:
            self._show_line(f"Face detection failed: {plain_error(error)}")
            return
        width, height = self.state.host.layer_size()
        faces = []
        for face in result.get("faces", []):  # boxes may come as floats: whole pixels inside the layer
            x, y = max(0, int(round(face[0]))), max(0, int(round(face[1])))
            w, h = min(int(round(face[2])), width - x), min(int(round(face[3])), height - y)
            if w > 0 and h > 0:
                faces.append((x, y, w, h, float(face[4]) if len(face) > 4 else 1.0))
        with SignalBlocker(self.faces_list):
            self.faces_list.clear()
            for number, (x, y, w, h, score) in enumerate(faces, start=1):
                item = QListWidgetItem(f"Face {number}: {w}×{h} at ({x}, {y}), score {score:.2f}")
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked)
                self.faces_list.addItem(item)
            if not faces:
                self.faces_list.addItem("No faces found.")
        self.state.set_faces(faces)

    def _show_line(self, text: str) -> None:
        with SignalBlocker(self.faces_list):
            self.faces_list.clear()
            self.faces_list.addItem(text)

    def _on_ticked(self, item: QListWidgetItem) -> None:
        row = self.faces_list.row(item)
        if row < len(self.state.faces):
            self.state.use_face(row, item.checkState() == Qt.CheckState.Checked)
