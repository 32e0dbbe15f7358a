"""The panel's settings sections: method, degradation dials, selection role, engine.

Each is a widget bound to the settings (ui/bind.py) and to the shared `PanelState`; what a
section shows for a method comes from that method's `models()` entry, never from code per method.
"""
from __future__ import annotations

import os

from ui.bind import SignalBlocker, bind, choice_combo
from ui.calls import plain_error
from ui.qt import (QCheckBox, QComboBox, QDesktopServices, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                   QLineEdit, QPushButton, QRadioButton, QSlider, QStandardItemModel, Qt, QUrl, QVBoxLayout,
                   QWidget)
from ui.request import SELECTION_USE_NEEDS, config_name, present_config, usable_configs
from ui.settings import BY_NAME, TILE_SIZES
from ui.state import PanelState

DIAL_STEPS = 100


def _label(name: str) -> str:
    return BY_NAME[name].label


USER_PREFIX = "user:"
"""Model ids of the user's own models (files in the models folder, run through spandrel)."""
RUNNABLE = ("bundled", "user")
"""Weights statuses a model can run with ("missing" and a user file's "unusable" cannot)."""


def model_tooltip(model: dict) -> str:
    lines = [model.get("summary", "")]
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


class MethodSection(QWidget):
    """Method, variant, scale, device, tile size, self-ensemble."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        settings = state.settings
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(18)
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
        self.model_summary = QLabel()
        self.model_summary.setWordWrap(True)
        form.addRow(self.model_summary)
        self.config_combo = QComboBox()
        self.config_combo.currentIndexChanged.connect(self._on_config_picked)
        self.config_label = QLabel(_label("configs"))
        form.addRow(self.config_label, self.config_combo)
        self.scale_combo = QComboBox()
        bind(settings, "scale", self.scale_combo)
        form.addRow(_label("scale"), self.scale_combo)
        self.device_combo = choice_combo("device")
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
        state.models_changed.connect(self._fill_models)
        settings.changed.connect(self._on_setting_changed)
        self._fill_models()

    def _on_setting_changed(self, name: str) -> None:
        if name == "model":
            self._show_model()
        elif name == "tile" and self.tile_combo.findData(self.state.settings.tile) < 0:
            tile = self.state.settings.tile
            with SignalBlocker(self.tile_combo):
                self.tile_combo.addItem(f"{tile} px", tile)
                self.tile_combo.setCurrentIndex(self.tile_combo.count() - 1)

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
                line = f"{model.get('title') or model['id']}: {model.get('summary', '')}".rstrip(": ")
                weights = model.get("weights")
                note = {"missing": " (no weights)", "unusable": " (unusable)"}.get(weights, "")
                combo.addItem(line + note, model["id"])
                items.item(combo.count() - 1).setToolTip(model_tooltip(model))
                items.item(combo.count() - 1).setEnabled(weights in RUNNABLE)
            wanted = combo.findData(self.state.settings.model)
            if wanted < 0 or not items.item(wanted).isEnabled():
                wanted = next((i for i in range(combo.count())
                               if combo.itemData(i) and items.item(i).isEnabled()), -1)
            combo.setCurrentIndex(wanted)
        if wanted >= 0:
            self.state.settings.set("model", combo.itemData(wanted))
        self._show_model()

    def refresh_models(self) -> None:
        """Ask the engine for its models again: files added to the models folder appear."""
        client = self.state.client
        if client is None:
            return
        self.state.calls.start(client.models, lambda models, error: self._on_refreshed(client, models, error))

    def _on_refreshed(self, client, models, error) -> None:
        if client is not self.state.client:
            return
        if error is not None:
            self.state.show_error(plain_error(error))
            return
        self.state.set_models(models, self.state.device_name)
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
            for config in usable:
                params = config.get("params") or 0
                size = f", {params / 1e6:.1f} M parameters" if params else ""
                self.config_combo.addItem(f"{config_name(config)} ({config['weights']}{size})", config_name(config))
            chosen = present_config(model, settings.configs.get(settings.model))
            self.config_combo.setCurrentIndex(max(0, self.config_combo.findData(chosen)) if usable else -1)
        if model and self.scale_combo.currentData() != settings.scale:
            settings.set("scale", self.scale_combo.currentData())
        self.model_summary.setText(model.get("summary", "") if model else "")
        self.config_combo.setVisible(len(usable) > 1)
        self.config_label.setVisible(len(usable) > 1)

    def _on_config_picked(self, index: int) -> None:
        if index >= 0:
            settings = self.state.settings
            settings.set("configs", {**settings.configs, settings.model: self.config_combo.itemData(index)})


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
        form = QFormLayout(self.rows)
        form.setContentsMargins(0, 0, 0, 0)
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
        bind(state.settings, "selection_use", self.buttons)
        state.models_changed.connect(self._enable)
        state.settings.changed.connect(self._on_setting_changed)
        self._enable()

    def _on_setting_changed(self, name: str) -> None:
        if name == "model":
            self._enable()

    def _enable(self) -> None:
        adaptation = self.state.adaptation()
        for use, button in self.buttons.items():
            needs = SELECTION_USE_NEEDS.get(use)
            button.setEnabled(needs is None or needs in adaptation)


class EngineSection(QGroupBox):
    """Where the engine runs: started by the plug-in, or a remote one by URL and token."""

    def __init__(self, state: PanelState, parent: QWidget | None = None):
        super().__init__(_label("engine_mode"), parent)
        self.settings = state.settings
        form = QFormLayout(self)
        self.mode_combo = choice_combo("engine_mode")
        bind(self.settings, "engine_mode", self.mode_combo)
        form.addRow(_label("engine_mode"), self.mode_combo)
        self.url_edit = QLineEdit()
        bind(self.settings, "engine_url", self.url_edit)
        form.addRow(_label("engine_url"), self.url_edit)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        bind(self.settings, "engine_token", self.token_edit)
        form.addRow(_label("engine_token"), self.token_edit)
        self.settings.changed.connect(self._on_setting_changed)
        self._enable()

    def _on_setting_changed(self, name: str) -> None:
        if name == "engine_mode":
            self._enable()

    def _enable(self) -> None:
        remote = self.settings.engine_mode == "remote"
        self.url_edit.setEnabled(remote)
        self.token_edit.setEnabled(remote)
