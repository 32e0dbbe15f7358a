"""Suite-wide set-up: Qt without a display, the repository on sys.path, one CPU thread."""
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import torch
except ImportError:  # the plug-in side's tests do not need it
    torch = None
if torch is not None:
    torch.set_num_threads(1)
