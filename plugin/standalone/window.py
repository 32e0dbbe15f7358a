"""The standalone editor's main window: canvas, layers list, the Blind Upscale dock, menus."""
from __future__ import annotations

from pathlib import Path

from ui.panel import Panel
from ui.qt import (QAction, QDockWidget, QKeySequence, QLabel, QListWidget, QListWidgetItem,
                   QMainWindow, QMessageBox, QFileDialog, QScrollArea, Qt, QUndoStack, QWidget,
                   is_deleted)
from ui.request import build_request
from ui.settings import Settings

from plugin.standalone.batch_dialog import BatchDialog
from plugin.standalone.canvas import Canvas
from plugin.standalone.document import Document
from plugin.standalone.host import StandaloneHost

OPEN_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.webp *.bmp *.gif);;All files (*)"
SAVE_FILTER = "PNG (*.png);;TIFF (*.tif *.tiff);;JPEG (*.jpg *.jpeg);;WebP (*.webp)"


class LayersList(QListWidget):
    """Top layer first; the check box is visibility, the current row is the active layer."""

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)
        self.currentRowChanged.connect(self._on_current_row)
        self.set_document(document)

    def set_document(self, document: Document) -> None:
        self.document = document
        document.changed.connect(self.refill)
        self.refill()

    def refill(self) -> None:
        self._filling = True
        self.clear()
        for layer in reversed(self.document.layers):
            raw = layer.raw
            depth = {"u8": "8-bit", "u16": "16-bit", "f32": "float"}[raw.dtype]
            item = QListWidgetItem(f"{layer.name}  ({raw.width}×{raw.height}, {depth})")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
            self.addItem(item)
            if layer is self.document.active:
                self.setCurrentItem(item)
        self._filling = False

    def layer_at(self, row: int):
        layers = self.document.layers
        return layers[len(layers) - 1 - row] if 0 <= row < len(layers) else None

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if not self._filling:
            self.document.set_visible(self.layer_at(self.row(item)),
                                      item.checkState() == Qt.CheckState.Checked)

    def _on_current_row(self, row: int) -> None:
        if not self._filling and self.layer_at(row) is not None:
            self.document.set_active(self.layer_at(row))


class EditorWindow(QMainWindow):
    def __init__(self, document: Document, client, settings: Settings | None = None):
        super().__init__()
        self.client = client
        self.document = document
        self.undo_stack = QUndoStack(self)
        self.canvas = Canvas(document)
        self.setCentralWidget(self.canvas)
        self.host = StandaloneHost(document, self.canvas, self.undo_stack)

        self.layers = LayersList(document)
        layers_dock = QDockWidget("Layers", self)
        layers_dock.setObjectName("layers")
        layers_dock.setWidget(self.layers)
        self.layers.setMinimumWidth(240)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, layers_dock)

        self.panel = Panel(self.host, client, settings or Settings(), show_engine_settings=False)
        scroller = QScrollArea()
        scroller.setWidget(self.panel)
        scroller.setWidgetResizable(True)
        scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroller.setMinimumWidth(self.panel.sizeHint().width() + 24)
        self.panel_dock = QDockWidget("Blind Upscale", self)
        self.panel_dock.setObjectName("blind_upscale")
        self.panel_dock.setWidget(scroller)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel_dock)

        self.position_label = QLabel()
        self.size_label = QLabel()
        self.statusBar().addWidget(self.position_label)
        self.statusBar().addPermanentWidget(self.size_label)
        self.canvas.cursor_moved.connect(lambda x, y: self.position_label.setText(f"{x}, {y}"))
        self.canvas.view_changed.connect(self._show_size)
        self.panel.job_started.connect(self._update_editing)
        self.panel.job_finished.connect(self._update_editing)
        self.panel.job_finished.connect(lambda state: self.statusBar().showMessage(
            {"done": "Blind Upscale finished.", "cancelled": "Blind Upscale cancelled.",
             "failed": "Blind Upscale failed: see the panel."}[state], 5000))
        self._build_menus()
        self._update_editing()
        self._watch(document)
        self.resize(1280, 800)

    # ---------------------------------------------------------------- menus
    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.save_action = self._action(file_menu, "&Save", self.save, QKeySequence.StandardKey.Save)
        self._action(file_menu, "Save &As…", self.save_dialog, QKeySequence.StandardKey.SaveAs)
        file_menu.addSeparator()
        self._action(file_menu, "&Batch…", self.batch_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit_menu = bar.addMenu("&Edit")
        self.undo_action = self._action(edit_menu, "&Undo", self.undo_stack.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action(edit_menu, "&Redo", self.undo_stack.redo, QKeySequence.StandardKey.Redo)
        self.undo_stack.undoTextChanged.connect(self._name_undo_steps)
        self.undo_stack.redoTextChanged.connect(self._name_undo_steps)
        self.undo_stack.canUndoChanged.connect(self._update_editing)
        self.undo_stack.canRedoChanged.connect(self._update_editing)
        edit_menu.addSeparator()
        self._action(edit_menu, "Select &All", self.select_all, QKeySequence.StandardKey.SelectAll)
        self._action(edit_menu, "&Deselect", lambda: self.document.set_selection(None), "Ctrl+Shift+A")

        view_menu = bar.addMenu("&View")
        self._action(view_menu, "Zoom &In", lambda: self.canvas.zoom_in(), QKeySequence.StandardKey.ZoomIn)
        self._action(view_menu, "Zoom &Out", lambda: self.canvas.zoom_out(), QKeySequence.StandardKey.ZoomOut)
        self._action(view_menu, "&Fit", lambda: self.canvas.fit(), "Ctrl+0")
        self._action(view_menu, "&Actual Pixels", lambda: self.canvas.actual_size(), "Ctrl+1")
        view_menu.addSeparator()
        view_menu.addAction(self.panel_dock.toggleViewAction())

        filter_menu = bar.addMenu("F&ilter")
        self.upscale_action = self._action(filter_menu, "Blind Upscale", self.panel.run, "Ctrl+Shift+U")
        self._action(filter_menu, "Cancel Blind Upscale", self.panel.cancel, "Esc")

    def _name_undo_steps(self, *_changed) -> None:
        if is_deleted(self.undo_stack):  # the stack announces its last change while being destroyed
            return
        self.undo_action.setText(f"&Undo {self.undo_stack.undoText()}".strip())
        self.redo_action.setText(f"&Redo {self.undo_stack.redoText()}".strip())

    def _update_editing(self, *_changed) -> None:
        """While a Blind Upscale runs, the layer it reads stays active and the layers stay put
        (no undo, redo or layer switch), so the result lands where its source was."""
        if is_deleted(self.undo_stack):  # the stack announces its last change while being destroyed
            return
        idle = not self.panel.is_running
        self.undo_action.setEnabled(idle and self.undo_stack.canUndo())
        self.redo_action.setEnabled(idle and self.undo_stack.canRedo())
        self.layers.setEnabled(idle)

    # ---------------------------------------------------------------- documents
    def _watch(self, document: Document) -> None:
        document.changed.connect(self._show_size)
        self._show_size()
        name = document.path.name if document.path else "untitled"
        self.setWindowTitle(f"{name} – Blind Upscale")

    def _show_size(self) -> None:
        d = self.document
        self.size_label.setText(f"{d.width}×{d.height}  {self.canvas.zoom * 100:.0f}%")

    def set_document(self, document: Document) -> None:
        self.panel.cancel()
        self.undo_stack.clear()
        self.document = document
        self.canvas.set_document(document)
        self.layers.set_document(document)
        self.host.set_document(document)
        self._watch(document)
        self.panel.schedule_preview()

    def open_file(self, path: str | Path) -> bool:
        from core.errors import BlindUpscaleError
        from plugin.standalone.local_engine import missing_packages_message

        try:
            document = Document.from_file(path)
        except BlindUpscaleError as exc:
            QMessageBox.warning(self, "Open", str(exc))
            return False
        except ImportError as exc:  # this Python lacks the engine's packages, which read images too
            QMessageBox.warning(self, "Open", missing_packages_message(exc))
            return False
        self.set_document(document)
        return True

    def open_dialog(self) -> None:
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", OPEN_FILTER)
        if path:
            self.open_file(path)

    def save_file(self, path: str | Path) -> bool:
        """Write the visible layers through core.image_io (16-bit and float kept where the format
        can; when it cannot, the user is asked first). Later Saves write to `path` without asking."""
        from core.errors import BlindUpscaleError
        from core.image_io import from_raw, save_image, stored_bit_depth

        try:
            image = from_raw(self.document.flattened())
            kept = stored_bit_depth(path, image.bit_depth)
            if kept < image.bit_depth and not self._confirm_fewer_bits(Path(path), image.bit_depth, kept):
                return False
            image.icc, image.exif = self.document.icc, self.document.exif
            save_image(image, path)
        except (BlindUpscaleError, ValueError, OSError) as exc:
            QMessageBox.warning(self, "Save", str(exc))
            return False
        self.document.path = self.document.save_path = Path(path)
        self.undo_stack.setClean()
        self._watch(self.document)
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def _confirm_fewer_bits(self, path: Path, bits: int, kept: int) -> bool:
        depth = "floating-point" if bits == 32 else f"{bits}-bit"
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self, "Save", f"{path.suffix.lstrip('.').upper()} files keep {kept} bits per channel: this "
            f"{depth} image will lose precision in {path.name}. PNG keeps 16 bits, TIFF keeps all. "
            f"Save with {kept} bits anyway?", buttons.Save | buttons.Cancel, buttons.Cancel)
        return answer == buttons.Save

    def save(self) -> bool:
        """Ctrl+S: the file opened is never overwritten without asking; the first Save asks for a
        name (suggesting `<name>_x4.<ext>`), later ones write to that name."""
        if self.document.save_path is None:
            return self.save_dialog()
        return self.save_file(self.document.save_path)

    def suggested_save_path(self) -> str:
        """`<name>_x<scale>.<ext>` beside the opened file (<scale>: how much the document grew)."""
        from core.image_io import FORMATS

        d = self.document
        if d.path is None:
            return ""
        suffix = d.path.suffix if d.path.suffix.lower() in FORMATS else ".png"
        grown = d.layers[0].pixel_size if d.layers else 1  # the bottom layer is the opened image
        return str(d.path.with_name(d.path.stem + (f"_x{grown}" if grown > 1 else "") + suffix))

    def save_dialog(self) -> bool:
        start = self.suggested_save_path()
        chosen_filter = next((f for f in SAVE_FILTER.split(";;") if f"*{Path(start).suffix.lower()}" in f), "")
        path, _ = QFileDialog.getSaveFileName(self, "Save image", start, SAVE_FILTER, chosen_filter)
        return bool(path) and self.save_file(path)

    def batch_dialog(self) -> BatchDialog | None:
        """A folder of images with the panel's current method and options (core.batch)."""
        if self.panel.current_model() is None:
            QMessageBox.warning(self, "Batch", "Pick a method in the Blind Upscale panel first.")
            return None
        dialog = BatchDialog(build_request(self.panel.state.request_state()), self)
        dialog.show()
        return dialog

    def select_all(self) -> None:
        from protocol.host import Rect

        self.document.set_selection(Rect(0, 0, self.document.width, self.document.height))

    def confirm_discard(self) -> bool:
        """Before the document goes away with unsaved Blind Upscale results: save, discard or stay."""
        if self.undo_stack.isClean():
            return True
        name = self.document.path.name if self.document.path else "the image"
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(self, "Blind Upscale", f"Save the changes to {name}?",
                                      buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        if answer == buttons.Save:
            return self.save()  # the first time a new name: the original file stays as it was
        return answer == buttons.Discard

    def closeEvent(self, event) -> None:  # noqa: N802
        """Ask about unsaved results, then stop every job and close at once: the engine's
        worker finishes its current step on its own, and the process waits for it at exit."""
        if not self.confirm_discard():
            event.ignore()
            return
        self.panel.cancel()
        cancel_all = getattr(self.client, "cancel_all", None)
        if cancel_all is not None:
            cancel_all()
        super().closeEvent(event)
