"""Suite-wide set-up: Qt without a display, the repository on sys.path, one CPU thread."""
import os
import sys
from pathlib import Path

import pytest

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
os.environ.setdefault("BLIND_UPSCALE_THREADS", "1")  # what the engine sets for each job


def gradient_pixels(h: int, w: int, c: int):
    """H x W x C float32 in 0..1: a smooth gradient plus texture, so lossy codecs and models
    have something real to work on."""
    import numpy as np

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([(x / w + k * 0.2 + 0.1 * np.sin(y / 3 + k)) % 1.0 for k in range(c)], axis=2)
    return np.clip(base, 0, 1).astype(np.float32)


def wait_for_job(client, job_id, seconds: float = 30.0) -> dict:
    """Polls any engine client (HTTP, in-process, the job queue) until the job leaves
    queued/running; a job still running after `seconds` fails the test."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        status = client.status(job_id)
        if status["state"] not in ("queued", "running"):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {status['state']} after {seconds} s")
        time.sleep(0.02)


def community_checkpoint(path: Path) -> Path:
    """A community checkpoint (spandrel's Compact x4, random weights) saved as safetensors at `path`."""
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), path)
    return path


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty models folder of the test's own, as $BLIND_UPSCALE_MODELS."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder))
    return folder
