"""The first-run section: what to do when the local engine cannot start.

Shown by the host (through `Panel.show_engine_problem`) when the engine's Python is missing or
broken: the path that was tried, the error, the command that creates the venv, a "Choose the
project folder…" button and "Retry". The host decides what a chosen folder means and what Retry
does; this widget only asks and reports.
"""
from __future__ import annotations

import os

from ui.qt import (QFileDialog, QFont, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, Qt,
                   QVBoxLayout, QWidget, Signal)


def wrapping_label(selectable: bool = False) -> QLabel:
    """A label that wraps inside a narrow panel, even a long path without spaces."""
    label = QLabel()
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class EngineSetupSection(QGroupBox):
    folder_chosen = Signal(str)  # the folder the user picked as the project folder
    retry = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("The engine could not start", parent)
        self.start_folder = ""
        layout = QVBoxLayout(self)
        self.tried_label = wrapping_label(selectable=True)
        self.error_label = wrapping_label(selectable=True)
        self.error_label.setStyleSheet("color: #d04040;")
        self.command_intro = wrapping_label()
        self.command_intro.setText("To create the engine's Python, run in a terminal:")
        self.command_label = wrapping_label(selectable=True)
        self.command_label.setFont(QFont("monospace"))
        for label in (self.tried_label, self.error_label, self.command_intro, self.command_label):
            layout.addWidget(label)
        row = QHBoxLayout()
        self.choose_button = QPushButton("Choose the project folder…")
        self.choose_button.setToolTip("The Blind Upscale folder that holds build.py and .venv")
        self.choose_button.clicked.connect(self.choose_folder)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self.retry)
        row.addWidget(self.choose_button, 1)
        row.addWidget(self.retry_button)
        layout.addLayout(row)
        self.setVisible(False)

    def show_problem(self, tried: str, error: str, command: str, start_folder: str = "") -> None:
        self.tried_label.setText(f"Tried: {tried}" if tried else "No engine Python is set yet.")
        self.error_label.setText(error)
        self.command_label.setText(command)
        self.start_folder = start_folder
        self.setVisible(True)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Blind Upscale: the project folder (with build.py and .venv)",
            self.start_folder or os.path.expanduser("~"))
        if folder:
            self.folder_chosen.emit(folder)
