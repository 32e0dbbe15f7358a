"""The shared stdlib package: what it may import, and the error sentence."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from protocol.errors import sentence

ROOT = Path(__file__).resolve().parents[1]


def test_sentence_capitalises_and_ends_with_a_full_stop():
    assert sentence(" unknown model 'x' ") == "Unknown model 'x'."
    assert sentence("Done!") == "Done!" and sentence("wait…") == "Wait…"
    assert sentence("  ") == ""


def test_protocol_needs_only_the_standard_library():
    script = ("import sys\n"
              "import protocol.client, protocol.errors, protocol.host, protocol.raw_image\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
              "{'numpy', 'torch', 'PyQt6', 'PyQt5', 'core', 'ui', 'plugin'})\n"
              "assert not heavy, heavy\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_core_never_imports_the_host_side():
    pattern = re.compile(r"^\s*(from|import)\s+(plugin|ui)\b", re.MULTILINE)
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "core").rglob("*.py")
                 if pattern.search(path.read_text(encoding="utf-8"))]
    assert not offenders
