"""Raw pixel interchange between hosts and the engine: a JSON header line, then the samples.

Standard library only, so Krita's embedded Python (no numpy) can build and read it.
See docs/internals.md, "Raw image interchange".
"""
from __future__ import annotations

import json
from dataclasses import dataclass

SAMPLE_SIZE = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
ORDERS = {1: "G", 2: "GA", 3: "RGB", 4: "RGBA"}


@dataclass
class RawImage:
    width: int
    height: int
    channels: int
    dtype: str  # "u8" | "u16" | "f16" | "f32", little-endian
    data: bytes

    def __post_init__(self) -> None:
        if self.dtype not in SAMPLE_SIZE:
            raise ValueError(f"unknown sample type {self.dtype!r} (expected u8, u16, f16 or f32)")
        if self.channels not in ORDERS:
            raise ValueError(f"unsupported channel count {self.channels} (expected 1 to 4)")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"empty image ({self.width}x{self.height})")
        expected = self.width * self.height * self.channels * SAMPLE_SIZE[self.dtype]
        if len(self.data) != expected:
            raise ValueError(
                f"pixel data is {len(self.data)} bytes, expected {expected} for "
                f"{self.width}x{self.height}x{self.channels} {self.dtype}"
            )

    @property
    def order(self) -> str:
        return ORDERS[self.channels]

    def header(self) -> dict:
        return {"width": self.width, "height": self.height, "channels": self.channels,
                "dtype": self.dtype, "order": self.order}

    def to_bytes(self) -> bytes:
        return json.dumps(self.header()).encode("ascii") + b"\n" + self.data

    @classmethod
    def from_bytes(cls, payload: bytes, max_header: int = 4096) -> RawImage:
        end = payload.find(b"\n", 0, max_header)
        if end < 0:
            raise ValueError("raw image has no header line")
        try:
            head = json.loads(payload[:end].decode("ascii"))
            return cls(int(head["width"]), int(head["height"]), int(head["channels"]),
                       str(head["dtype"]), payload[end + 1:])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed raw image header: {exc}") from None


class LinearRawImage(RawImage):
    """A RawImage whose samples are linear light; its header says so (`"transfer": "linear"`), and
    the engine encodes them to sRGB for the model and linearises the result again."""

    def header(self) -> dict:
        return {**super().header(), "transfer": "linear"}
