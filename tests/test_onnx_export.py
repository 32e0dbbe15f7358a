import numpy as np
import pytest
import torch

from core import onnx_export
from core.archs import ARCHS, build
from core.errors import BlindUpscaleError
from core.runtimes import OnnxGraph


@pytest.mark.parametrize("arch_id", sorted(a for a, spec in ARCHS.items() if spec.graphs))
def test_lite_graphs_in_turn_equal_the_whole_network_at_another_size(arch_id, tmp_path, monkeypatch):
    """The split (estimator, then SR with its estimate) run in onnxruntime gives what the whole
    torch network gives, at a non-square size other than the export example's."""
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    torch.manual_seed(0)
    model = build(arch_id, "lite").eval()
    paths = onnx_export.cached_graphs(arch_id, "lite", model, "ab" * 32)
    graphs = onnx_export.graph_specs(arch_id)
    assert set(paths) == {graph.name for graph in graphs}
    assert all(p.parent == tmp_path / "onnx" / ("ab" * 8) for p in paths.values())

    images = ARCHS[arch_id].example_inputs(model, 20, 28, torch.Generator().manual_seed(1))
    feeds = {name: tensor.numpy() for name, tensor in images.items()}
    for graph in graphs:
        feeds.update(OnnxGraph(paths[graph.name], "cpu")(feeds))
    with torch.no_grad():
        expected = model(*images.values()).numpy()
    assert feeds["sr"].shape == expected.shape == (1, 3, 80, 112)
    assert np.abs(feeds["sr"] - expected).max() < 1e-4


def test_an_architecture_without_graphs_has_no_export():
    with pytest.raises(BlindUpscaleError, match="'metaf2n' has no ONNX export"):
        onnx_export.graph_specs("metaf2n")


def test_graphs_are_cached_by_weights_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    model = build("rrdbnet", "lite").eval()
    first = onnx_export.cached_graphs("rrdbnet", "lite", model, "cd" * 32)["sr"]
    stamp = first.stat().st_mtime_ns
    again = onnx_export.cached_graphs("rrdbnet", "lite", model, "cd" * 32)["sr"]
    assert again == first and again.stat().st_mtime_ns == stamp
    other = onnx_export.cached_graphs("rrdbnet", "lite", model, "ef" * 32)["sr"]
    assert other != first and other.is_file()
