"""A small stand-in for Krita's `krita` module (libkis), enough for the Blind Upscale plug-in.

It keeps real pixel buffers in Krita's byte layouts (B,G,R,A for U8/U16; R,G,B,A for F16/F32;
gray, alpha for GRAYA), records every pixel write, and uses the Qt binding of ui.qt (PyQt6 here),
which is how the Krita 6 path gets exercised. Facts it mirrors are in docs/krita.md ("Host facts").
"""
from __future__ import annotations

import enum
import itertools

from ui.qt import QDockWidget, QImage, QObject, QtCore, QtWidgets, Signal

IS_MOCK = True
CHANNELS = {"RGBA": 4, "GRAYA": 2, "CMYKA": 5}
SAMPLE = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
_ids = itertools.count(1)


class Selection:
    def __init__(self, x=0, y=0, width=0, height=0, mask: bytes | None = None):
        self._x, self._y, self._w, self._h = x, y, width, height
        self._mask = mask if mask is not None else b"\xff" * (width * height)

    def select(self, x, y, w, h, value):
        self.__init__(x, y, w, h, bytes([value]) * (w * h))

    def x(self):
        return self._x

    def y(self):
        return self._y

    def width(self):
        return self._w

    def height(self):
        return self._h

    def pixelData(self, x, y, w, h):
        out = bytearray(w * h)
        for row in range(h):
            for col in range(w):
                sx, sy = x + col - self._x, y + row - self._y
                if 0 <= sx < self._w and 0 <= sy < self._h:
                    out[row * w + col] = self._mask[sy * self._w + sx]
        return QtCore.QByteArray(bytes(out))


class Node:
    def __init__(self, document: Document, name: str, kind: str, model: str, depth: str, profile: str):
        self.document = document
        self._name, self._type = name, kind
        self._model, self._depth, self._profile = model, depth, profile
        self._uuid = f"node-{next(_ids)}"
        self.children: list[Node] = []
        self.parent: Node | None = None
        self.writes: list[tuple[int, int, int, int]] = []
        self._resize_buffer(document.width(), document.height())

    @property
    def pixel_size(self) -> int:
        if self._type in ("transparencymask", "selectionmask"):
            return 1
        return CHANNELS[self._model] * SAMPLE[self._depth]

    def _resize_buffer(self, width, height):
        self.buffer_size = (width, height)
        self.buffer = bytearray(width * height * self.pixel_size)

    def name(self):
        return self._name

    def type(self):
        return self._type

    def colorModel(self):
        return self._model

    def colorDepth(self):
        return self._depth

    def colorProfile(self):
        return self._profile

    def setColorSpace(self, model, depth, profile):
        self._model, self._depth, self._profile = model, depth, profile
        self._resize_buffer(*self.buffer_size)
        return True

    def uniqueId(self):
        return self._uuid

    def parentNode(self):
        return self.parent

    def childNodes(self):
        return list(self.children)

    def addChildNode(self, child: Node, above: Node | None):
        child.parent = self
        index = self.children.index(above) + 1 if above in self.children else len(self.children)
        self.children.insert(index, child)
        self.document.undo_steps.append(f"add {child.name()}")
        return True

    def remove(self):
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None
        return True

    def _fit(self):
        """Krita's paint devices are unbounded; here a buffer follows the document's size."""
        size = (self.document.width(), self.document.height())
        if self.buffer_size != size:
            old, (old_w, old_h), px = self.buffer, self.buffer_size, self.pixel_size
            self._resize_buffer(*size)
            for row in range(min(old_h, size[1])):
                n = min(old_w, size[0]) * px
                self.buffer[row * size[0] * px:row * size[0] * px + n] = old[row * old_w * px:row * old_w * px + n]

    def pixelData(self, x, y, w, h):
        self._fit()
        width, height = self.buffer_size
        px = self.pixel_size
        out = bytearray(w * h * px)
        for row in range(h):
            sy = y + row
            if not 0 <= sy < height:
                continue
            x0, x1 = max(x, 0), min(x + w, width)
            if x1 <= x0:
                continue
            src = self.buffer[(sy * width + x0) * px:(sy * width + x1) * px]
            out[(row * w + x0 - x) * px:(row * w + x1 - x) * px] = src
        return QtCore.QByteArray(bytes(out))

    def setPixelData(self, data, x, y, w, h):
        data = bytes(data)
        px = self.pixel_size
        assert len(data) == w * h * px, f"setPixelData got {len(data)} bytes for {w}x{h}x{px}"
        self._fit()
        width, height = self.buffer_size
        for row in range(h):
            ty = y + row
            if 0 <= ty < height:
                x0, x1 = max(x, 0), min(x + w, width)
                self.buffer[(ty * width + x0) * px:(ty * width + x1) * px] = \
                    data[(row * w + x0 - x) * px:(row * w + x1 - x) * px]
        self.writes.append((x, y, w, h))

    def thumbnail(self, w, h):
        image = QImage(w, h, QImage.Format.Format_ARGB32)
        image.fill(hash(bytes(self.buffer)) & 0xFFFFFFFF)
        return image

    def _scale(self, width, height):
        """Nearest-neighbour resampling of the buffer (Krita would resample with the filter)."""
        old_w, old_h = self.buffer_size
        px = self.pixel_size
        old = self.buffer
        self._resize_buffer(width, height)
        for row in range(height):
            sy = row * old_h // height
            for col in range(width):
                sx = col * old_w // width
                self.buffer[(row * width + col) * px:(row * width + col + 1) * px] = \
                    old[(sy * old_w + sx) * px:(sy * old_w + sx + 1) * px]
        for child in self.children:
            child._scale(width, height)


class Document:
    def __init__(self, width, height, name, model, depth, profile, resolution=72.0):
        self._w, self._h = width, height
        self._name = name
        self._model, self._depth, self._profile = model, depth, profile
        self._res = resolution
        self.undo_steps: list[str] = []
        self._root = Node(self, "root", "grouplayer", model, depth, profile)
        self._active: Node | None = None
        self._selection: Selection | None = None

    def width(self):
        return self._w

    def height(self):
        return self._h

    def xRes(self):
        return self._res

    def yRes(self):
        return self._res

    def colorModel(self):
        return self._model

    def colorDepth(self):
        return self._depth

    def colorProfile(self):
        return self._profile

    def rootNode(self):
        return self._root

    def activeNode(self):
        return self._active

    def setActiveNode(self, node):
        self._active = node

    def createNode(self, name, kind):
        return Node(self, name, kind, self._model, self._depth, self._profile)

    def selection(self):
        return self._selection

    def setSelection(self, selection):
        self._selection = selection

    def scaleImage(self, w, h, xres, yres, strategy):
        if not all(isinstance(v, int) for v in (w, h, xres, yres)):
            raise TypeError("scaleImage(self, int, int, int, int, str): arguments must be int")  # as libkis
        for node in self._root.children:
            node._scale(w, h)
        if self._selection is not None:
            s = self._selection
            fx, fy = w / self._w, h / self._h
            s.__init__(int(s.x() * fx), int(s.y() * fy), int(s.width() * fx), int(s.height() * fy))
        self._w, self._h, self._res = w, h, xres
        self.undo_steps.append(f"scale {w}x{h}")
        return True

    def waitForDone(self):
        pass

    def refreshProjection(self):
        pass

    def all_nodes(self):
        return list(self._root.children)


class Notifier(QObject):
    applicationClosing = Signal()
    imageCreated = Signal(object)
    windowCreated = Signal()

    def setActive(self, value):
        self.active = value


class Canvas:
    """Reports the zoom times resolution/72 and sets it without, as Krita 5.1 does."""

    def __init__(self, view):
        self._view, self._zoom = view, 1.0

    def zoomLevel(self):
        doc = self._view.document()
        return self._zoom * (doc.xRes() / 72.0 if doc is not None else 1.0)

    def setZoomLevel(self, value):
        self._zoom = value


class View:
    def __init__(self, app):
        self._app = app
        self._canvas = Canvas(self)

    def document(self):
        return self._app.activeDocument()

    def canvas(self):
        return self._canvas


class Window:
    def __init__(self):
        self._qwindow = None  # made on first use: a widget needs the QApplication
        self.actions: dict[str, object] = {}
        self._view = None

    def activeView(self):
        if self._view is None:
            self._view = View(Krita.instance())
        return self._view

    def qwindow(self):
        if self._qwindow is None:
            self._qwindow = QtWidgets.QMainWindow()
        return self._qwindow

    def createAction(self, action_id, text, menu):
        from ui.qt import QAction
        action = QAction(text, self.qwindow())
        action.setObjectName(action_id)
        self.actions[action_id] = (action, menu)
        return action


class Extension(QObject):
    def __init__(self, parent=None):
        super().__init__()


class DockWidget(QDockWidget):
    pass


class DockWidgetFactoryBase:
    class DockPosition(enum.IntEnum):
        DockTornOff = 0
        DockTop = 1
        DockBottom = 2
        DockRight = 3
        DockLeft = 4
        DockMinimized = 5


class DockWidgetFactory(DockWidgetFactoryBase):
    def __init__(self, dock_id, position, cls):
        self.dock_id, self.position, self.cls = dock_id, position, cls

    def create(self):
        return self.cls()


class Krita(QObject):
    _instance: Krita | None = None

    def __init__(self):
        super().__init__()
        self.documents_: list[Document] = []
        self._active_document: Document | None = None
        self._notifier = Notifier()
        self._window = Window()
        self.extensions: list[Extension] = []
        self.factories: list[DockWidgetFactory] = []
        self.settings: dict[tuple[str, str], str] = {}
        self.app_data = ""

    @classmethod
    def instance(cls) -> Krita:
        if cls._instance is None:
            cls._instance = Krita()
        return cls._instance

    @classmethod
    def reset(cls) -> Krita:
        cls._instance = Krita()
        return cls._instance

    def notifier(self):
        return self._notifier

    def activeWindow(self):
        return self._window

    def activeDocument(self):
        return self._active_document

    def setActiveDocument(self, doc):
        self._active_document = doc

    def documents(self):
        return list(self.documents_)

    def createDocument(self, width, height, name, model, depth, profile, resolution):
        doc = Document(width, height, name, model, depth, profile, resolution)
        self.documents_.append(doc)
        return doc

    def addExtension(self, extension):
        self.extensions.append(extension)
        extension.setup()

    def addDockWidgetFactory(self, factory):
        self.factories.append(factory)

    def readSetting(self, group, key, default):
        return self.settings.get((group, key), default)

    def writeSetting(self, group, key, value):
        self.settings[(group, key)] = value

    def getAppDataLocation(self):
        return self.app_data
