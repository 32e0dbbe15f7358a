import os
import warnings

import numpy as np
import pytest
import torch

from core import runtimes
from core.errors import InputWarning, ModelError
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


# ---------------------------------------------------------------- backend and precision choice
OFFERED = ("torch", "onnx", "openvino")


@pytest.fixture
def all_installed(monkeypatch):
    monkeypatch.setattr(runtimes, "runtime_installed", lambda backend: True)


def test_auto_takes_the_stored_choice_or_fp32_on_the_first_backend(all_installed):
    assert runtimes.choose_runtime(OFFERED, ("onnx", "int8"), "cpu") == ("onnx", "int8")
    assert runtimes.choose_runtime(OFFERED, None, "cpu") == ("torch", "fp32")
    # what was asked for by name wins over the stored choice
    assert runtimes.choose_runtime(OFFERED, ("onnx", "int8"), "cpu", "torch") == ("torch", "fp32")
    assert runtimes.choose_runtime(OFFERED, ("onnx", "int8"), "cpu", "onnx", "fp32") == ("onnx", "fp32")
    assert runtimes.choose_runtime(OFFERED, ("onnx", "int8"), "cpu", "onnx") == ("onnx", "int8")
    assert runtimes.choose_runtime(OFFERED, None, "cpu", precision="int8") == ("onnx", "int8")
    assert runtimes.choose_runtime(OFFERED, None, "cpu", precision="bf16") == ("torch", "bf16")
    assert runtimes.choose_runtime(OFFERED, ("openvino", "fp32"), "cuda") == ("torch", "fp32")


def test_impossible_runtime_requests_are_model_errors(all_installed):
    with pytest.raises(ModelError, match="onnx backend runs fp32 or int8, not bf16"):
        runtimes.choose_runtime(OFFERED, None, "cpu", "onnx", "bf16")
    with pytest.raises(ModelError, match="cannot run on the 'openvino' backend"):
        runtimes.choose_runtime(("torch",), None, "cpu", "openvino")
    with pytest.raises(ModelError, match="run on the CPU"):
        runtimes.choose_runtime(OFFERED, None, "cuda", "openvino")
    with pytest.raises(ModelError, match="unknown precision"):
        runtimes.choose_runtime(OFFERED, None, "cpu", precision="fp8")


def test_a_missing_runtime_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(runtimes, "runtime_installed", lambda backend: backend != "openvino")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stored choice falls back silently
        assert runtimes.choose_runtime(OFFERED, ("openvino", "bf16"), "cpu") == ("torch", "bf16")
    with pytest.warns(InputWarning, match="needs the openvino package"):
        assert runtimes.choose_runtime(OFFERED, None, "cpu", "openvino") == ("torch", "fp32")


def test_threads_default_to_the_variable_else_physical_cores(monkeypatch):
    monkeypatch.setenv(runtimes.THREADS_VARIABLE, "3")
    assert runtimes.default_threads() == 3
    monkeypatch.delenv(runtimes.THREADS_VARIABLE)
    assert 1 <= runtimes.default_threads() == runtimes.physical_cores() <= (os.cpu_count() or 1)
    assert runtimes.use_threads(1) == 1 and torch.get_num_threads() == 1


@pytest.mark.skipif(not runtimes.runtime_installed("openvino"), reason="openvino extra not installed")
def test_openvino_graph_matches_torch(onnx_file):
    graph = runtimes.OpenVinoGraph(onnx_file, "fp32", threads=1)
    assert (graph.input_names, graph.output_names) == (("image", "gain"), ("sr", "stats"))
    feeds = {"image": np.random.default_rng(1).random((1, 3, 10, 14), dtype=np.float32),
             "gain": np.full((1, 1, 1, 1), 0.5, np.float32)}
    expected = TorchGraph(TwoHeads(), ("image", "gain"), ("sr", "stats"))(feeds)
    got = graph(feeds)
    for name in ("sr", "stats"):
        assert got[name].shape == expected[name].shape
        assert np.abs(got[name] - expected[name]).max() < 1e-4
    assert runtimes.OpenVinoGraph(onnx_file, "fp32", threads=1).compiled is graph.compiled  # cached
