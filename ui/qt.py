"""The one place that picks the Qt binding: PyQt6 first, PyQt5 as the fallback.

Krita 6 refuses PyQt5 imports and Krita 5 has only PyQt5, so the rest of ui/ and plugin/ import Qt
names from here and write scoped enums (``Qt.AlignmentFlag.AlignLeft``), which both bindings accept.
Inside Krita the binding Krita itself uses wins (``pykrita.qt_major_version()``).
"""
from __future__ import annotations

import sys


def _krita_qt_major() -> int | None:
    try:
        import pykrita  # type: ignore[import-not-found]
    except ImportError:
        return None
    version = getattr(pykrita, "qt_major_version", None)
    if callable(version):
        return int(version())
    # Krita 5 (5.1.5 here) has no qt_major_version; it has loaded PyQt5 before any plug-in, and
    # PyQt5 must win even if PyQt6 is installed too.
    return 5 if "PyQt5" in sys.modules else None


def _load_binding():
    major = _krita_qt_major()
    if major != 5:
        try:
            from PyQt6 import QtCore, QtGui, QtWidgets, sip
            return 6, QtCore, QtGui, QtWidgets, sip
        except ImportError:
            if major == 6:
                raise
    from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]
    try:
        from PyQt5 import sip  # type: ignore[no-redef]
    except ImportError:  # Debian and older PyQt5 builds ship sip as a top-level module
        import sip  # type: ignore[no-redef]
    return 5, QtCore, QtGui, QtWidgets, sip


QT_MAJOR, QtCore, QtGui, QtWidgets, sip = _load_binding()


def is_deleted(obj) -> bool:
    """True once Qt has destroyed the C++ side of `obj` (a widget closed while a call was out)."""
    return sip.isdeleted(obj)

Qt = QtCore.Qt
QObject = QtCore.QObject
QTimer = QtCore.QTimer
QThread = QtCore.QThread
QRect = QtCore.QRect
QRectF = QtCore.QRectF
QPoint = QtCore.QPoint
QPointF = QtCore.QPointF
QSize = QtCore.QSize
QStandardPaths = QtCore.QStandardPaths
QUrl = QtCore.QUrl
QElapsedTimer = QtCore.QElapsedTimer
Signal = QtCore.pyqtSignal
Slot = QtCore.pyqtSlot

QImage = QtGui.QImage
QPixmap = QtGui.QPixmap
QPainter = QtGui.QPainter
QColor = QtGui.QColor
QPen = QtGui.QPen
QBrush = QtGui.QBrush
QKeySequence = QtGui.QKeySequence
QStandardItemModel = QtGui.QStandardItemModel
QStandardItem = QtGui.QStandardItem
QTransform = QtGui.QTransform
QPalette = QtGui.QPalette
QFont = QtGui.QFont
QDesktopServices = QtGui.QDesktopServices

# Moved from QtWidgets to QtGui in Qt 6.
QAction = getattr(QtGui, "QAction", None) or QtWidgets.QAction
QUndoStack = getattr(QtGui, "QUndoStack", None) or QtWidgets.QUndoStack
QUndoCommand = getattr(QtGui, "QUndoCommand", None) or QtWidgets.QUndoCommand

QApplication = QtWidgets.QApplication
QWidget = QtWidgets.QWidget
QMainWindow = QtWidgets.QMainWindow
QDialog = QtWidgets.QDialog
QDockWidget = QtWidgets.QDockWidget
QLabel = QtWidgets.QLabel
QAbstractButton = QtWidgets.QAbstractButton
QPushButton = QtWidgets.QPushButton
QToolButton = QtWidgets.QToolButton
QComboBox = QtWidgets.QComboBox
QCheckBox = QtWidgets.QCheckBox
QRadioButton = QtWidgets.QRadioButton
QButtonGroup = QtWidgets.QButtonGroup
QSlider = QtWidgets.QSlider
QSpinBox = QtWidgets.QSpinBox
QDoubleSpinBox = QtWidgets.QDoubleSpinBox
QLineEdit = QtWidgets.QLineEdit
QProgressBar = QtWidgets.QProgressBar
QListWidget = QtWidgets.QListWidget
QListWidgetItem = QtWidgets.QListWidgetItem
QGroupBox = QtWidgets.QGroupBox
QFormLayout = QtWidgets.QFormLayout
QHBoxLayout = QtWidgets.QHBoxLayout
QVBoxLayout = QtWidgets.QVBoxLayout
QGridLayout = QtWidgets.QGridLayout
QSizePolicy = QtWidgets.QSizePolicy
QScrollArea = QtWidgets.QScrollArea
QAbstractScrollArea = QtWidgets.QAbstractScrollArea
QStyle = QtWidgets.QStyle
QStylePainter = QtWidgets.QStylePainter
QStyleOptionComboBox = QtWidgets.QStyleOptionComboBox
QMdiArea = QtWidgets.QMdiArea
QFileDialog = QtWidgets.QFileDialog
QMessageBox = QtWidgets.QMessageBox
QStatusBar = QtWidgets.QStatusBar
QAbstractItemView = QtWidgets.QAbstractItemView
QFrame = QtWidgets.QFrame


def exec_dialog(obj) -> int:
    """``exec`` in Qt 6, ``exec_`` in PyQt5 (which also accepts ``exec`` from 5.15 on, but not everywhere)."""
    run = getattr(obj, "exec", None) or obj.exec_
    return run()
