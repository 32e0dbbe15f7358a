"""Krita pixel bytes <-> the host-neutral RawImage, with the standard library only.

Measured on Krita 5.1.5 (docs/krita.md, "Host facts"): U8 and U16 layers are B,G,R,A; F16 and F32 are
R,G,B,A; gray layers are gray, alpha. F16 bytes travel as they are (the engine reads half floats
with numpy; converting them here in pure Python took 0.34 s per million samples, longer than the
model on a 1 MP layer). High-depth documents default to a linear-light profile;
those pixels travel marked `"transfer": "linear"` so the engine encodes them for the model and
linearises the result again.
"""
from __future__ import annotations

import struct
import sys
from array import array

from protocol.raw_image import LinearRawImage, RawImage

SUPPORTED_MODELS = {"RGBA": 4, "GRAYA": 2}
SUPPORTED_DEPTHS = ("U8", "U16", "F16", "F32")
RAW_DTYPE = {"U8": "u8", "U16": "u16", "F16": "f16", "F32": "f32"}
SAMPLE_BYTES = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
_HALF_CHUNK = 1 << 16


class UnsupportedLayer(Exception):
    """The layer's colour model or depth cannot be upscaled; the message says what to do."""


def is_linear_profile(profile: str) -> bool:
    """Krita's linear profiles carry 'g10' (gamma 1.0) or 'linear' in their names."""
    name = (profile or "").lower()
    return "g10" in name or "linear" in name


def check_format(model: str, depth: str) -> None:
    if model not in SUPPORTED_MODELS:
        raise UnsupportedLayer(
            f"Blind Upscale works on RGB and gray layers; this layer is {model}. "
            "Convert it with Image > Convert Image Color Space (RGB/Alpha) first.")
    if depth not in SUPPORTED_DEPTHS:
        raise UnsupportedLayer(f"Blind Upscale cannot read {depth} layers (U8, U16, F16 and F32 work).")


def _swap_red_blue(samples):
    """B,G,R,A <-> R,G,B,A on a flat sequence of samples (bytearray or array)."""
    out = array(samples.typecode, samples) if isinstance(samples, array) else bytearray(samples)
    out[0::4] = samples[2::4]
    out[2::4] = samples[0::4]
    return out


def _little_endian(values: array) -> array:
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values


def _scaled_half_alpha(alpha: array, coverage: bytes) -> array:
    """Half-float alpha bit patterns (array "H", native order) times coverage/255, in chunks."""
    out = array("H")
    for start in range(0, len(alpha), _HALF_CHUNK):
        chunk = alpha[start:start + _HALF_CHUNK]
        values = struct.unpack(f"={len(chunk)}e", chunk.tobytes())
        scaled = (a * c / 255.0 for a, c in zip(values, coverage[start:start + _HALF_CHUNK]))
        out.frombytes(struct.pack(f"={len(chunk)}e", *scaled))
    return out


def with_coverage(image: RawImage, coverage: bytes) -> RawImage:
    """The image with its alpha multiplied by a selection coverage (one byte per pixel, 0..255).

    Krita 5.1's libkis cannot fill a transparency mask (setPixelData on one is a no-op, measured),
    so a soft selection shapes the result layer's own alpha instead.
    """
    if image.channels not in (2, 4):
        raise ValueError("the result has no alpha channel to apply the selection to")
    if len(coverage) != image.width * image.height:
        raise ValueError("the selection mask does not match the result's size")
    step = image.channels
    if image.dtype == "u8":
        out = bytearray(image.data)
        out[step - 1::step] = bytes((a * c + 127) // 255 for a, c in zip(out[step - 1::step], coverage))
        return type(image)(image.width, image.height, image.channels, image.dtype, bytes(out))
    values = array("f" if image.dtype == "f32" else "H")
    values.frombytes(image.data)
    values = _little_endian(values)
    alpha = values[step - 1::step]
    if image.dtype == "u16":
        scaled = array("H", ((a * c + 127) // 255 for a, c in zip(alpha, coverage)))
    elif image.dtype == "f16":
        scaled = _scaled_half_alpha(alpha, coverage)
    else:
        scaled = array("f", (a * c / 255.0 for a, c in zip(alpha, coverage)))
    values[step - 1::step] = scaled
    return type(image)(image.width, image.height, image.channels, image.dtype, _little_endian(values).tobytes())


def krita_to_raw(data: bytes, width: int, height: int, model: str, depth: str, profile: str = "") -> RawImage:
    """Bytes from `Node.pixelData` -> RawImage (RGBA or GA; F16 widened to f32)."""
    check_format(model, depth)
    channels = SUPPORTED_MODELS[model]
    data = bytes(data)
    if depth == "U8":
        samples = _swap_red_blue(data) if channels == 4 else data
        payload = bytes(samples)
    elif depth == "U16":
        values = array("H")
        values.frombytes(data)
        if channels == 4:
            values = _swap_red_blue(values)
        payload = _little_endian(values).tobytes()
    else:  # F16 and F32: RGBA already, little-endian on every platform Krita runs on
        payload = data
    kind = LinearRawImage if is_linear_profile(profile) else RawImage
    return kind(width, height, channels, RAW_DTYPE[depth], payload)


def raw_to_krita(image: RawImage, model: str, depth: str) -> bytes:
    """RawImage from the engine (same dtype and channels as sent) -> bytes for `setPixelData`."""
    check_format(model, depth)
    channels = SUPPORTED_MODELS[model]
    if image.channels != channels or image.dtype != RAW_DTYPE[depth]:
        raise ValueError(f"the engine returned {image.channels} channels of {image.dtype}, "
                         f"expected {channels} of {RAW_DTYPE[depth]}")
    if depth == "U8":
        return bytes(_swap_red_blue(image.data)) if channels == 4 else image.data
    if depth == "U16":
        values = array("H")
        values.frombytes(image.data)
        values = _little_endian(values)
        return (_swap_red_blue(values) if channels == 4 else values).tobytes()
    return image.data
