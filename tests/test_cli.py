"""`python -m core` end to end, as a subprocess, on images the tests make."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.image_io import Image, load_image, save_image
from conftest import gradient_pixels

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)



def _assert_one_line_error(result, fragment):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    made = {
        "rgb8": save_image(Image(gradient_pixels(12, 10, 3), 8), folder / "rgb8.png"),
        "rgba8": save_image(Image(gradient_pixels(12, 10, 4), 8), folder / "rgba8.png"),
        "gray8": save_image(Image(gradient_pixels(12, 10, 1), 8), folder / "gray8.png"),
        "rgb16": save_image(Image(gradient_pixels(12, 10, 3), 16), folder / "rgb16.png"),
        "rgba16": save_image(Image(gradient_pixels(12, 10, 4), 16), folder / "rgba16.tif"),
    }
    (folder / "corrupt.png").write_bytes(made["rgb8"].read_bytes()[:60])
    (folder / "empty.png").write_bytes(b"")
    ihdr = struct.pack(">IIBBBBB", 0, 12, 8, 2, 0, 0, 0)
    (folder / "zero.png").write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                                      + b"\0\0\0\0")
    made.update(corrupt=folder / "corrupt.png", empty=folder / "empty.png", zero=folder / "zero.png")
    return made


@pytest.mark.parametrize("name,channels,bits", [("rgb8", 3, 8), ("rgba8", 4, 8), ("gray8", 1, 8),
                                                ("rgb16", 3, 16), ("rgba16", 4, 16)])
def test_upscale_bicubic_keeps_alpha_and_bit_depth(inputs, tmp_path, name, channels, bits):
    out = tmp_path / f"out{inputs[name].suffix}"
    result = run("upscale", inputs[name], out, "--model", "bicubic", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["output"] == str(out) and summary["width"] == 40 and summary["height"] == 48
    image = load_image(out)
    assert (image.width, image.height, image.channels, image.bit_depth) == (40, 48, channels, bits)
    source = load_image(inputs[name])
    if channels == 4:  # alpha was upscaled, not dropped or made opaque
        assert abs(image.pixels[..., 3].mean() - source.pixels[..., 3].mean()) < 0.02


def test_upscale_with_region_scale_and_tiles(inputs, tmp_path):
    out = tmp_path / "out.png"
    result = run("upscale", inputs["rgb8"], out, "--model", "bicubic", "--region", "2,3,6,5",
                 "--scale", "2", "--tile", "16", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    assert load_image(out).pixels.shape == (10, 12, 3)


@pytest.mark.parametrize("case,args,fragment", [
    ("unknown model", ["rgb8", "--model", "nope"], "unknown model 'nope'"),
    ("bad region", ["rgb8", "--model", "bicubic", "--region", "5,5,50,50"], "reaches outside"),
    ("malformed region", ["rgb8", "--model", "bicubic", "--region", "1,2,x,4"], "integers"),
    ("corrupt file", ["corrupt", "--model", "bicubic"], "corrupt"),
    ("empty file", ["empty", "--model", "bicubic"], "empty file"),
    ("zero size", ["zero", "--model", "bicubic"], "zero size"),
    ("huge image", ["rgb8", "--model", "bicubic", "--max-pixels", "100"], "above the limit"),
    ("bad dial", ["rgb8", "--model", "bicubic", "--blur", "3"], "blur must be"),
    ("missing input", ["missing", "--model", "bicubic"], "does not exist"),
])
def test_failures_are_one_line_and_leave_no_output(inputs, tmp_path, case, args, fragment):
    source = inputs.get(args[0], tmp_path / "missing.png")
    out = tmp_path / "out.png"
    result = run("upscale", source, out, *args[1:])
    _assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_jpeg_output_with_alpha_is_refused_before_work(inputs, tmp_path):
    result = run("upscale", inputs["rgba8"], tmp_path / "out.jpg", "--model", "bicubic")
    _assert_one_line_error(result, "no alpha")
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_are_one_line_too():
    result = run("upscale", "only-one-path")
    _assert_one_line_error(result, "required")
    assert result.returncode == 2


def test_models_json_lists_every_model_with_its_weights_status():
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    models = {m["id"]: m for m in json.loads(result.stdout)}
    assert models["bicubic"]["weights"] == "bundled"
    for m in models.values():
        assert set(m) >= {"id", "family", "title", "summary", "scale", "controls", "adaptation",
                          "configs", "weights"}


def test_models_table(monkeypatch, capsys):
    from core import methods
    from core.cli import main
    from core.methods.bicubic import Bicubic

    monkeypatch.setattr(methods, "METHODS", {"bicubic": Bicubic})
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["bicubic", "Bicubic"]


def test_without_model_the_cli_takes_the_default_every_front_end_takes(monkeypatch):
    """The best method on real photos that has weights (protocol.client.default_model), as the
    panel, the GIMP plug-in and `build.py run --headless` do."""
    import argparse

    from core import methods
    from core.cli import add_upscale_options, request_from_args
    from core.methods.bicubic import Bicubic
    from protocol.client import default_model

    parser = argparse.ArgumentParser()
    add_upscale_options(parser)
    listed = [cls.spec().to_dict() for cls in methods.METHODS.values()]
    assert request_from_args(parser.parse_args([])).model == default_model(listed) != "bicubic"
    assert request_from_args(parser.parse_args(["--model", "bicubic"])).model == "bicubic"
    monkeypatch.setattr(methods, "METHODS", {"bicubic": Bicubic})
    assert request_from_args(parser.parse_args([])).model == "bicubic"


def test_analyse_json(inputs):
    result = run("analyse", inputs["rgb8"], "--region", "0,0,10,10", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 <= report["blur"] <= 1 and 0 <= report["noise"] <= 1
    assert isinstance(report["faces"], list)


def test_analyse_bad_region_in_process(inputs, capsys):
    from core.cli import main

    assert main(["analyse", str(inputs["rgb8"]), "--region", "8,8,9,9", "--json"]) == 1
    assert capsys.readouterr().err == "error: region 8,8,9,9 reaches outside the 10x12 image\n"


def test_unexpected_errors_are_one_line_unless_debugging(monkeypatch, capsys, inputs, tmp_path):
    from core import cli, engine

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(engine.Engine, "upscale", broken)
    out = tmp_path / "out.png"
    assert cli.main(["upscale", str(inputs["rgb8"]), str(out), "--model", "bicubic"]) == 1
    assert capsys.readouterr().err.startswith("error: unexpected ZeroDivisionError: a bug")
    assert not out.exists()
    monkeypatch.setenv("BLIND_UPSCALE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["upscale", str(inputs["rgb8"]), str(out), "--model", "bicubic"])


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_upscale_refuses_to_write_over_its_input(tmp_path, spelling):
    """Issue 21, defect 1: OUT naming the input (by any path) replaced the original with exit 0."""
    (tmp_path / "sub").mkdir()
    source = save_image(Image(gradient_pixels(12, 10, 3), 8), tmp_path / "a.png")
    before = source.read_bytes()
    out = {"same": source, "dotdot": tmp_path / "sub" / ".." / "a.png",
           "symlink": tmp_path / "link.png", "hardlink": tmp_path / "hard.png"}[spelling]
    if spelling == "symlink":
        out.symlink_to(source)
    elif spelling == "hardlink":
        out.hardlink_to(source)
    result = run("upscale", source, out, "--model", "bicubic")
    _assert_one_line_error(result, "is the input file")
    assert source.read_bytes() == before

    allowed = run("upscale", source, out, "--model", "bicubic", "--overwrite-input")
    assert allowed.returncode == 0, allowed.stderr
    assert load_image(out).width == 40  # a link is replaced by the result, as any OUT is


def test_output_that_is_a_folder_is_refused_before_the_upscale(monkeypatch, capsys, inputs, tmp_path):
    """Issue 21, defect 9: OUT naming a folder failed as "unexpected IsADirectoryError" only
    after the whole upscale had run."""
    from core import cli, engine

    def must_not_run(self, *args, **kwargs):
        raise AssertionError("the upscale ran before OUT was checked")

    monkeypatch.setattr(engine.Engine, "upscale", must_not_run)
    out = tmp_path / "out.png"
    out.mkdir()
    assert cli.main(["upscale", str(inputs["rgb8"]), str(out), "--model", "bicubic"]) == 1
    assert capsys.readouterr().err == f"error: cannot save {out}: it is a folder; name an image file\n"
    assert list(out.iterdir()) == []


def test_disk_full_is_one_clear_error_and_leaves_nothing(monkeypatch, capsys, inputs, tmp_path):
    """Issue 21, defect 9: ENOSPC surfaced as "unexpected OSError"."""
    import errno

    from core import cli

    from core import image_io

    def disk_full(image, fmt, bits, quality, out):
        out.write(b"the first bytes fit")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_io, "_write_encoded", disk_full)
    out = tmp_path / "out.png"
    assert cli.main(["upscale", str(inputs["rgb8"]), str(out), "--model", "bicubic"]) == 1
    assert capsys.readouterr().err == "error: cannot save out.png: No space left on device\n"
    assert list(tmp_path.iterdir()) == []


def test_float_input_with_nan_gets_one_warning_line_and_a_finite_result(tmp_path):
    """Issue 21, defect 6: NaN samples spread, with a two-line numpy warning on stderr."""
    pixels = gradient_pixels(12, 10, 3)
    pixels[2, 3, 0] = float("nan")
    source = save_image(Image(pixels, 32), tmp_path / "nan.tif")
    out = tmp_path / "out.tif"
    result = run("upscale", source, out, "--model", "bicubic")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: 1 samples were NaN or infinite; they were replaced by 0 (NaN, -inf) or 1 (+inf)"]
    assert np.isfinite(load_image(out).pixels).all()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_a_turned_photo_comes_out_as_the_user_sees_it(tmp_path, suffix):
    """Issue 21, defect 5: a photo stored sideways with EXIF orientation 6 is upscaled upright, its
    region is in the coordinates the user sees, and the output carries no orientation to turn it again."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    from core import cli

    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:, :12] = (250, 0, 0)  # red on the stored left: on top as shown
    exif = PILImage.Exif()
    exif[0x0112] = 6
    source = tmp_path / f"in{suffix}"
    PILImage.fromarray(stored).save(source, exif=exif.tobytes())
    out = tmp_path / f"out{suffix}"
    assert cli.main(["upscale", str(source), str(out), "--model", "bicubic", "--region", "0,0,32,40"]) == 0
    with PILImage.open(out) as im:
        assert im.getexif().get(0x0112) in (None, 1)
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).astype(int)
    assert shown.shape == (160, 128, 3)
    assert shown[:36, :, 0].min() > 200 and shown[:36, :, 2].max() < 40  # red band on top
    assert shown[60:, :, 0].max() < 40
