import numpy as np
import pytest
import torch

from core import onnx_export
from core.archs import build
from core.runtimes import OnnxGraph


def torch_reference(arch_id, model, lr, support):
    with torch.no_grad():
        if arch_id == "cmdsr":
            return model(lr, support)
        return model(lr)


@pytest.mark.parametrize("arch_id", sorted(onnx_export.GRAPHS))
def test_lite_graphs_match_torch_at_another_size(arch_id, tmp_path, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    torch.manual_seed(0)
    model = build(arch_id, "lite").eval()
    paths = onnx_export.cached_graphs(arch_id, "lite", model, "ab" * 32)
    assert set(paths) == {spec.name for spec in onnx_export.graph_specs(arch_id)}
    assert all(p.parent == tmp_path / "onnx" / ("ab" * 8) for p in paths.values())

    generator = torch.Generator().manual_seed(1)
    lr = torch.rand(1, 3, 20, 28, generator=generator)  # not the export example size
    support = None
    feeds = {"lr": lr.numpy()}
    if arch_id == "cmdsr":
        support = torch.rand(1, 3 * model.support_size, 24, 24, generator=generator)
        feeds["support"] = support.numpy()
    graphs = [OnnxGraph(paths[spec.name], "cpu") for spec in onnx_export.graph_specs(arch_id)]
    if len(graphs) == 2:
        estimate = graphs[0](feeds)
        feeds.update(estimate)
    sr = graphs[-1](feeds)["sr"]
    expected = torch_reference(arch_id, model, lr, support).numpy()
    assert sr.shape == expected.shape == (1, 3, 80, 112)
    assert np.abs(sr - expected).max() < 1e-4


def test_graphs_are_cached_by_weights_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    model = build("rrdbnet", "lite").eval()
    first = onnx_export.cached_graphs("rrdbnet", "lite", model, "cd" * 32)["sr"]
    stamp = first.stat().st_mtime_ns
    again = onnx_export.cached_graphs("rrdbnet", "lite", model, "cd" * 32)["sr"]
    assert again == first and again.stat().st_mtime_ns == stamp
    other = onnx_export.cached_graphs("rrdbnet", "lite", model, "ef" * 32)["sr"]
    assert other != first and other.is_file()
