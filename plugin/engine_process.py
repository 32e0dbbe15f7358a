"""Keep a local engine process running: start `<python> -m core serve`, watch it, restart it.

Standard library only, like the client it hands out (`protocol.client.EngineClient`): it runs
inside Krita's embedded Python.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from protocol.client import EngineClient
from protocol.errors import EngineError
from protocol.raw_image import RawImage

ENGINE_JSON = "engine.json"
# A local engine is no network peer: a busy machine may take long over its first model list
# (imports, weights checks), and a crash is seen by the process watch, not by a timeout.
LOCAL_TIMEOUT = 120.0
SETUP_COMMAND = "python3 build.py setup"  # run in the project folder: creates .venv with the engine's packages


@dataclass(frozen=True)
class EngineProblem:
    """Why the local engine cannot start, as the first-run panel shows it."""

    tried: str    # the python that was tried ("" when none was set)
    error: str    # one plain sentence
    root: str     # the project folder, when known ("" otherwise)

    @property
    def command(self) -> str:
        """The exact command that creates the engine's venv."""
        return f'cd "{self.root}" && {SETUP_COMMAND}' if self.root else f"cd <project folder> && {SETUP_COMMAND}"


def venv_python(folder: str | os.PathLike) -> Path | None:
    """The engine's python in `folder`: a project folder (its `.venv`), a venv, or the
    interpreter itself; None when there is none."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    layouts = ("Scripts/python.exe", "bin/python") if sys.platform == "win32" else ("bin/python", "Scripts/python.exe")
    for venv in (folder / ".venv", folder):
        for layout in layouts:
            if (venv / layout).is_file():
                return venv / layout
    return None


def project_python(root: str | os.PathLike) -> Path:
    """The project's venv python, or where it will be once `build.py setup` has made it."""
    root = Path(root)
    return venv_python(root) or root / ".venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def project_root(python: str | os.PathLike) -> str:
    """The project folder of a `.venv` python (`<root>/.venv/bin/python`), or ""."""
    parts = Path(python).parts
    return str(Path(*parts[:-3])) if len(parts) > 3 and parts[-3] == ".venv" else ""


def engine_python(configured: str | None, package_dir: Path) -> tuple[str, str | None] | None:
    """Which python runs the engine, and from which project folder.

    The user's setting wins; else the `engine.json` that `build.py package` wrote into the
    plug-in (the venv the zip was built from); else None, and the panel must ask.
    Never `sys.executable`: inside Krita that is not an interpreter with torch.
    """
    info = {}
    path = Path(package_dir) / ENGINE_JSON
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
    root = info.get("root") or None
    if configured:
        return configured, root
    python = info.get("python")
    if python and Path(python).is_file():
        return python, root
    return None


class EngineProcess:
    """Starts `<python> -m core serve` on 127.0.0.1 with a fresh token, and watches it.

    The engine writes its URL and token into a port file that only this process reads. A crash
    or kill is noticed on the next request, which restarts the engine.
    """

    def __init__(self, python: str, root: str | None = None, start_timeout: float = 120.0,
                 log_path: str | None = None, threads: int | None = None):
        self.python = python
        self.threads = threads  # the engine's --threads (None: all physical cores)
        self.root = root
        self.start_timeout = start_timeout
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.client: EngineClient | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def ensure_running(self) -> EngineClient:
        if self.running() and self.client is not None:
            return self.client
        self.stop()
        return self.start()

    def start(self) -> EngineClient:
        if not Path(self.python).is_file():
            raise EngineError(f"The engine's python {self.python} does not exist; "
                              "choose the project folder in the Blind Upscale panel.")
        self._tmp = tempfile.TemporaryDirectory(prefix="blind-upscale-")
        port_file = Path(self._tmp.name) / "engine.port"
        log = self.log_path or str(Path(self._tmp.name) / "engine.log")
        # this run's log only: the last lines explain a failed start; held open for the engine's life
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ)
        if self.root:
            env["PYTHONPATH"] = self.root + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [self.python, "-m", "core", "serve", "--port", "0", "--port-file", str(port_file),
               "--parent-pid", str(os.getpid())] + (["--threads", str(self.threads)] if self.threads else [])
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.root or None, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        except OSError as exc:
            self._cleanup()
            raise EngineError(f"Could not start the engine with {self.python} ({exc}).") from None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                code = self.proc.returncode
                self._cleanup()
                raise EngineError(f"The engine exited while starting (code {code}): {tail}")
            if port_file.is_file():
                try:
                    info = json.loads(port_file.read_text(encoding="utf-8"))
                    client = EngineClient(info["url"], info["token"], timeout=LOCAL_TIMEOUT)
                    client.health()
                    self.client = client
                    return client
                except (ValueError, KeyError, EngineError):
                    pass
            time.sleep(0.1)
        self.stop()
        raise EngineError(f"The engine did not start within {self.start_timeout:.0f} s.")

    def log_tail(self, lines: int = 3) -> str:
        if self._log is None:
            return ""
        try:
            text = Path(self._log.name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line for line in text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.kill()

    def kill(self) -> None:
        """End the engine at once: a hung one ignores SIGTERM (a stopped one does not even see it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # it ends; on a busy machine, later
                self.proc.wait(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        self.client = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class SupervisedClient:
    """The client interface over an `EngineProcess`.

    New work (health, models, analyse, submit) starts the engine when it is not running, so the
    request after a crash brings up a fresh one. Questions about a job (status, cancel, result)
    never restart it: the job died with the old engine, and the answer is a plain report of that.

    A hung engine (alive but silent: stopped, or stuck in a loop) is found by its health check,
    which waits the client's `answer_timeout` at most: after a failed request, and before new work.
    It is killed; a job it held is reported failed in one sentence, new work gets a fresh engine.
    """

    def __init__(self, process: EngineProcess):
        self.process = process
        self._lock = threading.Lock()
        self._ended_hung: str | None = None  # why the last engine was killed, while none runs

    def _client(self, start: bool) -> EngineClient:
        with self._lock:
            if start:
                client = self.process.client
                if client is not None and self.process.running() and not self._answers(client):
                    self._end_hung(client)
                client = self.process.ensure_running()
                self._ended_hung = None
                return client
            if not self.process.running() or self.process.client is None:
                raise self._crash_error()
            return self.process.client

    def _answers(self, client: EngineClient) -> bool:
        """Whether the engine answers its health check; a refused connection is retried for a
        moment, as the process's exit is seen a moment after it."""
        deadline = time.monotonic() + 1.0
        while self.process.running():
            try:
                client.health()
                return True
            except EngineError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        return False

    def _end_hung(self, client: EngineClient) -> None:
        self.process.kill()
        self._ended_hung = (f"The engine stopped answering (no reply within {client.answer_timeout:.0f} s) "
                            "and was ended; your image is unchanged, and a new engine starts on the "
                            "next request.")

    def _crash_error(self) -> EngineError:
        if self._ended_hung:
            return EngineError(self._ended_hung)
        code = self.process.exit_code()
        if code is None:
            return EngineError("The engine is not running; it will start on the next request.")
        return EngineError(f"The engine stopped unexpectedly (exit code {code}); "
                           "it will restart on the next request.")

    def _do(self, call: Callable[[EngineClient], object], start: bool = True):
        client = self._client(start)
        try:
            return call(client)
        except EngineError:
            if self._answers(client):
                raise  # the engine is well: the error is this request's own
            with self._lock:
                if self.process.running() and self.process.client is client:
                    self._end_hung(client)
            raise self._crash_error() from None

    def health(self) -> dict:
        return self._do(lambda c: c.health())

    def models(self) -> list[dict]:
        return self._do(lambda c: c.models())

    def analyse(self, image: RawImage, region=None) -> dict:
        return self._do(lambda c: c.analyse(image, region))

    def submit(self, image: RawImage, request: dict) -> str:
        return self._do(lambda c: c.submit(image, request))

    def status(self, job_id: str) -> dict:
        return self._do(lambda c: c.status(job_id), start=False)

    def cancel(self, job_id: str) -> None:
        self._do(lambda c: c.cancel(job_id), start=False)

    def result(self, job_id: str) -> RawImage:
        return self._do(lambda c: c.result(job_id), start=False)

    def close(self) -> None:
        with self._lock:
            self.process.stop()
