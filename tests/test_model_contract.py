"""The contract every registered model keeps, checked for each entry of `METHODS`: it describes
itself, names its architecture, and runs one tile end to end on every backend it offers, with
the same result on torch and onnxruntime. A model offering ONNX whose architecture declares no
graphs, or whose graphs do not export, cannot pass.

Networks carry freshly initialised weights of their smallest configuration, saved into a
temporary models folder: this checks the plumbing, never image quality."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import weights
from core.archs import get_arch, param_count
from core.archs.spec import MIN_TILE, SizeRequirements
from core.errors import WeightsError
from core.engine import UpscaleRequest
from core.methods import METHODS
from core.runtimes import OnnxGraph

TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty bundle and an empty user models folder."""
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path / "bundle")
    folder = tmp_path / "models"
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder))
    return folder


def smallest_config(cls) -> str:
    return min((c.name for c in cls.configs()), key=lambda name: param_count(cls.arch, name))


def tile_shape(size: SizeRequirements) -> tuple[int, int]:
    """The smallest tile the arch accepts, made non-square so swapped axes show."""
    def round_up(n):
        return -(-n // size.multiple_of) * size.multiple_of
    return round_up(size.minimum), round_up(size.minimum + 5)


def run_one_tile(cls, config: str, backend: str, shape: tuple[int, int]) -> np.ndarray:
    rgb = np.random.default_rng(0).random((48, 56, 3), dtype=np.float32)
    height, width = shape
    tile = np.ascontiguousarray(rgb[:height, :width].transpose(2, 0, 1)[None])
    request = UpscaleRequest(model=cls.id, config=config, backend=backend, faces="none")
    upscaler = cls(config, "cpu", backend)
    estimate = upscaler.estimate_degradation(rgb)
    assert estimate is None or (set(estimate) == {"blur", "noise"}
                                and all(0 <= v <= 1 for v in estimate.values()))
    context = upscaler.prepare(rgb, request, lambda fraction, stage: None)
    out = upscaler.run_tile(tile, context)
    scale = upscaler.tile_scale(request)
    assert out.shape == (1, 3, height * scale, width * scale)
    assert np.isfinite(out).all()
    return out


@pytest.mark.parametrize("model_id", sorted(METHODS))
def test_model_runs_one_tile_on_every_backend(model_id, models_dir):
    cls = METHODS[model_id]
    spec = cls.spec()
    assert spec.id == model_id and spec.configs and cls.backends
    if cls.arch is None:  # no network and no weights (bicubic)
        assert cls.backends == ("torch",)
        config, shape = spec.configs[0].name, (MIN_TILE, MIN_TILE + 5)
    else:
        arch = get_arch(cls.arch)
        assert ("onnx" in cls.backends) == bool(arch.graphs), (
            f"{model_id} offers {cls.backends}; its arch declares {len(arch.graphs)} graphs")
        config = smallest_config(cls)
        if spec.config(config).weights == "missing":
            with pytest.raises(WeightsError) as missing:
                cls(config, "cpu", "torch")
            assert str(missing.value) == cls.missing_weights_message(config)
        torch.manual_seed(0)
        weights.save_state_dict(arch.build(config).state_dict(),
                                models_dir / weights.canonical_name(model_id, config))
        shape = tile_shape(arch.size)

    outputs = {backend: run_one_tile(cls, config, backend, shape) for backend in cls.backends}

    if "onnx" in outputs:
        assert np.abs(outputs["onnx"] - outputs["torch"]).max() < TOLERANCE
        exported = {p.name: p for p in (models_dir / "onnx").glob("*/*.onnx")}
        assert set(exported) == {f"{arch.id}-{config}-{g.name}.onnx" for g in arch.graphs}
        for graph in arch.graphs:
            onnx_graph = OnnxGraph(exported[f"{arch.id}-{config}-{graph.name}.onnx"], "cpu")
            assert (onnx_graph.input_names, onnx_graph.output_names) == (graph.inputs, graph.outputs)


def test_methods_do_not_import_the_registry():
    """The registry lists the methods; the methods never need it (no import circle)."""
    code = "import sys, core.methods; sys.exit('core.registry' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_meta_device_counts_match_real_builds_without_loading_torchs_compiler():
    """Listing models counts every configuration's parameters on the meta device; its initialisers
    are skipped there (normal_'s fallback would import torch._dynamo, seconds per process)."""
    code = ("import sys\nfrom core.archs import ARCHS, param_count\n"
            "counts = {(a, c): param_count(a, c) for a, s in ARCHS.items() for c in s.configs}\n"
            "print(len(counts), 'torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "False"
    from core.archs import ARCHS, build

    for arch_id, spec in ARCHS.items():
        if "lite" in spec.configs:
            real = sum(p.numel() for p in build(arch_id, "lite").parameters())
            assert param_count(arch_id, "lite") == real, arch_id
