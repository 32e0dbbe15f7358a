"""Self-ensemble (geometric test-time augmentation, as in EDSR's "+" models): a tile is upscaled
in all 8 orientations of the square (4 rotations, each also mirrored), every result is turned
back, and the 8 are averaged. A net's errors differ between orientations while the image does
not, so the average is closer to the truth, at 8 times the work. The global step (degradation
estimate, support set, faces) is not repeated: it describes the whole photo, whatever the
orientation of a tile."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

TileFunction = Callable[[np.ndarray], np.ndarray]

ORIENTATIONS = tuple((turns, mirror) for mirror in (False, True) for turns in range(4))
"""(quarter turns, mirrored first): the 8 symmetries of the square."""


def orient(nchw: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    x = nchw[..., ::-1] if mirror else nchw
    return np.ascontiguousarray(np.rot90(x, turns, axes=(2, 3)))


def unorient(nchw: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    x = np.rot90(nchw, -turns, axes=(2, 3))
    return x[..., ::-1] if mirror else x


def self_ensemble(run_tile: TileFunction) -> TileFunction:
    """`run_tile` (1x3xhxw -> 1x3x(h*s)x(w*s)) averaged over the 8 orientations of its input."""

    def averaged(tile: np.ndarray) -> np.ndarray:
        total: np.ndarray | None = None
        for turns, mirror in ORIENTATIONS:
            out = unorient(run_tile(orient(tile, turns, mirror)), turns, mirror)
            if total is None:
                total = out.astype(np.float32, copy=True)
            else:
                total += out
        assert total is not None  # ORIENTATIONS has 8 entries
        total /= len(ORIENTATIONS)
        return total

    return averaged
