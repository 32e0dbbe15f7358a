"""Client calls off the GUI thread, and engine errors in plain words.

Client calls that may take a while (model list, analyse, submit, status, result) run on
short-lived threads and report back through a Qt signal, so the GUI thread never waits on the engine.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from protocol.errors import sentence
from ui.qt import QObject, Signal, is_deleted


def plain_error(error: BaseException) -> str:
    """One sentence for the status line: the engine's own message, or what kind of failure it was."""
    message = getattr(error, "message", None) or str(error).strip()
    if isinstance(error, OSError) and not getattr(error, "message", None):
        return f"Cannot reach the engine ({message or type(error).__name__})."
    if not message:
        return f"The engine failed ({type(error).__name__})."
    return sentence(message)


class Calls(QObject):
    """Runs one client call on a thread and hands its outcome back on the GUI thread."""

    finished = Signal(object, object, object)  # callback, result, error

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.finished.connect(self._deliver)

    def start(self, call: Callable[[], object], callback: Callable[[object, BaseException | None], None]):
        def work():
            try:
                result, error = call(), None
            except Exception as exc:  # delivered to the caller, which shows it in plain words
                result, error = None, exc
            self.finished.emit(callback, result, error)

        threading.Thread(target=work, name="blind-upscale-call", daemon=True).start()

    def _deliver(self, callback, result, error) -> None:
        if is_deleted(self):  # the panel went away while the call was out: nobody to tell
            return
        callback(result, error)
