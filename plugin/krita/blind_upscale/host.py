"""The Krita side of protocol.host.Host: the active paint layer's pixels in, a new result layer out.

Only Krita's libkis API and Qt are used (through ui.qt), on the GUI thread. The user's layer is
never written to; the document is changed only once the result is in hand and checked, so an
engine failure leaves it untouched. Krita has no undo macro API: scaling the canvas and adding
the result layer are two undo steps (docs/krita.md, "Host facts").
"""
from __future__ import annotations

import hashlib

from krita import Krita

from .pixels import UnsupportedLayer, check_format, krita_to_raw, raw_to_krita, with_coverage
from protocol.host import Host, Rect, Selection
from protocol.raw_image import RawImage
from ui.images import qimage_bytes, scale_mask


class KritaHost(Host):
    def __init__(self, app=None):
        self.app = app or Krita.instance()
        self._source = None  # (document, node) the last pixels were read from

    # ---------------------------------------------------------------- reading
    def _document(self):
        return self.app.activeDocument()

    def _layer(self):
        doc = self._document()
        if doc is None:
            raise UnsupportedLayer("Open an image first: there is no active document.")
        node = doc.activeNode()
        if node is None or node.type() != "paintlayer":
            kind = "no layer" if node is None else f"a {node.type()}"
            raise UnsupportedLayer(f"Select a paint layer to upscale (the active layer is {kind}).")
        return doc, node

    def has_image(self) -> bool:
        doc = self._document()
        if doc is None:
            return False
        node = doc.activeNode()
        return node is not None and node.type() == "paintlayer"

    def layer_name(self) -> str:
        return self._layer()[1].name()

    def layer_size(self) -> tuple[int, int]:
        doc = self._layer()[0]
        return doc.width(), doc.height()

    def layer_pixels(self, rect: Rect | None = None) -> RawImage:
        doc, node = self._layer()
        model, depth, profile = node.colorModel(), node.colorDepth(), node.colorProfile()
        check_format(model, depth)
        canvas = Rect(0, 0, doc.width(), doc.height())
        area = canvas if rect is None else rect.intersected(canvas)
        if area is None:
            raise UnsupportedLayer("The requested area lies outside the image.")
        data = bytes(node.pixelData(area.x, area.y, area.width, area.height))
        self._source = (doc, node)
        return krita_to_raw(data, area.width, area.height, model, depth, profile)

    def selection(self) -> Selection | None:
        doc = self._document()
        if doc is None:
            return None
        sel = doc.selection()
        if sel is None or sel.width() <= 0 or sel.height() <= 0:
            return None
        bounds = Rect(sel.x(), sel.y(), sel.width(), sel.height()).intersected(
            Rect(0, 0, doc.width(), doc.height()))
        if bounds is None:
            return None
        mask = bytes(sel.pixelData(bounds.x, bounds.y, bounds.width, bounds.height))
        if mask.count(255) == len(mask):
            mask = None
        return Selection(bounds, mask)

    def view_center(self) -> tuple[int, int]:
        """libkis (5.1) exposes no view transform, so the image centre stands in for it."""
        doc = self._layer()[0]
        return doc.width() // 2, doc.height() // 2

    def revision(self) -> object:
        doc = self._document()
        if doc is None:
            return None
        node = doc.activeNode()
        sel = doc.selection()
        sel_key = None if sel is None else (sel.x(), sel.y(), sel.width(), sel.height())
        if node is None:
            return (id(doc), None, sel_key)
        thumb = node.thumbnail(32, 32)
        digest = hashlib.sha1(qimage_bytes(thumb)).hexdigest() if not thumb.isNull() else ""
        return (id(doc), str(node.uniqueId()), doc.width(), doc.height(), sel_key, digest)

    # ---------------------------------------------------------------- writing
    def apply_result(self, image: RawImage, source: Rect, scale: int, name: str, undo_label: str,
                     mask: bytes | None = None) -> None:
        doc, node = self._source if self._source is not None else self._layer()
        if doc not in self.app.documents():
            raise UnsupportedLayer("The document was closed before the result arrived.")
        model, depth = node.colorModel(), node.colorDepth()
        width, height = source.width * scale, source.height * scale
        if (image.width, image.height) != (width, height):
            raise UnsupportedLayer(f"The engine returned {image.width}x{image.height} pixels, "
                                   f"expected {width}x{height}.")
        if mask:
            image = with_coverage(image, scale_mask(mask, source.width, source.height, scale))
        data = raw_to_krita(image, model, depth)

        layer = doc.createNode(name, "paintlayer")
        if layer is None:
            raise UnsupportedLayer("Krita could not create the result layer.")
        if (layer.colorModel(), layer.colorDepth()) != (model, depth):
            layer.setColorSpace(model, depth, node.colorProfile())
        # Everything that can fail has been checked: from here on the document changes.
        doc.scaleImage(doc.width() * scale, doc.height() * scale, round(doc.xRes()), round(doc.yRes()), "Bicubic")
        doc.waitForDone()
        layer.setPixelData(data, source.x * scale, source.y * scale, width, height)
        parent = node.parentNode() or doc.rootNode()
        parent.addChildNode(layer, node)
        doc.setActiveNode(layer)
        doc.refreshProjection()

