"""The standalone editor's canvas: paints the document's visible layers with zoom and pan, and
draws a rectangular selection with the left mouse button.

Wheel zooms around the cursor, the middle or right button (or Space + left) pans.
"""
from __future__ import annotations

from protocol.host import Rect
from ui.qt import (QColor, QPainter, QPen, QPointF, QRectF, Qt, QWidget, Signal)

from plugin.standalone.document import Document

ZOOM_STEPS = (0.05, 0.1, 0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)


class Canvas(QWidget):
    view_changed = Signal()            # zoom or pan changed
    cursor_moved = Signal(int, int)    # document pixel under the mouse

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.zoom = 1.0
        self.offset = QPointF(0, 0)  # widget position of the document's top-left corner
        self._pan_from: QPointF | None = None
        self._select_from: QPointF | None = None
        self._space_down = False
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(200, 150)
        self.set_document(document)

    def set_document(self, document: Document) -> None:
        self.document = document
        document.changed.connect(self._follow_size)
        document.selection_changed.connect(self.update)
        self._shown_size = (document.width, document.height)
        self._fitted_size = None
        self.fit()

    def _follow_size(self) -> None:
        """Repaint; when the document grew (a Blind Upscale) or shrank (its undo) by a factor,
        divide the zoom by it so the same part of the image stays on screen at the same place;
        any other change of size fits the document into the view."""
        d = self.document
        old_width, old_height = self._shown_size
        if (d.width, d.height) != self._shown_size:
            self._shown_size = (d.width, d.height)
            factor = d.width / old_width
            if abs(d.height / old_height - factor) > 1e-9:
                self.fit()
                return
            self.zoom /= factor  # the offset stays: every image point keeps its widget position
            self.view_changed.emit()
        self.update()

    def visible_rect(self) -> QRectF:
        """The part of the document (in document pixels) the widget shows."""
        top_left = self.to_document(QPointF(0, 0))
        bottom_right = self.to_document(QPointF(self.width(), self.height()))
        return QRectF(top_left, bottom_right).intersected(QRectF(0, 0, self.document.width, self.document.height))

    def reveal(self, rect: QRectF) -> None:
        """Fit the document when none of `rect` (document pixels) is in view, e.g. a result that
        landed where the user had panned away from."""
        if not self.visible_rect().intersects(rect):
            self.fit()

    # ---------------------------------------------------------------- view
    def to_document(self, point: QPointF) -> QPointF:
        return QPointF((point.x() - self.offset.x()) / self.zoom, (point.y() - self.offset.y()) / self.zoom)

    def view_center(self) -> tuple[int, int]:
        """The document pixel at the centre of the widget, clamped to the document."""
        centre = self.to_document(QPointF(self.width() / 2, self.height() / 2))
        x = min(max(0, int(centre.x())), self.document.width - 1)
        y = min(max(0, int(centre.y())), self.document.height - 1)
        return x, y

    def fit(self) -> None:
        """Zoom so the whole document shows, centred."""
        d = self.document
        if self.width() < 2 or self.height() < 2:
            self.zoom = 1.0
        else:
            self.zoom = min(8.0, (self.width() - 20) / d.width, (self.height() - 20) / d.height)
            self.zoom = max(self.zoom, ZOOM_STEPS[0])
        self._centre()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def zoom_in(self) -> None:
        self.set_zoom(next((z for z in ZOOM_STEPS if z > self.zoom * 1.001), ZOOM_STEPS[-1]))

    def zoom_out(self) -> None:
        self.set_zoom(next((z for z in reversed(ZOOM_STEPS) if z < self.zoom / 1.001), ZOOM_STEPS[0]))

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the document point under `anchor` (default: the widget centre) in place."""
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        fixed = self.to_document(anchor)
        self.zoom = zoom
        self.offset = QPointF(anchor.x() - fixed.x() * zoom, anchor.y() - fixed.y() * zoom)
        self.view_changed.emit()
        self.update()

    def _centre(self) -> None:
        d = self.document
        self.offset = QPointF((self.width() - d.width * self.zoom) / 2, (self.height() - d.height * self.zoom) / 2)
        self.view_changed.emit()
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if self._fitted_size is None:
            self._fitted_size = (self.width(), self.height())
            self.fit()

    # ---------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(60, 60, 60))
        d = self.document
        painter.translate(self.offset)
        painter.scale(self.zoom, self.zoom)
        page = QRectF(0, 0, d.width, d.height)
        self._checkerboard(painter, page)
        for layer in d.layers:
            if not layer.visible:
                continue
            # enlarged source layers look best smoothed; at high zoom show real pixels
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                                  self.zoom * layer.pixel_size < 2.0 or layer.pixel_size > 1)
            painter.drawImage(layer.doc_rect, layer.qimage())
        if d.selection is not None:
            s = d.selection
            rect = QRectF(s.x, s.y, s.width, s.height)
            for colour, dash in ((QColor(0, 0, 0), Qt.PenStyle.SolidLine), (QColor(255, 255, 255), Qt.PenStyle.DashLine)):
                pen = QPen(colour)
                pen.setCosmetic(True)
                pen.setStyle(dash)
                painter.setPen(pen)
                painter.drawRect(rect)
        painter.end()

    @staticmethod
    def _checkerboard(painter: QPainter, page: QRectF) -> None:
        painter.fillRect(page, QColor(200, 200, 200))
        painter.save()
        painter.setClipRect(page)
        step = max(8.0, 8.0 / painter.transform().m11())
        light = QColor(240, 240, 240)
        y, row = 0.0, 0
        while y < page.height():
            x = step * (row % 2)
            while x < page.width():
                painter.fillRect(QRectF(x, y, step, step), light)
                x += 2 * step
            y += step
            row += 1
        painter.restore()

    # ---------------------------------------------------------------- mouse
    def wheelEvent(self, event) -> None:  # noqa: N802
        delta = event.angleDelta().y()
        if delta == 0:
            return
        factor = 1.25 if delta > 0 else 0.8
        zoom = min(ZOOM_STEPS[-1], max(ZOOM_STEPS[0], self.zoom * factor))
        self.set_zoom(zoom, event.position())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        button = event.button()
        if button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton) or (
                button == Qt.MouseButton.LeftButton and self._space_down):
            self._pan_from = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.LeftButton:
            self._select_from = pos

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        point = self.to_document(pos)
        self.cursor_moved.emit(int(point.x()), int(point.y()))
        if self._pan_from is not None:
            self.offset += pos - self._pan_from
            self._pan_from = pos
            self.view_changed.emit()
            self.update()
        elif self._select_from is not None:
            self.document.set_selection(self._rect(self._select_from, pos))

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            self._pan_from = None
            self.unsetCursor()
        elif self._select_from is not None:
            start, self._select_from = self._select_from, None
            end = event.position()
            if (end - start).manhattanLength() < 3:
                self.document.set_selection(None)  # a click clears the selection
            else:
                self.document.set_selection(self._rect(start, end))

    def _rect(self, a: QPointF, b: QPointF) -> Rect | None:
        """The document pixels covered by the drag from `a` to `b` (widget coordinates)."""
        p, q = self.to_document(a), self.to_document(b)
        left, right = sorted((p.x(), q.x()))
        top, bottom = sorted((p.y(), q.y()))
        x0, y0 = max(0, int(left)), max(0, int(top))
        x1 = min(self.document.width, int(right + 0.999))
        y1 = min(self.document.height, int(bottom + 0.999))
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
        super().keyReleaseEvent(event)
