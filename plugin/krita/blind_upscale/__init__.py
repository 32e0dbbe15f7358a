"""Blind Upscale for Krita: the pykrita package named by blind_upscale.desktop.

The packaged plug-in carries the panel (`ui/`), the shared `protocol/` package and the engine
launcher (`plugin/`) inside this folder; they import each other as top-level packages, so this
folder goes on `sys.path` first.
In the source tree they are already importable from the project root.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_HERE, "ui")) and _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from .extension import register  # noqa: E402

register()
