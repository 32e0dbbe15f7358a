"""Widgets bound to a setting: the widget shows the value and writes the user's changes back.

Settings -> widget runs under a `SignalBlocker`, so showing a value never echoes it back as a
change; no widget keeps an "updating" flag.
"""
from __future__ import annotations

from ui.qt import QAbstractButton, QCheckBox, QComboBox, QLineEdit, QObject, is_deleted
from ui.settings import BY_NAME, Settings


class SignalBlocker:
    """`with SignalBlocker(a, b):` the widgets emit nothing inside the block."""

    def __init__(self, *objects: QObject):
        self.objects = objects
        self.was: list[bool] = []

    def __enter__(self) -> SignalBlocker:
        self.was = [obj.blockSignals(True) for obj in self.objects]
        return self

    def __exit__(self, *_exc) -> None:
        for obj, was in zip(self.objects, self.was):
            obj.blockSignals(was)


def bind(settings: Settings, name: str, widget) -> None:
    """Keep `widget` and setting `name` in step: a combo box by item data, a check box by its state,
    a line edit by its stripped text when editing finishes, a dict of radio buttons (value ->
    button) by the checked one. Label-less widgets get the setting's tooltip."""
    setting = BY_NAME[name]
    if isinstance(widget, QComboBox):
        def show():
            index = widget.findData(getattr(settings, name))
            if index >= 0:
                widget.setCurrentIndex(index)
        widget.currentIndexChanged.connect(
            lambda index: index >= 0 and settings.set(name, widget.itemData(index)))
        targets = (widget,)
    elif isinstance(widget, QCheckBox):
        def show():
            widget.setChecked(getattr(settings, name))
        widget.toggled.connect(lambda on: settings.set(name, on))
        targets = (widget,)
    elif isinstance(widget, QLineEdit):
        def show():
            widget.setText(getattr(settings, name))
        widget.editingFinished.connect(lambda: settings.set(name, widget.text().strip()))
        targets = (widget,)
    elif isinstance(widget, dict) and all(isinstance(b, QAbstractButton) for b in widget.values()):
        def show():
            widget[getattr(settings, name)].setChecked(True)
        for value, button in widget.items():
            button.toggled.connect(lambda on, v=value: on and settings.set(name, v))
            button.setToolTip(setting.choice_descs.get(value, ""))
        targets = tuple(widget.values())
    else:
        raise TypeError(f"cannot bind {type(widget).__name__} to a setting")
    if setting.desc and not isinstance(widget, dict):
        widget.setToolTip(setting.desc)

    def on_changed(changed: str) -> None:
        if is_deleted(targets[0]):  # the panel closed; the settings (shared by every window) live on
            settings.changed.disconnect(on_changed)
        elif changed == name:
            with SignalBlocker(*targets):
                show()

    settings.changed.connect(on_changed)
    with SignalBlocker(*targets):
        show()

