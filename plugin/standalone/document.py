"""The standalone editor's document: a stack of layers over one canvas, a rectangular selection.

Layers keep their exact samples as a `RawImage` (8-bit, 16-bit or float, as loaded) and a QImage
only for painting. A layer has a position and a pixel size in document units, so that after a x4
Blind Upscale the document grows to the result's resolution and the original layers are shown
enlarged underneath it, which is what Krita does with `scaleImage` + a new layer.
"""
from __future__ import annotations

import array
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from protocol.host import Rect
from protocol.raw_image import RawImage
from ui import images
from ui.qt import QColor, QImage, QObject, QPainter, QRectF, QUndoCommand, Signal


@dataclass(eq=False)
class Layer:
    name: str
    raw: RawImage
    x: int = 0
    y: int = 0
    pixel_size: int = 1  # document units per layer pixel
    visible: bool = True
    mask: bytes | None = None  # coverage 0..255 at the layer's own resolution, or None (all)
    _qimage: QImage | None = field(default=None, repr=False)

    @property
    def doc_rect(self) -> QRectF:
        return QRectF(self.x, self.y, self.raw.width * self.pixel_size, self.raw.height * self.pixel_size)

    def qimage(self) -> QImage:
        """The layer for painting (8-bit RGBA, mask applied), built once."""
        if self._qimage is None:
            image = images.to_qimage(self.raw).convertToFormat(QImage.Format.Format_RGBA8888)
            if self.mask is not None:
                coverage = QImage(self.mask, self.raw.width, self.raw.height, self.raw.width,
                                  QImage.Format.Format_Alpha8).copy()
                painter = QPainter(image)
                painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
                painter.drawImage(0, 0, coverage)
                painter.end()
            self._qimage = image
        return self._qimage

    def is_opaque(self) -> bool:
        return self.raw.channels in (1, 3) and self.mask is None


class Document(QObject):
    """Layers bottom to top, the active layer, the selection (document pixels) and file metadata."""

    changed = Signal()            # layers, size or active layer changed
    selection_changed = Signal()

    def __init__(self, width: int, height: int, parent: QObject | None = None):
        super().__init__(parent)
        self.width, self.height = width, height
        self.layers: list[Layer] = []
        self.active: Layer | None = None
        self.selection: Rect | None = None
        self.path: Path | None = None  # the file it was opened from or last saved to (the title)
        self.save_path: Path | None = None  # where Save writes without asking: never the opened original
        self.icc: bytes | None = None
        self.exif: bytes | None = None
        self.revision = 0

    @classmethod
    def from_file(cls, path: str | Path) -> Document:
        """Open any file core.image_io reads; its bit depth, ICC profile and EXIF are kept."""
        from core.image_io import load_image, to_raw

        image = load_image(path)
        raw = to_raw(image)
        document = cls(raw.width, raw.height)
        document.path = Path(path)
        document.icc, document.exif = image.icc, image.exif
        document.add_layer(Layer(Path(path).stem or "Background", raw))
        return document

    def add_layer(self, layer: Layer, index: int | None = None, activate: bool = True) -> None:
        self.layers.insert(len(self.layers) if index is None else index, layer)
        if activate:
            self.active = layer
        self.touch()

    def set_active(self, layer: Layer | None) -> None:
        if layer is not self.active:
            self.active = layer
            self.touch()

    def set_visible(self, layer: Layer, visible: bool) -> None:
        if layer.visible != visible:
            layer.visible = visible
            self.touch()

    def set_selection(self, rect: Rect | None) -> None:
        if rect is not None:
            rect = rect.intersected(Rect(0, 0, self.width, self.height))
        if rect != self.selection:
            self.selection = rect
            self.revision += 1
            self.selection_changed.emit()

    def touch(self) -> None:
        self.revision += 1
        self.changed.emit()

    # ---------------------------------------------------------------- saving
    def flattened(self) -> RawImage:
        """The visible layers composed. A single visible layer covering the canvas is returned
        as is (exact samples, 16-bit and float kept); otherwise Qt composes them at 16 bits per
        channel when any layer has more than 8, and alpha is dropped when every layer is opaque."""
        visible = [layer for layer in self.layers if layer.visible]
        if not visible:
            raise ValueError("every layer is hidden: there is nothing to save")
        top = visible[-1]
        covers = (top.x, top.y, top.pixel_size, top.raw.width, top.raw.height) == (0, 0, 1, self.width, self.height)
        if covers and top.is_opaque() or (len(visible) == 1 and covers and top.mask is None):
            return top.raw
        deep = any(layer.raw.dtype != "u8" for layer in visible)
        fmt = QImage.Format.Format_RGBA64 if deep else QImage.Format.Format_RGBA8888
        canvas = QImage(self.width, self.height, fmt)
        canvas.fill(QColor(0, 0, 0, 0))
        painter = QPainter(canvas)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        for layer in visible:
            painter.drawImage(layer.doc_rect, _deep_qimage(layer) if deep else layer.qimage())
        painter.end()
        opaque = visible[0].is_opaque() and visible[0].doc_rect == QRectF(0, 0, self.width, self.height)
        return _qimage_to_raw(canvas, deep, keep_alpha=not opaque)


def _deep_qimage(layer: Layer) -> QImage:
    """A 16-bit RGBA64 QImage of the layer (for composing deep documents without losing bits)."""
    raw = layer.raw
    if raw.dtype == "u16" and raw.channels == 4 and layer.mask is None:
        return QImage(raw.data, raw.width, raw.height, raw.width * 8, QImage.Format.Format_RGBA64).copy()
    return layer.qimage().convertToFormat(QImage.Format.Format_RGBA64)


def _qimage_to_raw(image: QImage, deep: bool, keep_alpha: bool) -> RawImage:
    width, height = image.width(), image.height()
    sample = 2 if deep else 1
    row = width * 4 * sample
    stride = image.bytesPerLine()
    data = images.qimage_bytes(image)
    if stride != row:
        data = b"".join(data[y * stride:y * stride + row] for y in range(height))
    if deep:
        samples = array.array("H")
        samples.frombytes(data)
        if sys.byteorder != "little":  # QImage holds native-endian quint16, the interchange is little-endian
            samples.byteswap()
    else:
        samples = bytearray(data)
    channels = 4
    if not keep_alpha:
        del samples[3::4]
        channels = 3
    return RawImage(width, height, channels, "u16" if deep else "u8",
                    samples.tobytes() if deep else bytes(samples))


class AddResultLayer(QUndoCommand):
    """One Blind Upscale as one undo step: grow the document by `scale` and add the result above
    the source layer at the upscaled position of the source rectangle. The source layer stays the
    active one, so a second Blind Upscale works on the original again, not on the result (x16)."""

    def __init__(self, document: Document, source_layer: Layer, result: Layer, source: Rect,
                 scale: int, label: str):
        super().__init__(label)
        self.document = document
        self.source_layer = source_layer
        self.result = result
        self.scale = scale
        self._before: tuple | None = None
        origin_x = source_layer.x + source.x * source_layer.pixel_size
        origin_y = source_layer.y + source.y * source_layer.pixel_size
        # a result pixel is 1/scale of a source pixel: the document grows until that is whole
        self.grow = scale // math.gcd(source_layer.pixel_size, scale)
        result.pixel_size = source_layer.pixel_size * self.grow // scale
        result.x, result.y = origin_x * self.grow, origin_y * self.grow

    def redo(self) -> None:
        d = self.document
        self._before = (d.width, d.height, d.selection, d.active,
                        [(layer, layer.x, layer.y, layer.pixel_size) for layer in d.layers])
        if self.grow != 1:
            d.width, d.height = d.width * self.grow, d.height * self.grow
            for layer in d.layers:
                layer.x, layer.y, layer.pixel_size = (layer.x * self.grow, layer.y * self.grow,
                                                      layer.pixel_size * self.grow)
            if d.selection is not None:
                s = d.selection
                d.selection = Rect(s.x * self.grow, s.y * self.grow, s.width * self.grow, s.height * self.grow)
        index = d.layers.index(self.source_layer) + 1 if self.source_layer in d.layers else None
        d.add_layer(self.result, index, activate=False)
        d.selection_changed.emit()

    def undo(self) -> None:
        d = self.document
        width, height, selection, active, placements = self._before
        d.layers.remove(self.result)
        d.width, d.height, d.selection, d.active = width, height, selection, active
        for layer, x, y, pixel_size in placements:
            layer.x, layer.y, layer.pixel_size = x, y, pixel_size
        d.touch()
        d.selection_changed.emit()

