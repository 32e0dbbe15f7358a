"""The panel's settings sections: method, degradation dials, selection role, engine.

Each is a widget bound to the settings (ui/bind.py) and to the shared `PanelState`; what a
section shows for a method comes from that method's `models()` entry, never from code per method.
"""
from __future__ import annotations

import os

from protocol.client import default_model
from ui.bind import SignalBlocker, bind
from ui.calls import plain_error
from ui.qt import (QCheckBox, QComboBox, QDesktopServices, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                   QLineEdit, QPushButton, QRadioButton, QSlider, QStandardItemModel, QStyle,
                   QStyleOptionComboBox, QStylePainter, Qt, QToolButton, QUrl, QVBoxLayout, QWidget,
                   is_deleted)
from ui.request import (SELECTION_USE_NEEDS, config_name, present_config, restorer_installed, restorer_missing,
                        selection_use, usable_configs)
from ui.settings import BY_NAME, TILE_SIZES
from ui.state import PanelState

DIAL_STEPS = 100
ROLE_WORDS = {"support": "a sample", "face": "a face"}  # "<method> uses the selection as ..."


def _label(name: str) -> str:
    return BY_NAME[name].label


USER_PREFIX = "user:"
"""Model ids of the user's own models (files in the models folder, run through spandrel)."""
RUNNABLE = ("bundled", "user")
"""Weights statuses a model can run with ("missing" and a user file's "unusable" cannot)."""


def _flat_form(widget: QWidget) -> QFormLayout:
    """A form that lines up with the panel's other sections (no margins of its own)."""
    form = QFormLayout(widget)
    form.setContentsMargins(0, 0, 0, 0)
    return form


class ElidingCombo(QComboBox):
    """A combo box that may be narrower than its longest item: the shown text ends in "…" (Qt's
    styles would cut it off), and the list that drops down shows it whole."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(6)

    def shown_text(self) -> str:
        """The current text as it fits the field."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideRight, field.width())

    def paintEvent(self, _event) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


def short_title(model: dict) -> str:
    """The method's name for the list: its family ("KDSR"), not the title's explanation; a user's
    own model by its file's name (several may share an architecture)."""
    if model["id"].startswith(USER_PREFIX):
        return model.get("title") or model["id"]
    return model.get("family") or model.get("title") or model["id"]


def model_tooltip(model: dict) -> str:
    """The method's full title and summary, and its variants."""
    lines = [model.get("title") or model["id"], model.get("summary", "")]
    if model.get("weights") == "missing":
        lines.append("Disabled: no weights are installed for this method. Put the official "
                     "checkpoint in the Blind Upscale models folder to enable it.")
    if model.get("weights") == "unusable":
        return f"Disabled: {model.get('reason', 'this file cannot be used')}"
    size = (model.get("checkpoint") or {}).get("size_requirements") or {}
    if size.get("multiple_of", 1) > 1 or size.get("minimum"):
        lines.append(f"Input: at least {size.get('minimum') or 1} px, a multiple of {size.get('multiple_of', 1)} px"
                     + (", square" if size.get("square") else ""))
    for config in model.get("configs", []):
        params = config.get("params")
        size = f", {params / 1e6:.1f} M parameters" if params else ""
        lines.append(f"{config.get('id')}: weights {config.get('weights')}{size}")
    return "\n".join(line for line in lines if line)


class Collapsible(QWidget):
    """A titled part of the panel that folds away behind its header button, so the panel fits a
    short docker; `expanded` says whether its content shows."""

    def __init__(self, title: str, *content: QWidget, expanded: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setAutoRaise(True)
        self.header.toggled.connect(self._show)
        layout.addWidget(self.header)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(8, 0, 0, 0)
        for widget in content:
            body.addWidget(widget)
        layout.addWidget(self.body)
        self.header.setChecked(expanded)
        self._show(expanded)

    @property
    def expanded(self) -> bool:
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        self.header.setChecked(expanded)

    def _show(self, expanded: bool) -> None:
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)


class MethodSection(QWidget):
    """Method, variant, scale. The method list shows short names that elide in a narrow docker;
    the full description is the tooltip."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        settings = state.settings
        form = _flat_form(self)
        self.model_combo = ElidingCombo()
        bind(settings, "model", self.model_combo)
        form.addRow(_label("model"), self.model_combo)
        folder_row = QHBoxLayout()
        self.folder_button = QPushButton("Models folder")
        self.folder_button.setToolTip("Open the folder where your own models (.safetensors, .pth) go")
        self.folder_button.clicked.connect(self._open_models_folder)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("List the models again (after adding or removing files)")
        self.refresh_button.clicked.connect(self.refresh_models)
        folder_row.addWidget(self.folder_button)
        folder_row.addWidget(self.refresh_button)
        form.addRow(folder_row)
        self.config_combo = ElidingCombo()
        self.config_combo.currentIndexChanged.connect(self._on_config_picked)
        self.config_label = QLabel(_label("configs"))
        form.addRow(self.config_label, self.config_combo)
        self.scale_combo = QComboBox()
        bind(settings, "scale", self.scale_combo)
        form.addRow(_label("scale"), self.scale_combo)
        state.models_changed.connect(self._fill_models)
        settings.changed.connect(self._on_setting_changed)
        self._fill_models()

    def _on_setting_changed(self, name: str) -> None:
        if name == "model":
            self._show_model()

    def _fill_models(self) -> None:
        """List the engine's methods, one line each, then the user's own models under their own
        heading; those that cannot run (no weights, an unusable file) are listed but disabled."""
        models, combo = self.state.models, self.model_combo
        items: QStandardItemModel = combo.model()
        own = [m for m in models if m["id"].startswith(USER_PREFIX)]
        with SignalBlocker(combo):
            combo.clear()
            for model in [m for m in models if not m["id"].startswith(USER_PREFIX)] + own:
                if model is next(iter(own), None):
                    combo.insertSeparator(combo.count())
                    combo.addItem("Your own models")
                    items.item(combo.count() - 1).setEnabled(False)
                weights = model.get("weights")
                note = {"missing": " (no weights)", "unusable": " (unusable)"}.get(weights, "")
                combo.addItem(short_title(model) + note, model["id"])
                items.item(combo.count() - 1).setToolTip(model_tooltip(model))
                items.item(combo.count() - 1).setEnabled(weights in RUNNABLE)
            wanted = combo.findData(self.state.settings.model)
            if wanted < 0 or not items.item(wanted).isEnabled():
                wanted = combo.findData(default_model(models))
            if wanted < 0 or not items.item(wanted).isEnabled():
                wanted = next((i for i in range(combo.count())
                               if combo.itemData(i) and items.item(i).isEnabled()), -1)
            combo.setCurrentIndex(wanted)
        if wanted >= 0:
            self.state.settings.set("model", combo.itemData(wanted))
        self._show_model()

    def refresh_models(self) -> None:
        """Ask the engine for its models again: files added to the models folder appear (the
        face restorer's too, which its health answer reports)."""
        client = self.state.client
        if client is None:
            return
        self.state.calls.start(lambda: (client.models(), client.health()),
                               lambda result, error: self._on_refreshed(client, result, error))

    def _on_refreshed(self, client, result, error) -> None:
        if client is not self.state.client:
            return
        if error is not None:
            self.state.show_error(plain_error(error))
            return
        models, health = result
        self.state.set_models(models, health)
        own = [m for m in models if m["id"].startswith(USER_PREFIX)]
        usable = sum(m.get("weights") in RUNNABLE for m in own)
        self.state.show_status(f"Models listed again: {usable} of your own models usable"
                               + (f", {len(own) - usable} not" if len(own) > usable else "") + ".")

    def _open_models_folder(self) -> None:
        """Opens the engine's models folder (from its health answer) in the file manager; an
        engine on another machine has its folder there, so its path is shown instead."""
        client = self.state.client
        if client is None:
            return
        self.state.calls.start(client.health, lambda health, error: self._show_folder(health, error))

    def _show_folder(self, health, error) -> None:
        if error is not None:
            self.state.show_error(plain_error(error))
            return
        folder = (health or {}).get("models_dir")
        if not folder:
            self.state.show_error("This engine does not say where its models folder is; update it.")
            return
        if os.path.isdir(os.path.dirname(folder)):  # a local engine: make the folder on first use
            os.makedirs(folder, exist_ok=True)
        if not os.path.isdir(folder) or not QDesktopServices.openUrl(QUrl.fromLocalFile(folder)):
            self.state.show_status(f"Your models folder (on the engine's machine): {folder}")

    def _show_model(self) -> None:
        """Scales up to the method's own, its variants with weights, its summary."""
        model, settings = self.state.current_model(), self.state.settings
        with SignalBlocker(self.scale_combo, self.config_combo):
            self.scale_combo.clear()
            native = int(model.get("scale", 4)) if model else 4
            for factor in range(min(2, native), native + 1):  # a ×1 (restoration) model offers ×1
                self.scale_combo.addItem(f"×{factor}", factor)
            index = self.scale_combo.findData(settings.scale)
            self.scale_combo.setCurrentIndex(index if index >= 0 else self.scale_combo.count() - 1)
            self.config_combo.clear()
            usable = usable_configs(model)
            for index, config in enumerate(usable):
                params = config.get("params") or 0
                size = f", {params / 1e6:.1f} M parameters" if params else ""
                self.config_combo.addItem(config_name(config), config_name(config))
                self.config_combo.setItemData(index, f"{config['weights']} weights{size}", Qt.ItemDataRole.ToolTipRole)
            chosen = present_config(model, settings.configs.get(settings.model))
            self.config_combo.setCurrentIndex(max(0, self.config_combo.findData(chosen)) if usable else -1)
        if model and self.scale_combo.currentData() != settings.scale:
            settings.set("scale", self.scale_combo.currentData())
        self.model_combo.setToolTip(model_tooltip(model) if model else "")
        self.config_combo.setVisible(len(usable) > 1)
        self.config_label.setVisible(len(usable) > 1)

    def _on_config_picked(self, index: int) -> None:
        if index >= 0:
            settings = self.state.settings
            settings.set("configs", {**settings.configs, settings.model: self.config_combo.itemData(index)})


class AdvancedSection(QWidget):
    """Device, tile size, self-ensemble: the settings a first run needs no opinion on. Only the
    devices the engine can use are offered."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        settings = state.settings
        form = _flat_form(self)
        self.device_combo = QComboBox()
        bind(settings, "device", self.device_combo)
        form.addRow(_label("device"), self.device_combo)
        self.tile_combo = QComboBox()
        for tile in sorted({*TILE_SIZES, settings.tile}):
            self.tile_combo.addItem("No tiling" if tile == 0 else f"{tile} px", tile)
        bind(settings, "tile", self.tile_combo)
        form.addRow(_label("tile"), self.tile_combo)
        self.ensemble_check = QCheckBox(_label("ensemble"))
        bind(settings, "ensemble", self.ensemble_check)
        form.addRow(self.ensemble_check)
        state.models_changed.connect(self._offer_devices)
        settings.changed.connect(self._on_setting_changed)
        self._offer_devices()

    def _on_setting_changed(self, name: str) -> None:
        if name == "tile" and self.tile_combo.findData(self.state.settings.tile) < 0:
            tile = self.state.settings.tile
            with SignalBlocker(self.tile_combo):
                self.tile_combo.addItem(f"{tile} px", tile)
                self.tile_combo.setCurrentIndex(self.tile_combo.count() - 1)

    def _offer_devices(self) -> None:
        """CUDA only when the engine has a GPU (or has not said yet); a saved choice the engine
        cannot use falls back to Auto."""
        settings, engine_device = self.state.settings, self.state.device_name
        offered = [d for d in BY_NAME["device"].choices if d != "cuda" or engine_device in ("", "cuda")]
        with SignalBlocker(self.device_combo):
            self.device_combo.clear()
            for device in offered:
                self.device_combo.addItem(BY_NAME["device"].choices[device], device)
            self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(settings.device)))
        if settings.device not in offered:
            settings.set("device", "auto")


class DialsSection(QGroupBox):
    """One slider per control the method declares (`models()` "controls"). A dial left on Auto
    (None) is not sent, so the engine estimates it; the slider then shows the last estimate."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(_label("dials"), parent)
        self.state = state
        self.setToolTip(BY_NAME["dials"].desc)
        layout = QVBoxLayout(self)
        self.rows = QWidget(self)  # replaced by one row per control of the method
        self.sliders: dict[str, QSlider] = {}
        self.values: dict[str, QLabel] = {}
        self.estimates: dict[str, float] = {}
        self._estimated_revision: object = None  # the host revision the estimates were made on
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Let the engine estimate the dials from the whole layer, as it does in a run")
        self.auto_button.clicked.connect(self.estimate)
        layout.addWidget(self.auto_button)
        state.models_changed.connect(self._build_rows)
        state.layer_changed.connect(self._forget_estimates)
        state.settings.changed.connect(self._on_setting_changed)
        self._build_rows()

    def controls(self) -> list[dict]:
        return (self.state.current_model() or {}).get("controls", [])

    def _on_setting_changed(self, name: str) -> None:
        if name == "model":
            self._build_rows()
        elif name == "dials":
            self._show_values()

    def _forget_estimates(self) -> None:
        """What was measured on other pixels is not shown as their estimate."""
        if self.estimates and self.state.host.revision() != self._estimated_revision:
            self.estimates = {}
            self._show_values()

    def _build_rows(self) -> None:
        self.rows.deleteLater()
        self.rows = QWidget()
        form = _flat_form(self.rows)
        self.sliders, self.values = {}, {}
        for control in self.controls():
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, DIAL_STEPS)
            slider.valueChanged.connect(lambda step, c=control: self.state.settings.set_dial(
                c["name"], c.get("min", 0) + (c.get("max", 1) - c.get("min", 0)) * step / DIAL_STEPS))
            value = QLabel()
            value.setMinimumWidth(64)
            row = QHBoxLayout()
            row.addWidget(slider)
            row.addWidget(value)
            form.addRow(control.get("label") or control["name"].capitalize(), row)
            self.sliders[control["name"]], self.values[control["name"]] = slider, value
        self.layout().insertWidget(0, self.rows)
        self.setVisible(bool(self.sliders))
        self._show_values()

    def _show_values(self) -> None:
        dials = self.state.settings.dials
        for control in self.controls():
            name, low, high = control["name"], control.get("min", 0), control.get("max", 1)
            value = dials.get(name)
            shown = value if value is not None else self.estimates.get(name, control.get("default"))
            with SignalBlocker(self.sliders[name]):
                if shown is not None:
                    self.sliders[name].setValue(round((shown - low) / ((high - low) or 1) * DIAL_STEPS))
            if value is not None:
                self.values[name].setText(f"{value:.2f}")
            else:
                self.values[name].setText("Auto" if shown is None else f"{shown:.2f} (auto)")

    def estimate(self) -> None:
        """"Auto": the dials go back to the engine's estimate, which is fetched to be shown. It is
        the whole layer's, as in a run (the engine's global step sees the whole layer)."""
        names = [c["name"] for c in self.controls()]
        self.state.settings.set("dials", {**self.state.settings.dials, **dict.fromkeys(names)})
        state, host = self.state, self.state.host
        if state.client is None or not host.has_image():
            return
        try:
            image = host.layer_pixels()
        except Exception as exc:  # the host cannot give this layer: say why
            state.show_error(f"Cannot read the layer: {plain_error(exc)}")
            return
        self._estimated_revision = host.revision()
        self.auto_button.setEnabled(False)
        self.auto_button.setText("Estimating…")
        client = state.client
        state.calls.start(lambda: client.analyse(image, None), self._on_estimate)

    def _on_estimate(self, result, error) -> None:
        self.auto_button.setEnabled(True)
        self.auto_button.setText("Auto")
        if error is not None:
            self.state.show_error(plain_error(error))
            return
        self.estimates = {name: float(v) for name, v in result.items()
                          if name in self.sliders and isinstance(v, (int, float))}
        self._show_values()
        if self.estimates:
            said = ", ".join(f"{name} {value:.2f}" for name, value in self.estimates.items())
            self.state.show_status(f"Estimated {said}.")


class SelectionSection(QGroupBox):
    """What the selection is for; roles the method cannot use are disabled."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(_label("selection_use"), parent)
        self.state = state
        layout = QVBoxLayout(self)
        self.buttons: dict[str, QRadioButton] = {}
        for use, label in BY_NAME["selection_use"].choices.items():
            self.buttons[use] = QRadioButton(label)
            layout.addWidget(self.buttons[use])
        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.reason_label)
        bind(state.settings, "selection_use", self.buttons)
        state.models_changed.connect(self._enable)
        state.settings.changed.connect(self._on_setting_changed)
        self._enable()

    def _on_setting_changed(self, name: str) -> None:
        if name in ("model", "selection_use"):
            self._enable()

    def _enable(self) -> None:
        """Roles the method cannot use are greyed, the role in effect is the one checked (the saved
        choice comes back with a method that can use it), and one line says why."""
        model, adaptation = self.state.current_model(), self.state.adaptation()
        for use, button in self.buttons.items():
            needs = SELECTION_USE_NEEDS.get(use)
            button.setEnabled(needs is None or needs in adaptation)
        with SignalBlocker(*self.buttons.values()):
            self.buttons[selection_use(model, self.state.settings.selection_use)].setChecked(True)
        self.reason_label.setText(self.reason(model))
        self.reason_label.setVisible(bool(self.reason_label.text()))

    def reason(self, model: dict | None) -> str:
        """"CMDSR uses the selection as a sample and MetaF2N as a face; KDSR does not." for the
        roles the chosen method cannot use ("" when it can use them all)."""
        if model is None:
            return ""
        parts = []
        for use, needs in SELECTION_USE_NEEDS.items():
            if needs in model.get("adaptation", []):
                continue
            users = [short_title(m) for m in self.state.models if needs in m.get("adaptation", [])]
            if users:
                parts.append((" and ".join(users), ROLE_WORDS[use], len(users) > 1))
        if not parts:
            return ""
        said = [f"{who} {'use' if many else 'uses'} the selection as {what}" if i == 0 else f"{who} as {what}"
                for i, (who, what, many) in enumerate(parts)]
        return f"{' and '.join(said)}; {short_title(model)} does not."


class FaceRestoreSection(QWidget):
    """"Restore faces", offered after any method: greyed, with one line saying why, while the
    engine has no face restorer (its `health()` "face_restorer"); the saved choice comes back
    once one is installed."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.restore_check = QCheckBox(_label("restore_faces"))
        bind(state.settings, "restore_faces", self.restore_check)
        layout.addWidget(self.restore_check)
        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.reason_label)
        state.models_changed.connect(self._enable)
        state.settings.changed.connect(self._on_setting_changed)
        self._enable()

    def _on_setting_changed(self, name: str) -> None:
        if name == "restore_faces" and not is_deleted(self.restore_check):
            self._enable()

    def _enable(self) -> None:
        installed = restorer_installed(self.state.face_restorer)
        self.restore_check.setEnabled(installed)
        with SignalBlocker(self.restore_check):
            self.restore_check.setChecked(installed and self.state.settings.restore_faces)
        self.reason_label.setText(self.reason())
        self.reason_label.setVisible(bool(self.reason_label.text()))

    def reason(self) -> str:
        """Why the option is greyed ("" when it is offered, or while no engine has answered)."""
        if not self.state.models:
            return ""
        return restorer_missing(self.state.face_restorer)


class EngineSection(QWidget):
    """Where the engine runs: started by the plug-in, or, once "Use a remote engine" is ticked, a
    remote one by URL and token (the fields show only then)."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = state.settings
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.remote_check = QCheckBox("Use a remote engine")
        self.remote_check.setToolTip("An engine on another machine (a GPU server), reached by its URL and token")
        self.remote_check.toggled.connect(
            lambda on: self.settings.set("engine_mode", "remote" if on else "managed"))
        layout.addWidget(self.remote_check)
        self.remote_fields = QWidget()
        form = _flat_form(self.remote_fields)
        self.url_edit = QLineEdit()
        bind(self.settings, "engine_url", self.url_edit)
        form.addRow(_label("engine_url"), self.url_edit)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        bind(self.settings, "engine_token", self.token_edit)
        form.addRow(_label("engine_token"), self.token_edit)
        layout.addWidget(self.remote_fields)
        self.settings.changed.connect(self._on_setting_changed)
        self._show_mode()

    def _on_setting_changed(self, name: str) -> None:
        if name == "engine_mode" and not is_deleted(self.remote_check):
            self._show_mode()

    def _show_mode(self) -> None:
        remote = self.settings.engine_mode == "remote"
        with SignalBlocker(self.remote_check):
            self.remote_check.setChecked(remote)
        self.remote_fields.setVisible(remote)
