"""Errors as the hosts and the panel show them: one plain sentence."""
from __future__ import annotations


class EngineError(Exception):
    """Anything that went wrong between the host and the engine, as one plain sentence."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class JobCancelled(EngineError):
    """The user stopped a job; nothing was changed."""


def sentence(text: str) -> str:
    """`text` as a sentence: capital first letter, final full stop (empty stays empty)."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else text + "."
