"""The bad-input corpus of issue 21: one table, each case run through `python -m core upscale`
(in process). A new format or option adds its bad cases here as rows.

Each row: how to make the input, how OUT is named, the exit status, a fragment of the one
`error:` line, then any options, and always: the input is untouched and no output (or temporary)
is left.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from PIL import Image as PILImage

from core import cli
from core.image_io import Image, save_image
from conftest import gradient_pixels


def _png(folder: Path) -> Path:
    return save_image(Image(gradient_pixels(12, 10, 3), 8), folder / "in.png")


def _truncated_png(folder: Path) -> Path:
    path = _png(folder)
    path.write_bytes(path.read_bytes()[:60])
    return path


def _empty(folder: Path) -> Path:
    path = folder / "in.png"
    path.write_bytes(b"")
    return path


def _huge_header(folder: Path) -> Path:
    path = folder / "in.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0")
    return path


def _frames(suffix: str):
    def make(folder: Path) -> Path:
        frames = [PILImage.new("RGB", (16, 12), (80 * k, 0, 0)) for k in range(3)]
        path = folder / f"in{suffix}"
        frames[0].save(path, save_all=True, append_images=frames[1:])
        return path
    return make


def _damaged_jpeg(folder: Path) -> Path:
    """30 bytes of the compressed scan flipped: Pillow decodes it without a word, mostly wrong."""
    path = save_image(Image(gradient_pixels(64, 64, 3), 8), folder / "in.jpg")
    data = bytearray(path.read_bytes())
    scan = data.index(b"\xff\xda")
    start = scan + 2 + int.from_bytes(data[scan + 2:scan + 4], "big")
    for k in range(start + 10, start + 40):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def _turned_jpeg(folder: Path) -> Path:
    """Stored 48x32 with EXIF orientation 6: the user sees (and selects in) a 32x48 image."""
    exif = PILImage.Exif()
    exif[0x0112] = 6
    path = folder / "in.jpg"
    PILImage.new("RGB", (48, 32), (200, 40, 40)).save(path, exif=exif.tobytes())
    return path


def _out_named(name: str):
    return lambda folder, source: folder / name


def _out_folder(folder: Path, source: Path) -> Path:
    (folder / "out.png").mkdir()
    return folder / "out.png"


CASES = {  # id: (make input, name OUT, exit status, message fragment, *options)
    "empty file": (_empty, _out_named("out.png"), 1, "is an empty file"),
    "truncated PNG": (_truncated_png, _out_named("out.png"), 1, "corrupt or truncated"),
    "damaged JPEG data": (_damaged_jpeg, _out_named("out.png"), 1, "corrupt or truncated (Corrupt JPEG data"),
    "header of 100000x100000": (_huge_header, _out_named("out.png"), 1, "above the limit"),
    "animated GIF": (_frames(".gif"), _out_named("out.png"), 1, "only single images are supported"),
    "animated WebP": (_frames(".webp"), _out_named("out.png"), 1, "only single images are supported"),
    "multi-page TIFF": (_frames(".tif"), _out_named("out.png"), 1, "only single images are supported"),
    "OUT is IN": (_png, lambda folder, source: source, 1, "is the input file"),
    "OUT is IN via ..": (_png, lambda folder, source: folder / "sub" / ".." / source.name, 1,
                         "is the input file"),
    "OUT is a folder": (_png, _out_folder, 1, "it is a folder"),
    "OUT in a missing folder": (_png, _out_named("nowhere/out.png"), 1, "does not exist"),
    "OUT of unknown format": (_png, _out_named("out.bmp"), 1, "unknown extension"),
    "region in stored, not shown, coordinates": (_turned_jpeg, _out_named("out.png"), 1,
                                                  "reaches outside the 32x48 image", "--region", "0,0,48,32"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, capsys):
    make_input, name_out, status, fragment, *options = CASES[case]
    (tmp_path / "sub").mkdir()
    source = make_input(tmp_path)
    before = source.read_bytes()
    out = name_out(tmp_path, source)
    present = sorted(tmp_path.rglob("*"))

    assert cli.main(["upscale", str(source), str(out), "--model", "bicubic", *options]) == status
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert source.read_bytes() == before
    assert sorted(tmp_path.rglob("*")) == present  # no OUT, no temporary file
