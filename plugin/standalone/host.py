"""`protocol.host.Host` for the standalone editor: the active layer of its Document, its selection
(rectangular, so no mask), the canvas's view centre, results pushed on its undo stack.

The result layer never becomes the active layer by itself (AddResultLayer keeps the source active),
so the panel keeps reading the source; only the user picking the result in the layers list does."""
from __future__ import annotations

from protocol.host import Host, Rect, Selection
from protocol.raw_image import RawImage
from ui import images
from ui.qt import QUndoStack

from plugin.standalone.canvas import Canvas
from plugin.standalone.document import AddResultLayer, Document, Layer


class StandaloneHost(Host):
    def __init__(self, document: Document, canvas: Canvas, undo_stack: QUndoStack):
        self.document = document
        self.canvas = canvas
        self.undo_stack = undo_stack

    def set_document(self, document: Document) -> None:
        self.document = document

    def has_image(self) -> bool:
        return self.document.active is not None

    def layer_name(self) -> str:
        return self.document.active.name

    def layer_size(self) -> tuple[int, int]:
        raw = self.document.active.raw
        return raw.width, raw.height

    def layer_pixels(self, rect: Rect | None = None) -> RawImage:
        raw = self.document.active.raw
        return raw if rect is None else images.crop(raw, *rect.as_tuple())

    def selection(self) -> Selection | None:
        """The document selection in active-layer pixels (rounded outwards), clipped to the layer."""
        s = self.document.selection
        layer = self.document.active
        if s is None or layer is None:
            return None
        p = layer.pixel_size
        x0, y0 = (s.x - layer.x) // p, (s.y - layer.y) // p
        x1, y1 = -(-(s.x + s.width - layer.x) // p), -(-(s.y + s.height - layer.y) // p)
        bounds = Rect(x0, y0, x1 - x0, y1 - y0).intersected(Rect(0, 0, layer.raw.width, layer.raw.height))
        return Selection(bounds) if bounds is not None else None

    def view_center(self) -> tuple[int, int]:
        layer = self.document.active
        x, y = self.canvas.view_center()
        width, height = layer.raw.width, layer.raw.height
        return (min(max(0, (x - layer.x) // layer.pixel_size), width - 1),
                min(max(0, (y - layer.y) // layer.pixel_size), height - 1))

    def revision(self) -> object:
        d = self.document
        return (id(d), d.revision, id(d.active))

    def apply_result(self, image: RawImage, source: Rect, scale: int, name: str, undo_label: str,
                     mask: bytes | None = None) -> None:
        if image.width != source.width * scale or image.height != source.height * scale:
            raise ValueError(f"the result is {image.width}x{image.height}, expected "
                             f"{source.width * scale}x{source.height * scale}")
        if mask is not None:
            mask = images.scale_mask(mask, source.width, source.height, scale)
        layer = Layer(name, image, mask=mask)
        self.undo_stack.push(AddResultLayer(self.document, self.document.active, layer, source, scale, undo_label))
        self.canvas.reveal(layer.doc_rect)
