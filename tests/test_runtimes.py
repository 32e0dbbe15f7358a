import warnings

import numpy as np
import pytest
import torch

from core import runtimes
from core.errors import ModelError
from core.runtimes import OnnxGraph, TorchGraph, onnx_providers, select_device


class TwoHeads(torch.nn.Module):
    """Two inputs, two outputs: checks that names and order survive both runtimes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, image, gain):
        features = self.conv(image) * gain
        return self.shuffle(features), features.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "two_heads.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(path)
    return path


def _export(path):
    torch.onnx.export(TwoHeads().eval(), (torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 1, 1)), str(path),
                      input_names=["image", "gain"], output_names=["sr", "stats"],
                      dynamic_axes={"image": {2: "h", 3: "w"}, "sr": {2: "h2", 3: "w2"}},
                      dynamo=False)


def _inputs():
    rng = np.random.default_rng(3)
    return {"image": rng.random((1, 3, 13, 11), dtype=np.float32),
            "gain": np.full((1, 1, 1, 1), 0.5, np.float32)}


def test_torch_and_onnx_graphs_agree(onnx_file):
    torch_out = TorchGraph(TwoHeads(), ("image", "gain"), ("sr", "stats"), "cpu")(_inputs())
    onnx_out = OnnxGraph(onnx_file, "cpu")(_inputs())
    assert set(torch_out) == set(onnx_out) == {"sr", "stats"}
    assert onnx_out["sr"].shape == (1, 3, 26, 22)
    for name in ("sr", "stats"):
        np.testing.assert_allclose(onnx_out[name], torch_out[name], atol=1e-5)


def test_sessions_are_cached_per_file_and_providers(onnx_file):
    first, second = OnnxGraph(onnx_file, "cpu"), OnnxGraph(onnx_file, "auto")
    if not runtimes.cuda_available():
        assert first.session is second.session


@pytest.mark.skipif(runtimes.cuda_available(), reason="checks the machine-without-CUDA path")
def test_auto_falls_back_to_cpu_cleanly_without_cuda(onnx_file, capfd):
    assert select_device("auto") == "cpu"
    assert onnx_providers("auto") == ["CPUExecutionProvider"]
    graph = OnnxGraph(onnx_file, "auto")
    assert graph.device == "cpu"
    graph(_inputs())
    assert "CUDA" not in capfd.readouterr().err  # no provider-failure chatter


@pytest.mark.skipif(runtimes.cuda_available(), reason="checks the machine-without-CUDA path")
def test_explicit_cuda_without_a_gpu_is_a_clear_error(onnx_file):
    with pytest.raises(ModelError, match="no CUDA GPU"):
        select_device("cuda")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        OnnxGraph(onnx_file, "cuda")


def test_missing_input_and_missing_file_are_model_errors(onnx_file, tmp_path):
    with pytest.raises(ModelError, match="gain"):
        OnnxGraph(onnx_file, "cpu")({"image": _inputs()["image"]})
    with pytest.raises(ModelError, match="does not exist"):
        OnnxGraph(tmp_path / "none.onnx", "cpu")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="cannot load ONNX graph"):
        OnnxGraph(broken, "cpu")


def test_unknown_device_is_refused():
    with pytest.raises(ModelError, match="unknown device"):
        select_device("tpu")
