import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps

from core import image_io
from core.errors import InputError
from core.image_io import Image, from_raw, load_image, save_image, to_raw, to_rgb
from protocol.raw_image import RawImage
from conftest import gradient_pixels

RNG = np.random.default_rng(0)



def _quantised(pixels, bits):
    top = 255 if bits == 8 else 65535
    return np.round(pixels * top) / top


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_lossless_round_trip_keeps_channels_and_bit_depth(tmp_path, suffix, bits, channels):
    pixels = _quantised(gradient_pixels(13, 17, channels), bits)
    path = save_image(Image(pixels, bits), tmp_path / f"x{suffix}")
    back = load_image(path)
    assert back.bit_depth == bits
    assert back.pixels.shape == (13, 17, channels)
    assert back.pixels.dtype == np.float32
    np.testing.assert_allclose(back.pixels, pixels, atol=1e-6)


def test_sixteen_bit_rgb_keeps_values_that_eight_bits_cannot_hold(tmp_path):
    pixels = np.full((4, 4, 3), 1000 / 65535, np.float32)  # 3.9 in 8-bit terms
    back = load_image(save_image(Image(pixels, 16), tmp_path / "x.png"))
    assert back.bit_depth == 16
    assert np.all(np.round(back.pixels * 65535) == 1000)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_float_tiff_round_trip_is_exact_float32(tmp_path, channels):
    pixels = RNG.random((9, 11, channels), dtype=np.float32) * 1.5  # float sources may exceed 1
    back = load_image(save_image(Image(pixels, 32), tmp_path / "x.tif"))
    assert back.bit_depth == 32
    np.testing.assert_array_equal(back.pixels, pixels)


@pytest.mark.parametrize("suffix,channels,tolerance", [(".jpg", 3, 0.05), (".jpg", 1, 0.05),
                                                       (".webp", 3, 0.06), (".webp", 4, 0.06)])
def test_lossy_formats_round_trip_closely(tmp_path, suffix, channels, tolerance):
    pixels = gradient_pixels(32, 32, channels)
    back = load_image(save_image(Image(pixels, 8), tmp_path / f"x{suffix}"))
    expected_channels = 3 if suffix == ".webp" and channels == 1 else channels
    assert back.channels == expected_channels
    assert np.abs(back.pixels[..., :channels].mean() - pixels.mean()) < 0.01
    assert np.abs(back.pixels[..., :min(channels, back.channels)]
                  - pixels[..., :min(channels, back.channels)]).mean() < tolerance


def _metadata():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = PILImage.Exif()
    exif[0x010F] = "Blind Upscale test camera"  # Make
    return icc, exif.tobytes()


@pytest.mark.parametrize("suffix,bits,channels", [(".png", 8, 3), (".png", 16, 3), (".png", 16, 4),
                                                  (".jpg", 8, 3), (".tif", 8, 3), (".webp", 8, 3)])
def test_icc_profile_and_exif_survive_a_save(tmp_path, suffix, bits, channels):
    icc, exif = _metadata()
    path = save_image(Image(gradient_pixels(8, 8, channels), bits, icc, exif), tmp_path / f"x{suffix}")
    back = load_image(path)
    assert back.icc == icc
    assert back.exif is not None
    parsed = PILImage.Exif()
    parsed.load(back.exif)
    assert parsed[0x010F] == "Blind Upscale test camera"


@pytest.mark.parametrize("bits,channels", [(16, 2), (16, 3), (16, 4), (32, 3)])
def test_high_depth_tiff_keeps_the_icc_profile(tmp_path, bits, channels):
    icc, _ = _metadata()
    back = load_image(save_image(Image(gradient_pixels(6, 7, channels), bits, icc), tmp_path / "x.tif"))
    assert (back.bit_depth, back.channels, back.icc) == (bits, channels, icc)


def test_pillow_reads_the_sixteen_bit_png_metadata_chunks_we_insert(tmp_path):
    icc, exif = _metadata()
    path = save_image(Image(gradient_pixels(8, 8, 3), 16, icc, exif), tmp_path / "x.png")
    with PILImage.open(path) as im:
        im.load()  # a bad CRC would raise here
        assert im.info["icc_profile"] == icc


def test_palette_image_with_transparency_loads_as_rgba(tmp_path):
    im = PILImage.new("P", (6, 5))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.info["transparency"] = 1
    im.putpixel((0, 0), 1)
    im.save(tmp_path / "p.png", transparency=1)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.channels == 4
    assert loaded.pixels[0, 0, 3] == 0.0 and loaded.pixels[1, 1, 3] == 1.0


def _png(width, height, body=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + image_io._png_chunk(b"IHDR", ihdr) + body
            + image_io._png_chunk(b"IEND", b""))


@pytest.mark.parametrize("name,payload,message", [
    ("empty.png", b"", "empty file"),
    ("noise.png", bytes(RNG.integers(0, 256, 500, dtype=np.uint8)), "not an image file"),
    ("zero.png", _png(0, 10), "zero size"),
    ("huge.png", _png(100_000, 100_000), "above the limit"),
    ("nodata.png", _png(10, 10), "corrupt"),
])
def test_bad_files_give_one_clear_input_error(tmp_path, name, payload, message):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(InputError, match=message):
        load_image(path)


@pytest.mark.parametrize("bits", [8, 16])
def test_truncated_png_is_reported_corrupt(tmp_path, bits):
    path = save_image(Image(gradient_pixels(64, 64, 3), bits), tmp_path / "x.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(path)


def test_pixel_limit_is_configurable_and_checked_from_the_header(tmp_path):
    path = save_image(Image(gradient_pixels(50, 60, 3), 8), tmp_path / "x.png")
    assert load_image(path, max_pixels=3000).width == 60
    with pytest.raises(InputError, match="50 = 0.0 MP|above the limit"):
        load_image(path, max_pixels=2999)


def _set_tiff_tags(path, values):
    """Rewrite numeric tags of the first IFD in place (tag -> one SHORT or LONG value)."""
    data = bytearray(path.read_bytes())
    e = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(e + "I", data[4:8])
    (count,) = struct.unpack(e + "H", data[offset:offset + 2])
    for i in range(count):
        at = offset + 2 + 12 * i
        tag, typ = struct.unpack(e + "HH", data[at:at + 4])
        if tag in values:
            value = values[tag]
            data[at + 8:at + 12] = (struct.pack(e + "H", value) + b"\0\0" if typ == 3
                                    else struct.pack(e + "I", value))
    path.write_bytes(bytes(data))


def test_huge_tiff_header_is_refused_before_decoding(tmp_path):
    path = save_image(Image(gradient_pixels(10, 10, 3), 16), tmp_path / "x.tif")
    _set_tiff_tags(path, {256: 60000, 257: 60000})
    with pytest.raises(InputError, match="above the limit"):
        load_image(path)


def test_tiff_strip_that_inflates_past_its_header_is_decoded_only_to_the_header_size(tmp_path):
    """Issue 21, defect 3: a 100x100 gray+alpha TIFF whose deflate strip inflates to 64 MB
    (a zip bomb) was decompressed whole, bypassing --max-pixels."""
    import tracemalloc

    path = save_image(Image(gradient_pixels(100, 100, 2), 16), tmp_path / "bomb.tif")
    strip_at = image_io._tiff_tags(path)[1][273][0]
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    path.write_bytes(path.read_bytes()[:strip_at] + bomb)
    _set_tiff_tags(path, {279: len(bomb)})
    tracemalloc.start()
    try:
        image = load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (image.width, image.height, image.channels) == (100, 100, 2)
    assert peak < 8 << 20, f"decoding allocated {peak >> 20} MB"


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def broken_encoder(*args, **kwargs):
        raise InputError("encoder failed")

    monkeypatch.setattr(image_io, "_write_encoded", broken_encoder)
    with pytest.raises(InputError):
        save_image(Image(gradient_pixels(4, 4, 3), 8), target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_write_error_midway_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(image_io.os, "replace", failing_replace)
    with pytest.raises(InputError, match="cannot save out.png: disk full"):
        save_image(Image(gradient_pixels(4, 4, 3), 8), target)
    assert list(tmp_path.iterdir()) == []


def test_jpeg_refuses_alpha_instead_of_dropping_it(tmp_path):
    with pytest.raises(InputError, match="no alpha"):
        save_image(Image(gradient_pixels(4, 4, 4), 8), tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(InputError, match="unknown extension"):
        save_image(Image(gradient_pixels(4, 4, 3), 8), tmp_path / "x.bmpx")


@pytest.mark.parametrize("dtype,bits", [("u8", 8), ("u16", 16), ("f32", 32)])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_raw_round_trip(dtype, bits, channels):
    pixels = _quantised(gradient_pixels(5, 7, channels), bits) if bits != 32 else gradient_pixels(5, 7, channels)
    image = Image(pixels, bits)
    raw = to_raw(image)
    assert (raw.dtype, raw.channels, raw.width, raw.height) == (dtype, channels, 7, 5)
    np.testing.assert_allclose(from_raw(raw).pixels, pixels, atol=1e-6)
    again = from_raw(RawImage.from_bytes(raw.to_bytes()))
    assert again.bit_depth == bits
    np.testing.assert_allclose(again.pixels, pixels, atol=1e-6)


def test_half_float_raw_is_read_as_float_and_written_back_as_half():
    """Krita's F16 layers travel as half floats; HDR values beyond half range are clipped, not inf."""
    values = [0.25, 0.5, 1.0, 2.0, 0.0, 0.125]
    image = from_raw(RawImage(2, 1, 3, "f16", struct.pack("<6e", *values)))
    assert image.bit_depth == 32 and image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels.ravel(), values)
    image.pixels[0, 0, 0] = 1e6
    back = to_raw(image, "f16")
    assert back.dtype == "f16" and struct.unpack("<6e", back.data) == (65504.0, *values[1:])


def test_raw_samples_are_little_endian_in_the_named_order():
    pixels = np.array([[[1.0, 0.0, 0.0, 1.0]]], np.float32)
    raw = to_raw(Image(pixels, 16))
    assert raw.order == "RGBA"
    assert raw.data == struct.pack("<4H", 65535, 0, 0, 65535)


def test_to_rgb_repeats_gray_drops_alpha_and_clips():
    gray_alpha = np.array([[[0.25, 1.0], [1.5, 0.0]]], np.float32)
    np.testing.assert_array_equal(to_rgb(gray_alpha), [[[0.25] * 3, [1.0] * 3]])
    rgba = np.array([[[0.1, -0.2, 0.3, 0.5]]], np.float64)
    out = to_rgb(rgba)
    assert out.dtype == np.float32 and out.shape == (1, 1, 3)
    np.testing.assert_allclose(out, [[[0.1, 0.0, 0.3]]], atol=1e-7)
    assert to_rgb(np.zeros((2, 3))).shape == (2, 3, 3)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_chunks_have_valid_crcs_and_the_metadata_comes_first(tmp_path, monkeypatch, bits):
    """Our own PNG writer (8 and 16 bits, here in strips of 3 rows): IDAT chunks, iCCP and eXIf
    right after IHDR, and the same samples back."""
    monkeypatch.setattr(image_io, "PNG_STRIP_ROWS", 3)
    icc, exif = _metadata()
    pixels = gradient_pixels(10, 7, 3)
    path = save_image(Image(pixels, bits, icc, exif), tmp_path / "a.png")
    png = path.read_bytes()
    at = 8
    kinds = []
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, body = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        at += 12 + length
    assert kinds[:3] == [b"IHDR", b"iCCP", b"eXIf"] and kinds[-1] == b"IEND"
    assert set(kinds[3:-1]) == {b"IDAT"}
    loaded = load_image(path)
    assert loaded.bit_depth == bits and loaded.icc == icc
    top = 2 ** bits - 1
    np.testing.assert_array_equal(np.round(loaded.pixels * top), np.round(pixels * top))


def test_tiff_metadata_leaves_the_layout_tags_behind(tmp_path):
    _, exif = _metadata()
    source = save_image(Image(gradient_pixels(6, 5, 3), 8, None, exif), tmp_path / "a.tif")
    loaded = load_image(source)
    parsed = PILImage.Exif()
    parsed.load(loaded.exif)
    assert parsed[0x010F] == "Blind Upscale test camera"
    assert 256 not in parsed and 273 not in parsed
    again = load_image(save_image(Image(gradient_pixels(12, 10, 3), 8, None, loaded.exif), tmp_path / "b.tif"))
    assert (again.width, again.height) == (10, 12)


@pytest.mark.parametrize("mode,options", [("RGB", {}), ("L", {}), ("CMYK", {}), ("RGB", {"progressive": True}),
                                          ("RGB", {"subsampling": 2, "quality": 60})])
def test_sound_jpegs_pass_the_strict_data_check(tmp_path, mode, options):
    path = tmp_path / "x.jpg"
    PILImage.fromarray((gradient_pixels(40, 56, 3) * 255).astype(np.uint8)).convert(mode).save(path, **options)
    assert load_image(path).width == 56


def _exif_with_orientation(orientation: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x010F] = "Blind Upscale test camera"  # Make
    exif[0x0112] = orientation
    return exif.tobytes()


def _kept_tags(image: Image) -> PILImage.Exif:
    parsed = PILImage.Exif()
    parsed.load(image.exif)
    return parsed


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt,suffix,options", [("JPEG", ".jpg", {}), ("PNG", ".png", {}),
                                                ("TIFF", ".tif", {}), ("WEBP", ".webp", {"lossless": True})])
def test_exif_orientation_is_applied_once_and_not_kept(tmp_path, orientation, fmt, suffix, options):
    """Issue 21, defect 5: every format loads as a viewer shows it (Pillow turns only TIFFs itself),
    and the orientation tag is dropped, so the output is not turned a second time."""
    stored = (RNG.random((6, 9, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"x{suffix}"
    PILImage.fromarray(stored).save(path, fmt, exif=_exif_with_orientation(orientation), **options)
    with PILImage.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im))
    loaded = load_image(path)
    np.testing.assert_array_equal(np.round(loaded.pixels * 255).astype(np.uint8), shown)
    tags = _kept_tags(loaded)
    assert 0x0112 not in tags and tags[0x010F] == "Blind Upscale test camera"


def _with_tiff_orientation(path, orientation: int) -> None:
    """Add tag 274 to a little-endian TIFF: its first IFD, one entry longer, is rewritten at the
    end of the file (the data it points to stays where it is)."""
    data = bytearray(path.read_bytes())
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd:ifd + 2])
    entries = [bytes(data[ifd + 2 + 12 * k:ifd + 14 + 12 * k]) for k in range(count)]
    entries.append(struct.pack("<HHIHH", 274, 3, 1, orientation, 0))
    entries.sort(key=lambda entry: struct.unpack("<H", entry[:2])[0])
    data += b"\0" * (len(data) % 2)
    data[4:8] = struct.pack("<I", len(data))
    data += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix,bits,channels", [(".png", 16, 3), (".png", 16, 2), (".tif", 16, 3),
                                                  (".tif", 16, 2), (".tif", 32, 3), (".tif", 32, 2)])
def test_orientation_of_high_depth_files_is_applied_once(tmp_path, suffix, bits, channels):
    """The files OpenCV (which turns TIFFs itself, not PNGs) and our TIFF strip reader decode are
    turned once too: a PNG by its eXIf chunk, a TIFF by its own tag."""
    pixels = _quantised(gradient_pixels(5, 8, channels), 16)
    exif = _exif_with_orientation(6) if suffix == ".png" else None
    path = save_image(Image(pixels, bits, None, exif), tmp_path / f"x{suffix}")
    if suffix == ".tif":
        _with_tiff_orientation(path, 6)
    loaded = load_image(path)
    assert (loaded.width, loaded.height, loaded.bit_depth) == (5, 8, bits)
    np.testing.assert_allclose(loaded.pixels, np.rot90(pixels, -1), atol=0.5 / 65535)
    assert loaded.exif is None or 0x0112 not in _kept_tags(loaded)


def test_outputs_get_the_usual_mode_and_an_overwritten_file_keeps_its_own(tmp_path):
    """Issue 21, defect 8: every output was mode 0600 (a private temporary file renamed), and
    overwriting a 0644 file made it 0600."""
    import os

    old_umask = os.umask(0o022)
    try:
        new = save_image(Image(gradient_pixels(4, 4, 3), 8), tmp_path / "new.png")
        kept = tmp_path / "kept.png"
        kept.write_bytes(b"previous")
        os.chmod(kept, 0o664)
        save_image(Image(gradient_pixels(4, 4, 3), 8), kept)
    finally:
        os.umask(old_umask)
    assert new.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o664


def _frames(count):
    return [PILImage.new("RGB", (16, 12), (255 * (k == 0), 255 * (k == 1), 255 * (k == 2)))
            for k in range(count)]


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".tif", ".png"])
def test_animated_and_multi_page_files_are_refused(tmp_path, suffix):
    """Issue 21, defect 7: only the first frame or page was kept, without a word."""
    first, *rest = _frames(3)
    path = tmp_path / f"anim{suffix}"
    first.save(path, save_all=True, append_images=rest)
    with pytest.raises(InputError, match="has 3 frames or pages; only single images are supported"):
        load_image(path)


def test_multi_page_sixteen_bit_tiff_is_refused(tmp_path):
    """The 16-bit colour route (OpenCV) reads the first page too: the page count comes first."""
    one = save_image(Image(gradient_pixels(8, 8, 4), 16), tmp_path / "one.tif").read_bytes()
    (first_ifd,) = struct.unpack("<I", one[4:8])
    (count,) = struct.unpack("<H", one[first_ifd:first_ifd + 2])
    next_at = first_ifd + 2 + 12 * count
    two = one[:next_at] + struct.pack("<I", len(one)) + one[next_at + 4:] + one[first_ifd:next_at] + b"\0" * 4
    path = tmp_path / "two.tif"
    path.write_bytes(two)
    with pytest.raises(InputError, match="has 2 frames or pages"):
        load_image(path)
