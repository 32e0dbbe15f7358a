"""Client calls off the GUI thread, and engine errors in plain words.

Client calls that may take a while (model list, analyse, submit, status, result) run on
short-lived threads and report back through a Qt signal, so the GUI thread never waits on the engine.
The threads touch no panel object: a panel may be closed while its calls are out.
"""
from __future__ import annotations

import atexit
import itertools
import threading
import weakref
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


class _Relay(QObject):
    """Carries outcomes from the worker threads to the GUI thread, for the application's life.

    Workers never emit on a panel's QObject: one emitting while the GUI thread destroys it (the
    panel closed with a call out) crashed the whole host. The relay is never parented, so nothing
    deletes it; a worker knows only its ticket, and the callbacks with their owners stay on the GUI
    thread, which alone drops them (the last reference to a Qt object must not go on a worker).
    """

    finished = Signal(object, object, object)  # ticket, result, error

    def __init__(self):
        super().__init__()
        self.waiting: dict[int, tuple[weakref.ref, Callable[[object, BaseException | None], None]]] = {}
        self.tickets = itertools.count()
        self.finished.connect(self._deliver)

    def _deliver(self, ticket, result, error) -> None:
        owner, callback = self.waiting.pop(ticket)
        calls = owner()
        if calls is not None and not is_deleted(calls):  # else the panel went away: nobody to tell
            callback(result, error)


_relay: _Relay | None = None
# Held while a worker emits, and taken for good at exit: no worker posts into a Qt being torn down.
_emitting = threading.Lock()
atexit.register(_emitting.acquire)


def _work(relay: _Relay, ticket: int, call: Callable[[], object]) -> None:
    """A worker thread's whole job: the call, then its outcome by ticket through the relay."""
    try:
        result, error = call(), None
    except Exception as exc:  # delivered to the caller, which shows it in plain words
        result, error = None, exc
    with _emitting:
        relay.finished.emit(ticket, result, error)


class Calls(QObject):
    """Runs client calls on threads and hands their outcomes back on the GUI thread while this
    object (a child of the panel's state) lives; once Qt has deleted it, outcomes are dropped."""

    def __init__(self, parent: QObject):
        super().__init__(parent)
        global _relay
        if _relay is None:
            _relay = _Relay()  # the first Calls is made on the GUI thread, so the relay lives there

    def start(self, call: Callable[[], object], callback: Callable[[object, BaseException | None], None]):
        ticket = next(_relay.tickets)
        _relay.waiting[ticket] = (weakref.ref(self), callback)
        threading.Thread(target=_work, args=(_relay, ticket, call), name="blind-upscale-call", daemon=True).start()
