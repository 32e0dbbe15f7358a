"""bench/dials.py runs its three checks through the engine on an mmrealsr weights file (here an
untrained one: the plumbing, not the verdicts, is what a test can check)."""
import sys
from pathlib import Path

import numpy as np

from conftest import gradient_pixels
from core import weights
from core.archs import mmrealsr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import dials  # noqa: E402


def test_dial_checks_run_through_the_engine_and_print_every_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    weights.save_state_dict(mmrealsr.ARCH.build("lite").state_dict(), tmp_path / "mmrealsr_lite.safetensors")
    images = [gradient_pixels(64, 64, 3), gradient_pixels(64, 64, 3)[::-1].copy()]
    result = dials.measure(images)
    assert set(result["estimates"]["blur"]) == set(dials.BLUR_LEVELS)
    assert all(0 <= s["blur"] <= 1 and 0 <= s["noise"] <= 1 for s in result["estimates"]["noise"].values())
    assert all(np.isfinite(v) and v > 0 for axis in result["dials"].values() for v in axis.values())
    table = dials.tables(result, len(images))
    for check in ("blur score rises with blur", "noise dial up: smoother output", "a clean image scores low"):
        assert check in table


def test_high_frequency_energy_falls_with_smoothing():
    rng = np.random.default_rng(0)
    noisy = rng.random((32, 32, 3)).astype(np.float32)
    smooth = np.full((32, 32, 3), 0.5, np.float32)
    assert dials.high_frequency(noisy) > dials.high_frequency(smooth) == 0.0
