"""The Krita extension: the `blind_upscale` action, the docker with the panel, the engine.

One engine serves every window: a process this plug-in starts from the project's venv (managed)
or a remote engine (URL + token), as the panel's settings say. Triggering the action runs the
panel of the active window with its current settings, without any dialog.
"""
from __future__ import annotations

import os
from pathlib import Path

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from plugin.engine_process import EngineProcess, SupervisedClient, engine_python
from protocol.client import EngineClient
from ui.panel import Panel
from ui.qt import QFileDialog
from ui.settings import Settings

from .host import KritaHost

ACTION_ID = "blind_upscale"
DOCKER_ID = "blind_upscale_docker"
PACKAGE_DIR = Path(__file__).resolve().parent
PYTHON_SETTING = ("blind_upscale", "engine_python")


class EngineConnection:
    """Builds the client the panels use from the settings, and owns the managed engine process."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings
        self.client = None
        self.problem = ""

    def configured_python(self) -> str | None:
        return os.environ.get("BLIND_UPSCALE_PYTHON") or self.app.readSetting(*PYTHON_SETTING, "") or None

    def connect(self):
        """A client for the current settings, or None (then `problem` says why)."""
        self.close()
        self.problem = ""
        if self.settings.engine_mode == "remote":
            self.client = EngineClient(self.settings.engine_url, self.settings.engine_token)
            return self.client
        found = engine_python(self.configured_python(), PACKAGE_DIR)
        if found is None:
            self.problem = ("The engine's python is not set: trigger Blind Upscale to choose the "
                            "project's .venv/bin/python, or pick a remote engine.")
            return None
        python, root = found
        log = Path(self.app.getAppDataLocation()) / "blind_upscale_engine.log"
        threads = self.app.readSetting("blind_upscale", "engine_threads", "")  # empty: all physical cores
        self.client = SupervisedClient(EngineProcess(python, root, log_path=str(log),
                                                     threads=int(threads) if threads.isdigit() else None))
        return self.client

    def ask_python(self, parent) -> bool:
        """The panel's way to learn where the engine lives when no setting or engine.json says."""
        path, _ = QFileDialog.getOpenFileName(parent, "Blind Upscale: the engine's python (.venv/bin/python)")
        if not path:
            return False
        self.app.writeSetting(*PYTHON_SETTING, path)
        return True

    def close(self) -> None:
        if isinstance(self.client, SupervisedClient):
            self.client.close()
        self.client = None


class BlindUpscaleDocker(DockWidget):
    """The panel of ui/ in a Krita docker; one per main window."""

    instances: list[BlindUpscaleDocker] = []

    def __init__(self):
        super().__init__()
        self.setWindowTitle("Blind Upscale")
        plugin = BlindUpscaleExtension.instance
        self.panel = Panel(KritaHost(), plugin.connection.client, plugin.settings)
        self.panel.engine_settings_changed.connect(plugin.reconnect)
        if plugin.connection.problem:
            self.panel.show_error(plugin.connection.problem)
        self.setWidget(self.panel)
        BlindUpscaleDocker.instances.append(self)
        self.destroyed.connect(lambda *_: self._forget())

    def _forget(self) -> None:
        if self in BlindUpscaleDocker.instances:
            BlindUpscaleDocker.instances.remove(self)

    def canvasChanged(self, canvas) -> None:
        """Required by Krita; the panel polls the host for layer and selection changes itself."""


class BlindUpscaleExtension(Extension):
    instance: BlindUpscaleExtension | None = None

    def __init__(self, parent):
        super().__init__(parent)
        BlindUpscaleExtension.instance = self
        self.app = Krita.instance()
        self.settings = Settings()
        self.connection = EngineConnection(self.app, self.settings)
        self.connection.connect()

    def setup(self) -> None:
        notifier = self.app.notifier()
        notifier.setActive(True)
        notifier.applicationClosing.connect(self.connection.close)

    def createActions(self, window) -> None:
        action = window.createAction(ACTION_ID, "Blind Upscale", "tools/scripts")
        action.setToolTip("Super-resolve the active layer (or the selection) with the Blind Upscale docker's settings")
        action.triggered.connect(self.upscale)

    def reconnect(self) -> None:
        client = self.connection.connect()
        for docker in BlindUpscaleDocker.instances:
            docker.panel.set_client(client)
            if self.connection.problem:
                docker.panel.show_error(self.connection.problem)

    def active_panel(self) -> Panel | None:
        window = self.app.activeWindow()
        qwindow = window.qwindow() if window is not None else None
        dockers = BlindUpscaleDocker.instances
        for docker in dockers:
            if qwindow is not None and docker.window() is qwindow:
                return docker.panel
        return dockers[0].panel if dockers else None

    def upscale(self) -> None:
        """The action: run the panel with its settings; ask for the engine only if nothing says where it is."""
        panel = self.active_panel()
        if panel is None:
            return
        if panel.client is None:
            if self.settings.engine_mode == "managed" and not self.connection.ask_python(panel):
                return
            self.reconnect()
            if panel.client is None:
                return
        if panel.current_model() is None:  # the model list is still on its way: run once it is here
            def run_when_ready():
                panel.models_loaded.disconnect(run_when_ready)
                panel.run()
            panel.models_loaded.connect(run_when_ready)
            return
        panel.run()


def register() -> None:
    app = Krita.instance()
    app.addExtension(BlindUpscaleExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight,
                                               BlindUpscaleDocker))
