"""The Krita extension: the `blind_upscale` action, the docker with the panel, the engine.

One engine serves every window: a process this plug-in starts from the project's venv (managed)
or a remote engine (URL + token), as the panel's settings say. Triggering the action runs the
panel of the active window with its current settings, without any dialog.
"""
from __future__ import annotations

import os
from pathlib import Path

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from plugin.engine_process import (EngineProblem, EngineProcess, SupervisedClient, engine_python, project_python,
                                   project_root, venv_python)
from protocol.client import EngineClient
from ui.panel import Panel
from ui.settings import Settings

from .host import KritaHost

ACTION_ID = "blind_upscale"
DOCKER_ID = "blind_upscale_docker"
PACKAGE_DIR = Path(__file__).resolve().parent
PYTHON_SETTING = ("blind_upscale", "engine_python")


class EngineConnection:
    """Builds the client the panels use from the settings, and owns the managed engine process.
    When the local engine cannot start, `problem` says what was tried and what went wrong."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings
        self.client = None
        self.problem: EngineProblem | None = None

    def configured_python(self) -> str | None:
        return os.environ.get("BLIND_UPSCALE_PYTHON") or self.app.readSetting(*PYTHON_SETTING, "") or None

    def connect(self):
        """A client for the current settings, or None (then `problem` says why)."""
        self.close()
        self.problem = None
        if self.settings.engine_mode == "remote":
            self.client = EngineClient(self.settings.engine_url, self.settings.engine_token)
            return self.client
        found = engine_python(self.configured_python(), PACKAGE_DIR)
        if found is None:
            self.problem = EngineProblem("", "The engine's Python is not set: choose the Blind Upscale project "
                                             "folder, or use a remote engine (Advanced).", "")
            return None
        python, root = found
        root = root or project_root(python)
        if not Path(python).is_file():
            self.problem = EngineProblem(python, "That file does not exist: the project's .venv is not made yet.",
                                         root or "")
            return None
        log = Path(self.app.getAppDataLocation()) / "blind_upscale_engine.log"
        threads = self.app.readSetting("blind_upscale", "engine_threads", "")  # empty: all physical cores
        self.client = SupervisedClient(EngineProcess(python, root, log_path=str(log),
                                                     threads=int(threads) if threads.isdigit() else None))
        return self.client

    def failed(self, error: str) -> None:
        """The local engine did not answer: when its process is gone (a venv without its
        packages), that is the problem to show; a running engine that was slow is not."""
        if isinstance(self.client, SupervisedClient) and not self.client.process.running():
            python = self.client.process.python
            self.problem = EngineProblem(python, error, self.client.process.root or project_root(python))

    def use_folder(self, folder: str) -> None:
        """The project folder the user chose: its .venv python becomes the engine's, even before the
        venv is made (Retry then starts it). A folder that is no project folder changes nothing."""
        if venv_python(folder) is None and not (Path(folder) / "build.py").is_file():
            self.problem = EngineProblem(str(Path(folder) / ".venv"), f"{folder} is not the Blind Upscale project "
                                         "folder: it has neither build.py nor a .venv.", "")
            return
        self.app.writeSetting(*PYTHON_SETTING, str(project_python(folder)))
        self.problem = None

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
        self.panel.engine_unavailable.connect(plugin.engine_failed)
        self.panel.engine_folder_chosen.connect(plugin.use_folder)
        self.panel.engine_retry.connect(plugin.reconnect)
        plugin.show_problem(self.panel)
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
        """Build the engine client again (settings changed, or Retry) and hand it to every panel."""
        client = self.connection.connect()
        for docker in BlindUpscaleDocker.instances:
            docker.panel.set_client(client)
            self.show_problem(docker.panel)

    def show_problem(self, panel: Panel) -> None:
        problem = self.connection.problem
        if problem is not None:
            panel.show_engine_problem(problem.tried, problem.error, problem.command, problem.root)

    def engine_failed(self, error: str) -> None:
        """A panel's engine did not answer: for the local engine, the first-run section shows it."""
        if self.settings.engine_mode != "managed" or self.connection.problem is not None:
            return
        self.connection.failed(error)
        for docker in BlindUpscaleDocker.instances:
            self.show_problem(docker.panel)

    def use_folder(self, folder: str) -> None:
        self.connection.use_folder(folder)
        if self.connection.problem is not None:
            for docker in BlindUpscaleDocker.instances:
                self.show_problem(docker.panel)
            return
        self.reconnect()

    def active_panel(self) -> Panel | None:
        window = self.app.activeWindow()
        qwindow = window.qwindow() if window is not None else None
        dockers = BlindUpscaleDocker.instances
        for docker in dockers:
            if qwindow is not None and docker.window() is qwindow:
                return docker.panel
        return dockers[0].panel if dockers else None

    def upscale(self) -> None:
        """The action: run the panel with its settings, without a dialog. While the engine cannot
        start, pressing it is a Retry, and the panel says what is wrong and what to do."""
        panel = self.active_panel()
        if panel is None:
            return
        if panel.client is None or self.connection.problem is not None:
            self.reconnect()
            if panel.client is None:
                return
        elif panel.current_model() is None:  # the last listing may have failed: ask again
            panel.list_models()
        if panel.current_model() is None:  # the model list is on its way: run once it is here
            run_when_ready(panel)
            return
        panel.run()


def run_when_ready(panel: Panel) -> None:
    """Run `panel` once its engine lists the models; forget it if the engine fails instead."""
    def forget(*_):
        panel.models_loaded.disconnect(ready)
        panel.engine_unavailable.disconnect(forget)

    def ready():
        forget()
        panel.run()

    panel.models_loaded.connect(ready)
    panel.engine_unavailable.connect(forget)


def register() -> None:
    app = Krita.instance()
    app.addExtension(BlindUpscaleExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight,
                                               BlindUpscaleDocker))
