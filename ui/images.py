"""RawImage -> QImage for display, and crops, with the standard library only (no numpy in hosts).

Display is 8-bit: 16-bit samples keep their high byte, floats are clipped to 0..1. The exact
samples stay in the RawImage; these QImages only paint.
"""
from __future__ import annotations

import array
import sys

from protocol.raw_image import RawImage
from ui.qt import QImage, Qt


def to_u8(raw: RawImage) -> bytes:
    """The samples of `raw` as 8-bit values, same channel layout."""
    if raw.dtype == "u8":
        return raw.data
    if raw.dtype == "u16":
        return raw.data[1::2]  # little-endian: the high byte of each sample comes second
    floats = array.array("f")
    floats.frombytes(raw.data)
    if sys.byteorder != "little":
        floats.byteswap()
    return bytes(0 if v <= 0.0 else 255 if v >= 1.0 else int(v * 255.0 + 0.5) for v in floats)


def _float_qimage(raw: RawImage) -> QImage | None:
    """Float samples through Qt's own RGBA32FPx4 conversion (Qt 6.2+), which clips and rounds in
    C++; None when this Qt lacks the format."""
    fmt = getattr(QImage.Format, "Format_RGBA32FPx4", None)
    if fmt is None:
        return None
    source = array.array("f")
    source.frombytes(raw.data)
    if sys.byteorder != "little":
        source.byteswap()
    c, n = raw.channels, raw.width * raw.height
    rgba = array.array("f", bytes(4 * 4 * n))
    colour = source[0::c] if c <= 2 else None
    for k in range(3):
        rgba[k::4] = colour if colour is not None else source[k::c]
    rgba[3::4] = source[c - 1::c] if c in (2, 4) else array.array("f", [1.0]) * n
    image = QImage(rgba.tobytes(), raw.width, raw.height, raw.width * 16, fmt)
    return image.convertToFormat(QImage.Format.Format_RGBA8888)


def to_qimage(raw: RawImage) -> QImage:
    """A QImage that owns a copy of `raw`'s pixels, RGBA8888 (or RGB888 / Grayscale8)."""
    if raw.dtype == "f32":
        converted = _float_qimage(raw)
        if converted is not None:
            return converted
    samples = to_u8(raw)
    w, h, c = raw.width, raw.height, raw.channels
    if c == 2:
        rgba = bytearray(w * h * 4)
        gray, alpha = samples[0::2], samples[1::2]
        rgba[0::4], rgba[1::4], rgba[2::4], rgba[3::4] = gray, gray, gray, alpha
        samples, c = bytes(rgba), 4
    fmt = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888,
           4: QImage.Format.Format_RGBA8888}[c]
    return QImage(samples, w, h, w * c, fmt).copy()


def crop(raw: RawImage, x: int, y: int, w: int, h: int) -> RawImage:
    """Rows and columns [y, y+h) x [x, x+w) of `raw`."""
    pixel = raw.channels * {"u8": 1, "u16": 2, "f32": 4}[raw.dtype]
    stride = raw.width * pixel
    rows = (raw.data[(y + r) * stride + x * pixel:(y + r) * stride + (x + w) * pixel] for r in range(h))
    return RawImage(w, h, raw.channels, raw.dtype, b"".join(rows))


def qimage_bytes(image: QImage) -> bytes:
    """The bytes of `image` as Qt holds them (rows `bytesPerLine()` apart)."""
    bits = image.constBits()
    bits.setsize(image.sizeInBytes() if hasattr(image, "sizeInBytes") else image.byteCount())
    return bytes(bits)


def scale_mask(mask: bytes, width: int, height: int, scale: int) -> bytes:
    """A selection coverage mask (1 byte per pixel) enlarged smoothly, by Qt, to the result's size."""
    small = QImage(mask, width, height, width, QImage.Format.Format_Grayscale8).copy()
    big = small.scaled(width * scale, height * scale, Qt.AspectRatioMode.IgnoreAspectRatio,
                       Qt.TransformationMode.SmoothTransformation)
    data, stride, row = qimage_bytes(big), big.bytesPerLine(), width * scale
    if stride == row:
        return data[:row * height * scale]
    return b"".join(data[y * stride:y * stride + row] for y in range(height * scale))
