import sys
import types

from ui import qt


def test_krita_binding_wins(monkeypatch):
    """Inside Krita the binding Krita runs is used; Krita 5 has no qt_major_version and runs PyQt5."""
    monkeypatch.delitem(sys.modules, "pykrita", raising=False)
    assert qt._krita_qt_major() is None  # not inside Krita: PyQt6 first
    monkeypatch.setitem(sys.modules, "pykrita", types.ModuleType("pykrita"))
    monkeypatch.delitem(sys.modules, "PyQt5", raising=False)
    assert qt._krita_qt_major() is None  # no version and no PyQt5 loaded: not Krita 5
    monkeypatch.setitem(sys.modules, "PyQt5", types.ModuleType("PyQt5"))
    assert qt._krita_qt_major() == 5
    krita6 = types.ModuleType("pykrita")
    krita6.qt_major_version = lambda: 6
    monkeypatch.setitem(sys.modules, "pykrita", krita6)
    assert qt._krita_qt_major() == 6
