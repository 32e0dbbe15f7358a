"""The shared stdlib package: what it may import, the error sentence, the atomic write."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.errors import sentence
from protocol.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]


def test_sentence_capitalises_and_ends_with_a_full_stop():
    assert sentence(" unknown model 'x' ") == "Unknown model 'x'."
    assert sentence("Done!") == "Done!" and sentence("wait…") == "Wait…"
    assert sentence("  ") == ""


def test_protocol_needs_only_the_standard_library():
    script = ("import sys\n"
              "import protocol.client, protocol.errors, protocol.files, protocol.host, protocol.raw_image\n"
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


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "settings.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and target.read_text() == "old"
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_private_atomic_write_is_never_readable_by_others(tmp_path):
    with atomic_write(tmp_path / "engine.port", private=True) as tmp:
        assert tmp.stat().st_mode & 0o077 == 0  # before the secret is written
        tmp.write_text("token")
    assert (tmp_path / "engine.port").stat().st_mode & 0o777 == 0o600
