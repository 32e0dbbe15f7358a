"""bench/adaptation.py scores a training run's own weights file as the run left it."""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.archs import cmdsr, kdsr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from adaptation import load_file  # noqa: E402


def test_run_weights_load_unchanged(tmp_path):
    """No official-checkpoint mapping: for CMDSR it would rescale every SR-net weight."""
    for arch_id, module in (("cmdsr", cmdsr.ARCH.build("lite")), ("kdsr", kdsr.ARCH.build("lite"))):
        path = tmp_path / f"{arch_id}.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
        loaded_arch, loaded = load_file(path)
        assert loaded_arch == arch_id
        state = loaded.state_dict()
        assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())
