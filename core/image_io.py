"""Image files and raw buffers <-> `Image` (float32 0..1, H×W×C, with bit depth, ICC and EXIF).

Pillow reads and writes PNG, JPEG, TIFF and WebP. Pillow (13.0 here) has no 16-bit RGB(A) or
float RGB mode: it silently truncates 16-bit RGB PNG/TIFF to 8 bits and cannot open float RGB
TIFFs. Those files go through OpenCV (opencv-python-headless) instead; the file header is parsed
here first, so the route and the pixel limit are decided before any pixel is decoded.
Writes are atomic: a temporary file in the target folder, renamed over the target when complete.
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from core.errors import InputError
from plugin.raw_image import RawImage

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest input accepted by default (width × height), checked from the header before decoding."""

PILImage.MAX_IMAGE_PIXELS = None  # the limit is ours (max_pixels), applied before decoding

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}
ORDER_CHANNELS = {"G": 1, "GA": 2, "RGB": 3, "RGBA": 4}


@dataclass
class Image:
    """Pixels as float32 H×W×C in 0..1 (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) plus what to keep."""

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

    def color(self) -> np.ndarray:
        """The colour channels as H×W×3 RGB (gray is repeated)."""
        c = self.pixels[..., :1] if self.channels <= 2 else self.pixels[..., :3]
        return np.repeat(c, 3, axis=2) if c.shape[2] == 1 else c

    def alpha(self) -> np.ndarray | None:
        return self.pixels[..., -1:] if self.has_alpha else None


# ---------------------------------------------------------------- header sniffing
@dataclass
class _Header:
    width: int
    height: int
    bits: int
    channels: int
    is_float: bool


def _png_header(head: bytes) -> _Header | None:
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height, bits, color_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 3)
    return _Header(width, height, bits, channels, False)


def _tiff_header(path: Path) -> _Header | None:
    """Width, height, bits, samples and sample format from the first IFD of a classic TIFF."""
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
            tags = {}
            for _ in range(count):
                tag, typ, n, value = struct.unpack(e + "HHI4s", f.read(12))
                if typ == 3:  # SHORT: first value is in the first two bytes
                    tags[tag] = struct.unpack(e + "H", value[:2])[0]
                elif typ == 4:
                    tags[tag] = struct.unpack(e + "I", value)[0]
        except struct.error:
            return None
    if 256 not in tags or 257 not in tags:
        return None
    bits = tags.get(258, 1)
    if tags.get(277, 1) > 2 and 258 in tags:
        # BitsPerSample has one value per sample, stored at an offset: they are all equal here
        with open(path, "rb") as f:
            f.seek(tags[258])
            bits = struct.unpack(e + "H", f.read(2))[0]
    return _Header(tags[256], tags[257], bits, tags.get(277, 1), tags.get(339, 1) == 3)


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
    if header is not None:
        _check_size(path, header.width, header.height, max_pixels)
        if (header.channels >= 2 and header.bits == 16) or (header.is_float and header.channels > 1):
            return _load_with_opencv(path, header)
    try:
        with PILImage.open(path) as im:
            _check_size(path, im.width, im.height, max_pixels)
            icc = im.info.get("icc_profile") or None
            exif = im.info.get("exif") or None
            if exif is None and hasattr(im, "getexif") and len(im.getexif()):
                exif = im.getexif().tobytes()
            im.load()
            pixels, bits = _pil_to_float(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path.name} is not an image file this program can read "
                         "(PNG, JPEG, TIFF or WebP)") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
        raise InputError(f"{path.name} is corrupt or truncated ({exc})") from None
    return Image(pixels, bits, icc, exif)


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


def _load_with_opencv(path: Path, header: _Header) -> Image:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    a = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise InputError(f"{path.name} is corrupt or truncated")
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
    icc = exif = None
    try:  # Pillow still reads the metadata of files whose pixels it cannot decode
        with PILImage.open(path) as im:
            icc = im.info.get("icc_profile") or None
            exif = im.info.get("exif") or None
    except (OSError, ValueError, SyntaxError):
        pass
    return Image(np.ascontiguousarray(pixels), bits, icc, exif)


# ---------------------------------------------------------------- saving
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
    bits = image.bit_depth
    if fmt in ("JPEG", "WEBP"):
        bits = 8
    elif fmt == "PNG" and bits == 32:
        bits = 16
    payload = _encode(image, fmt, bits, quality)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _quantise(pixels: np.ndarray, bits: int) -> np.ndarray:
    if bits == 32:
        return pixels.astype(np.float32)
    top = 255 if bits == 8 else 65535
    return (np.clip(pixels, 0, 1) * top + 0.5).astype(np.uint8 if bits == 8 else np.uint16)


def _encode(image: Image, fmt: str, bits: int, quality: int) -> bytes:
    a = _quantise(image.pixels, bits)
    c = a.shape[2]
    if (bits == 16 and c >= 2) or (bits == 32 and c > 1):
        return _encode_with_opencv(a, fmt, image)
    if bits == 16:
        im = PILImage.fromarray(a[..., 0].astype("<u2"), mode="I;16")
    elif bits == 32:
        im = PILImage.fromarray(a[..., 0], mode="F")
    else:
        im = PILImage.fromarray(a if c > 1 else a[..., 0], mode={1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c])
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
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **options)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot encode the image as {fmt}: {exc}") from None
    return buf.getvalue()


def _encode_with_opencv(a: np.ndarray, fmt: str, image: Image) -> bytes:
    """16-bit colour / gray+alpha and float colour: OpenCV writes them, Pillow cannot."""
    import cv2

    if a.shape[2] == 2:  # OpenCV has no gray+alpha: store it as RGBA
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:]], axis=2)
    a = a[..., [2, 1, 0, 3]] if a.shape[2] == 4 else a[..., ::-1]
    ok, data = cv2.imencode(".png" if fmt == "PNG" else ".tif", np.ascontiguousarray(a))
    if not ok:
        raise InputError(f"cannot encode the image as {fmt}")
    data = data.tobytes()
    if fmt == "PNG":
        data = _png_add_metadata(data, image.icc, image.exif)
    return data


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_add_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (OpenCV writes neither)."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        extra += _png_chunk(b"eXIf", body)
    end_of_ihdr = 8 + 8 + 13 + 4
    return png[:end_of_ihdr] + extra + png[end_of_ihdr:]


# ---------------------------------------------------------------- raw interchange
_DTYPES = {"u8": ("<u1", 8), "u16": ("<u2", 16), "f32": ("<f4", 32)}
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
    """`dtype` defaults to the image's own bit depth (u8, u16 or f32)."""
    dtype = dtype or _BITS_TO_DTYPE[image.bit_depth]
    a = _quantise(image.pixels, _DTYPES[dtype][1]).astype(_DTYPES[dtype][0])
    return RawImage(image.width, image.height, image.channels, dtype, a.tobytes())


def from_buffer(payload: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Parse the raw interchange format (see docs/internals.md); errors are `InputError`s."""
    try:
        raw = RawImage.from_bytes(payload)
    except ValueError as exc:
        raise InputError(f"bad raw image: {exc}") from None
    if raw.width * raw.height > max_pixels:
        raise InputError(f"image is {raw.width}x{raw.height}, above the limit of "
                         f"{max_pixels / 1e6:.1f} MP")
    return from_raw(raw)


def to_buffer(image: Image, dtype: str | None = None) -> bytes:
    return to_raw(image, dtype).to_bytes()
