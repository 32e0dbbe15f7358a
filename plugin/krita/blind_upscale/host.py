"""The Krita side of protocol.host.Host: the active paint layer's pixels in, a new result layer out.

Only Krita's libkis API and Qt are used (through ui.qt), on the GUI thread. The user's layer is
never written to; the document is changed only once the result is in hand and checked, so an
engine failure leaves it untouched. Krita has no undo macro API: scaling the canvas and adding
the result layer are two undo steps (docs/krita.md, "Host facts"). The source layer stays the
active one, so the preview and a second run never take the result for the source, and the view
keeps showing the same part of the image at the same size on screen.
"""
from __future__ import annotations

import hashlib

from krita import Krita

from .pixels import UnsupportedLayer, check_format, krita_to_raw, raw_to_krita, with_coverage
from protocol.host import Host, Rect, Selection
from protocol.raw_image import RawImage
from ui.images import qimage_bytes, scale_mask
from ui.qt import QAbstractScrollArea, QMdiArea


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
        view = self._view_of(doc)
        zoom, centre = (view.canvas().zoomLevel(), _scroll_centre(self._canvas_scroller())) if view else (0, None)
        doc.scaleImage(doc.width() * scale, doc.height() * scale, round(doc.xRes()), round(doc.yRes()), "Bicubic")
        doc.waitForDone()
        layer.setPixelData(data, source.x * scale, source.y * scale, width, height)
        parent = node.parentNode() or doc.rootNode()
        parent.addChildNode(layer, node)
        doc.setActiveNode(node)  # the source stays the layer the panel works on
        doc.refreshProjection()
        if view is not None and zoom > 0:
            _set_zoom(view.canvas(), zoom / scale)
            _scroll_to_centre(self._canvas_scroller(), centre)

    # ---------------------------------------------------------------- the view
    def _view_of(self, doc):
        """The active view when it shows `doc` (libkis wraps a document anew on every call, so
        documents are compared by their root node)."""
        window = self.app.activeWindow()
        view = window.activeView() if window is not None else None
        if view is None or view.document() is None:
            return None
        same = view.document().rootNode().uniqueId() == doc.rootNode().uniqueId()
        return view if same else None

    def _canvas_scroller(self) -> QAbstractScrollArea | None:
        """The scroll area of the active view's canvas: libkis (5.1) has no way to pan, its scroll
        bars do. None where the window has no such widget."""
        window = self.app.activeWindow()
        mdi = window.qwindow().findChild(QMdiArea) if window is not None else None
        sub = mdi.activeSubWindow() if mdi is not None else None
        if sub is None or sub.widget() is None:
            return None
        return sub.widget().findChild(QAbstractScrollArea)


def _set_zoom(canvas, wanted: float) -> None:
    """Set the zoom `zoomLevel()` will report as `wanted`. Krita reports the zoom times the
    document's resolution over 72 but sets it without that factor; measuring the factor after
    one setting keeps this right whichever way a Krita version reports it."""
    canvas.setZoomLevel(wanted)
    got = canvas.zoomLevel()
    if got > 0 and abs(got - wanted) > 1e-6 * wanted:
        canvas.setZoomLevel(wanted * wanted / got)


def _scroll_centre(scroller: QAbstractScrollArea | None) -> tuple[float, float] | None:
    """Where the view's centre lies along each scroll range (0..1)."""
    if scroller is None:
        return None
    return tuple((bar.value() + bar.pageStep() / 2) / max(1, bar.maximum() + bar.pageStep())  # type: ignore[return-value]
                 for bar in (scroller.horizontalScrollBar(), scroller.verticalScrollBar()))


def _scroll_to_centre(scroller: QAbstractScrollArea | None, centre: tuple[float, float] | None) -> None:
    if scroller is None or centre is None:
        return
    for bar, where in zip((scroller.horizontalScrollBar(), scroller.verticalScrollBar()), centre):
        bar.setValue(round(where * (bar.maximum() + bar.pageStep()) - bar.pageStep() / 2))

