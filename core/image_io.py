"""Image files and raw images <-> `Image` (float32 0..1, H×W×C, with bit depth, ICC and EXIF).

Pillow reads and writes PNG, JPEG, TIFF and WebP. Pillow (13.0 here) has no 16-bit colour,
16-bit gray+alpha or float colour mode: it silently truncates 16-bit RGB PNG/TIFF to 8 bits and
cannot open float RGB TIFFs. Those files are read by OpenCV (opencv-python-headless), and
written by the two small encoders below (PNG of 8 or 16 bits, written strip by strip, and
16-bit/float TIFF), which also keep the ICC profile (and EXIF in PNG). The file header is parsed here first, so the route and the pixel limit
are decided before any pixel is decoded. Loaded pixels are upright (`_upright`): the EXIF
orientation is applied once, whichever decoder ran, and not kept.
Writes are atomic: a temporary file in the target folder, renamed over the target when complete.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from core.errors import InputError
from protocol.files import atomic_write
from protocol.raw_image import RawImage

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest input accepted by default (width × height), checked from the header before decoding."""

PILImage.MAX_IMAGE_PIXELS = None  # the limit is ours (max_pixels), applied before decoding

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}
ORDER_CHANNELS = {"G": 1, "GA": 2, "RGB": 3, "RGBA": 4}


@dataclass
class Image:
    """Pixels as float32 H×W×C in 0..1 (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) plus what to keep.
    A result that is only written to a file may hold its samples as uint8/uint16 instead
    (`Engine.upscale(as_integers=True)`): a quarter or half of the memory; saving takes both."""

    pixels: np.ndarray
    bit_depth: int = 8  # 8, 16, or 32 for float sources
    icc: bytes | None = None
    exif: bytes | None = None

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    def alpha(self) -> np.ndarray | None:
        return self.pixels[..., -1:] if self.has_alpha else None


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 float32 in 0..1 from gray (H×W or H×W×1), gray+alpha, RGB or RGBA pixels: what the
    models and the face detector see (alpha dropped, gray repeated)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    color = pixels[..., :1] if pixels.shape[2] <= 2 else pixels[..., :3]
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    return np.clip(color, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- header sniffing
@dataclass
class _Header:
    width: int
    height: int
    bits: int
    channels: int
    is_float: bool
    orientation: int = 1  # a TIFF's own tag 274 (a PNG's is in its eXIf chunk, read as EXIF)


def _png_header(head: bytes) -> _Header | None:
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height, bits, color_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 3)
    return _Header(width, height, bits, channels, False)


def _tiff_tags(path: Path) -> tuple[str, dict[int, list]] | None:
    """Byte order and the numeric tags of the first IFD of a classic TIFF (None if not one)."""
    formats = {1: "B", 3: "H", 4: "I", 7: "B", 16: "Q"}  # BYTE, SHORT, LONG, UNDEFINED, LONG8
    with open(path, "rb") as f:
        order = f.read(2)
        if order not in (b"II", b"MM"):
            return None
        e = "<" if order == b"II" else ">"
        try:
            magic, offset = struct.unpack(e + "HI", f.read(6))
            if magic != 42:
                return None
            f.seek(offset)
            (count,) = struct.unpack(e + "H", f.read(2))
            entries = [struct.unpack(e + "HHI4s", f.read(12)) for _ in range(count)]
            tags = {}
            for tag, typ, n, value in entries:
                if typ not in formats or not 0 < n <= 16_000_000:
                    continue
                size = struct.calcsize(formats[typ]) * n
                if size > 4:
                    f.seek(struct.unpack(e + "I", value)[0])
                    value = f.read(size)
                tags[tag] = list(struct.unpack(e + formats[typ] * n, value[:size]))
        except struct.error:
            return None
    return e, tags


def _tiff_header(path: Path) -> _Header | None:
    parsed = _tiff_tags(path)
    if parsed is None or 256 not in parsed[1] or 257 not in parsed[1]:
        return None
    tags = parsed[1]
    return _Header(tags[256][0], tags[257][0], tags.get(258, [1])[0], tags.get(277, [1])[0],
                   tags.get(339, [1])[0] == 3, tags.get(274, [1])[0])


def _read_tiff_strips(path: Path) -> np.ndarray:
    """Interleaved, strip-based TIFFs (no or deflate compression, optional horizontal predictor
    for integers): the 16-bit and float gray+alpha files neither Pillow nor OpenCV decode."""
    parsed = _tiff_tags(path)
    if parsed is None:  # _sniff parsed it already: the file changed since
        raise InputError(f"{path.name} is corrupt or truncated")
    e, tags = parsed
    width, height = tags[256][0], tags[257][0]
    channels, bits = tags.get(277, [1])[0], tags.get(258, [1])[0]
    compression, predictor = tags.get(259, [1])[0], tags.get(317, [1])[0]
    is_float = tags.get(339, [1])[0] == 3
    sample = {(16, False): "u2", (32, True): "f4"}.get((bits, is_float))
    if (sample is None or compression not in (1, 8, 32946) or predictor not in (1, 2)
            or (is_float and predictor != 1)
            or tags.get(284, [1])[0] != 1 or 273 not in tags or 279 not in tags):
        raise InputError(f"{path.name} is a kind of {bits}-bit TIFF this program cannot read "
                         "(tiled, planar or an unsupported compression)")
    expected = width * height * channels * (bits // 8)
    data = bytearray()
    with open(path, "rb") as f:
        for offset, size in zip(tags[273], tags[279]):
            room = expected - len(data)
            if room <= 0:
                break
            f.seek(offset)
            chunk = f.read(size)
            # A strip may inflate to far more than the header's size (a zip bomb): decode only
            # what the header, already checked against max_pixels, says the image holds.
            data += zlib.decompressobj().decompress(chunk, room) if compression != 1 else chunk[:room]
    if len(data) < expected:
        raise InputError(f"{path.name} is corrupt or truncated")
    a = np.frombuffer(data, dtype=e + sample).reshape(height, width, channels)
    if predictor == 2:
        a = np.cumsum(a, axis=1, dtype=np.uint16)  # undo horizontal differencing (mod 2^16)
    return a


def _tiff_page_count(path: Path) -> int:
    """How many IFDs (pages) a classic TIFF chains, each counted once (a loop ends the count)."""
    seen: set[int] = set()
    with open(path, "rb") as f:
        e = "<" if f.read(2) == b"II" else ">"
        try:
            _, offset = struct.unpack(e + "HI", f.read(6))
            while offset and offset not in seen and len(seen) < 10_000:
                seen.add(offset)
                f.seek(offset)
                (count,) = struct.unpack(e + "H", f.read(2))
                f.seek(offset + 2 + 12 * count)
                (offset,) = struct.unpack(e + "I", f.read(4))
        except struct.error:
            pass
    return len(seen)


def _refuse_frames(path: Path, frames: int) -> None:
    """Animated and multi-page files would silently lose every frame but the first."""
    if frames > 1:
        raise InputError(f"{path.name} has {frames} frames or pages; only single images are "
                         "supported (save the frame you want as its own file)")


def _sniff(path: Path) -> tuple[str | None, _Header | None]:
    with open(path, "rb") as f:
        head = f.read(32)
    if not head:
        raise InputError(f"{path.name} is an empty file")
    if head.startswith(b"\x89PNG"):
        return "PNG", _png_header(head)
    if head[:2] in (b"II", b"MM"):
        return "TIFF", _tiff_header(path)
    return None, None


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding a pixel, or None when the file is
    missing, unreadable or not an image (a batch uses it to tell a finished output)."""
    path = Path(path)
    try:
        _, header = _sniff(path)
        if header is not None:
            return header.width, header.height
        with PILImage.open(path) as im:
            return im.width, im.height
    except (InputError, OSError, ValueError, SyntaxError, struct.error, EOFError):
        return None


# ---------------------------------------------------------------- loading
def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file; any problem with the file raises one `InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    try:
        kind, header = _sniff(path)
    except OSError as exc:
        raise InputError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if kind == "TIFF":
        _refuse_frames(path, _tiff_page_count(path))
    if header is not None:
        _check_size(path, header.width, header.height, max_pixels)
        if (header.channels >= 2 and header.bits == 16) or (header.is_float and header.channels > 1):
            assert kind is not None  # _sniff reads a header only from a PNG or a TIFF
            return _load_high_depth(path, kind, header)
    try:
        with PILImage.open(path) as im:
            _check_size(path, im.width, im.height, max_pixels)
            _refuse_frames(path, getattr(im, "n_frames", 1))
            im.load()  # Pillow turns a TIFF upright here and drops its orientation tag
            if im.format == "JPEG":
                _check_jpeg_data(path)
            icc = im.info.get("icc_profile") or None
            exif = im.info.get("exif") or (_tiff_metadata_tags(im) if im.format == "TIFF" else None)
            pixels, bits = _pil_to_float(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path.name} is not an image file this program can read "
                         "(PNG, JPEG, TIFF or WebP)") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
        raise InputError(f"{path.name} is corrupt or truncated ({exc})") from None
    return _upright(Image(pixels, bits, icc, exif))


_JPEG_OUTPUT = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}  # else RGB


def _check_jpeg_data(path: Path) -> None:
    """Pillow decodes a JPEG whose compressed data is damaged without a word, making up the rest
    of the picture; libjpeg-turbo in strict mode (simplejpeg) reports it. The data is decoded
    again at 1/8 size: every scan is still read, in little memory."""
    import simplejpeg

    data = path.read_bytes()
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace=_JPEG_OUTPUT.get(colorspace, "RGB"), min_factor=8,
                               strict=True)
    except ValueError as exc:
        raise InputError(f"{path.name} is corrupt or truncated ({exc})") from None


_TURNS = {  # EXIF orientation -> how the stored pixels (H×W×C) become what a viewer shows
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1], 8: lambda a: np.rot90(a, 1),
}


def _upright(image: Image, orientation: int = 1) -> Image:
    """The pixels as a viewer shows them, for every format: the EXIF orientation (or a TIFF's own
    tag, `orientation`) is applied and removed from the EXIF kept, so the result is turned once,
    shows as the input does, and a region means what the user sees."""
    exif = image.exif
    if exif:
        tags = PILImage.Exif()
        try:
            tags.load(exif)
        except (SyntaxError, ValueError, struct.error, OSError):
            tags = PILImage.Exif()  # unreadable EXIF: no orientation anyone can apply
        if 274 in tags:
            orientation = tags.pop(274)
            exif = tags.tobytes()
    turn = _TURNS.get(orientation)
    pixels = image.pixels if turn is None else np.ascontiguousarray(turn(image.pixels))
    return Image(pixels, image.bit_depth, image.icc, exif)


_TIFF_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322,
                     323, 324, 325, 338, 339, 530, 532, 34675}
"""TIFF tags that describe the pixel layout or the ICC profile: never carried over as metadata."""


def _tiff_metadata_tags(im: PILImage.Image) -> bytes | None:
    """A TIFF keeps its EXIF-like tags (Make, Model, DateTime, the Exif IFD...) in its first IFD,
    mixed with the layout tags; keep only the former."""
    tags = im.getexif()
    for tag in list(tags):
        if tag in _TIFF_LAYOUT_TAGS:
            del tags[tag]
    return tags.tobytes() if len(tags) else None


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{path.name} has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(f"{path.name} is {width}x{height} = {width * height / 1e6:.1f} MP, "
                         f"above the limit of {max_pixels / 1e6:.1f} MP")


def _pil_to_float(im: PILImage.Image) -> tuple[np.ndarray, int]:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im).astype(np.float32) / 65535.0
        return a[..., None], 16
    if mode == "I":
        a = np.asarray(im).astype(np.float32)
        return np.clip(a / 65535.0, 0, 1)[..., None], 16
    if mode == "F":
        return np.asarray(im, dtype=np.float32)[..., None].copy(), 32
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
    elif mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV":
        im = im.convert("RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("RGBa", "RGBX"):
        im = im.convert("RGBA" if mode == "RGBa" else "RGB")
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    return a.astype(np.float32) / 255.0, 8


def _load_high_depth(path: Path, kind: str, header: _Header) -> Image:
    """16-bit colour / gray+alpha and float colour files, which Pillow cannot decode."""
    import cv2

    if header.channels == 2 and kind == "TIFF":
        try:
            a = _read_tiff_strips(path)
        except (OSError, zlib.error, ValueError):
            raise InputError(f"{path.name} is corrupt or truncated") from None
        pixels, bits = (a.astype(np.float32), 32) if a.dtype.kind == "f" else (a / np.float32(65535), 16)
        return _upright(_with_metadata(path, pixels, bits), header.orientation)
    data = np.fromfile(path, dtype=np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise InputError(f"{path.name} is corrupt or truncated")
    a = decoded
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == 3:
        a = a[..., ::-1]
    elif a.shape[2] == 4:
        a = a[..., [2, 1, 0, 3]]
    if header.channels == 2 and a.shape[2] == 4:  # OpenCV expands gray+alpha to BGRA
        a = a[..., [0, 3]]
    if a.dtype == np.uint16:
        pixels, bits = a.astype(np.float32) / 65535.0, 16
    elif a.dtype == np.uint8:
        pixels, bits = a.astype(np.float32) / 255.0, 8
    else:
        pixels, bits = a.astype(np.float32), 32
    if pixels.shape[2] != header.channels or (bits != header.bits and not header.is_float):
        raise InputError(f"{path.name}: cannot decode this {header.bits}-bit "
                         f"{header.channels}-channel file faithfully")
    # OpenCV turns a TIFF by its orientation tag itself; a PNG's eXIf orientation is left to us
    return _upright(_with_metadata(path, pixels, bits))


def _with_metadata(path: Path, pixels: np.ndarray, bits: int) -> Image:
    icc = exif = None
    try:  # Pillow still reads the metadata of files whose pixels it cannot decode
        with PILImage.open(path) as im:
            icc = im.info.get("icc_profile") or None
            exif = im.info.get("exif") or None
    except (OSError, ValueError, SyntaxError):
        pass
    if icc is None and _sniff(path)[0] == "TIFF" and (parsed := _tiff_tags(path)) is not None:
        icc = bytes(parsed[1].get(34675, [])) or None
    return Image(np.ascontiguousarray(pixels), bits, icc, exif)


# ---------------------------------------------------------------- saving
def stored_bit_depth(path: str | os.PathLike, bits: int) -> int:
    """The bit depth a file named `path` keeps of a `bits`-bit image: JPEG and WebP hold 8 bits,
    PNG 16, TIFF all (float too). Editors ask this before saving, to warn about the loss."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt in ("JPEG", "WEBP"):
        return 8
    if fmt == "PNG":
        return min(bits, 16)
    return bits


def save_image(image: Image, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write `image` to `path` (format from the suffix) atomically; returns the path.

    The bit depth is kept where the format allows it: 16-bit for PNG/TIFF, float32 for TIFF;
    JPEG and WebP are 8-bit. JPEG cannot hold alpha, so an image with alpha is refused there
    rather than flattened.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot save {path.name}: unknown extension "
                         f"(use one of {', '.join(sorted(FORMATS))})")
    if fmt == "JPEG" and image.has_alpha:
        raise InputError(f"cannot save {path.name}: JPEG has no alpha channel; use PNG, TIFF or WebP")
    if not path.parent.is_dir():
        raise InputError(f"cannot save {path.name}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"cannot save {path}: it is a folder; name an image file")
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as out:
            _write_encoded(image, fmt, stored_bit_depth(path, image.bit_depth), quality, out)
    except OSError as exc:  # disk full, permissions, a vanished folder: the user can act on these
        raise InputError(f"cannot save {path.name}: {exc.strerror or exc}") from None
    return path


def _quantise(pixels: np.ndarray, bits: int) -> np.ndarray:
    target = {8: np.uint8, 16: np.uint16}.get(bits)
    if pixels.dtype == target:
        return pixels
    if pixels.dtype in (np.uint8, np.uint16):  # integer samples at another depth
        pixels = pixels.astype(np.float32) / np.iinfo(pixels.dtype).max
    if bits == 32:
        return pixels.astype(np.float32)
    top = 255 if bits == 8 else 65535
    return (np.clip(pixels, 0, 1) * top + 0.5).astype(np.uint8 if bits == 8 else np.uint16)


def _write_encoded(image: Image, fmt: str, bits: int, quality: int, out: BinaryIO) -> None:
    """Encodes `image` into the open file `out`, with no whole-image copy beyond the samples
    (an 8000x8000 result: 192 MB of samples, which Pillow would copy into 256 MB first)."""
    a = _quantise(image.pixels, bits)
    c = a.shape[2]
    if fmt == "PNG" and bits in (8, 16):
        _write_png(a, image.icc, image.exif, out)
        return
    if (bits == 16 and c >= 2) or (bits == 32 and c > 1):  # TIFF modes Pillow lacks
        out.write(_encode_tiff(a, image.icc))
        return
    # Pillow infers the mode: uint16 2-D -> I;16, float32 2-D -> F, uint8 -> L/LA/RGB/RGBA.
    im = PILImage.fromarray(np.ascontiguousarray(a if c > 1 else a[..., 0]))
    options: dict = {}
    if image.icc:
        options["icc_profile"] = image.icc
    if image.exif:
        options["exif"] = image.exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=quality, exact=True)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    try:
        im.save(out, format=fmt, **options)
    except ValueError as exc:
        raise InputError(f"cannot encode the image as {fmt}: {exc}") from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # the disk, not the image: save_image says so
        raise InputError(f"cannot encode the image as {fmt}: {exc}") from None


PNG_STRIP_ROWS = 128
"""Rows filtered and compressed at a time by `_write_png`: a few MB even for 8000 px wide images."""


def _write_png(a: np.ndarray, icc: bytes | None, exif: bytes | None, out: BinaryIO) -> None:
    """8/16-bit PNG (gray, gray+alpha, RGB, RGBA; iCCP and eXIf chunks), written strip by strip
    with the "Sub" filter: memory stays at the samples plus one strip. Pillow has no 16-bit
    colour mode, and for 8-bit it first copies the whole image into its own layout."""
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    bpp = c * depth // 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    out.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
              + _png_metadata(icc, exif))
    compressor = zlib.compressobj(6)
    for top in range(0, h, PNG_STRIP_ROWS):
        strip = a[top:top + PNG_STRIP_ROWS]
        raw = np.ascontiguousarray(strip.astype(">u2") if depth == 16 else strip).view(np.uint8)
        raw = raw.reshape(len(strip), w * bpp)
        scanlines = np.empty((len(strip), 1 + w * bpp), np.uint8)
        scanlines[:, 0] = 1  # filter type Sub: each byte minus the one a pixel before, modulo 256
        scanlines[:, 1:1 + bpp] = raw[:, :bpp]
        np.subtract(raw[:, bpp:], raw[:, :-bpp], out=scanlines[:, 1 + bpp:])
        data = compressor.compress(scanlines.tobytes())
        if data:
            out.write(_png_chunk(b"IDAT", data))
    out.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))


def _encode_tiff(a: np.ndarray, icc: bytes | None) -> bytes:
    """A baseline little-endian TIFF, one deflate-compressed strip, interleaved samples."""
    h, w, c = a.shape
    is_float = a.dtype == np.float32
    bits = 32 if is_float else 16
    data = zlib.compress(np.ascontiguousarray(a.astype("<f4" if is_float else "<u2")).tobytes(), 6)
    entries: list[tuple[int, int, list[int] | bytes]] = [  # (tag, type, values) with type 3 = SHORT, 4 = LONG, 7 = UNDEFINED
        (256, 4, [w]), (257, 4, [h]), (258, 3, [bits] * c), (259, 3, [8]),
        (262, 3, [1 if c <= 2 else 2]), (273, 4, [0]), (277, 3, [c]), (278, 4, [h]),
        (279, 4, [len(data)]), (284, 3, [1]),
    ]
    if c in (2, 4):
        entries.append((338, 3, [2]))  # the last sample is unassociated alpha
    entries.append((339, 3, [3 if is_float else 1] * c))
    if icc:
        entries.append((34675, 7, icc))
    ifd_size = 2 + 12 * len(entries) + 4
    extra = bytearray()
    extra_at = 8 + ifd_size
    fields = []
    for tag, typ, values in entries:
        payload = (bytes(values) if typ == 7
                   else struct.pack(f"<{len(values)}{'H' if typ == 3 else 'I'}", *values))
        fields.append((tag, typ, len(values), payload))
        if len(payload) > 4:
            extra += payload + b"\0" * (len(payload) % 2)
    strip_at = extra_at + len(extra)
    ifd = bytearray(struct.pack("<H", len(fields)))
    cursor = extra_at
    for tag, typ, count, payload in fields:
        if tag == 273:
            payload = struct.pack("<I", strip_at)
        if len(payload) > 4:
            ifd += struct.pack("<HHII", tag, typ, count, cursor)
            cursor += len(payload) + len(payload) % 2
        else:
            ifd += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd) + bytes(extra) + data


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_metadata(icc: bytes | None, exif: bytes | None) -> bytes:
    """The iCCP and eXIf chunks, which go right after IHDR."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        extra += _png_chunk(b"eXIf", body)
    return extra


# ---------------------------------------------------------------- raw interchange
# raw sample type -> (numpy dtype, bit depth of the Image it becomes: 32 = float)
_DTYPES = {"u8": ("<u1", 8), "u16": ("<u2", 16), "f16": ("<f2", 32), "f32": ("<f4", 32)}
_HALF_MAX = 65504.0
_BITS_TO_DTYPE = {8: "u8", 16: "u16", 32: "f32"}


def from_raw(raw: RawImage) -> Image:
    dtype, bits = _DTYPES[raw.dtype]
    a = np.frombuffer(raw.data, dtype=dtype).reshape(raw.height, raw.width, raw.channels)
    if bits == 32:
        pixels = a.astype(np.float32)
    else:
        pixels = a.astype(np.float32) / (255.0 if bits == 8 else 65535.0)
    return Image(pixels, bits)


def to_raw(image: Image, dtype: str | None = None) -> RawImage:
    """`dtype` defaults to the image's own bit depth (u8, u16 or f32); f16 is what Krita's
    half-float layers hold, so the plug-in passes their bytes through unconverted."""
    dtype = dtype or _BITS_TO_DTYPE[image.bit_depth]
    a = _quantise(image.pixels, _DTYPES[dtype][1])
    if dtype == "f16":
        a = np.clip(a, -_HALF_MAX, _HALF_MAX)
    a = a.astype(_DTYPES[dtype][0])
    return RawImage(image.width, image.height, image.channels, dtype, a.tobytes())
