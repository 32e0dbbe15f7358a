"""Run a ×s network over an image in overlapping tiles and blend them back without seams.

Tiles sit on a regular grid whose neighbours overlap by at least `overlap` input pixels. Each
tile's output is weighted by a separable feather that is 1 inside the tile, and inside each
overlap ramps (smoothly, over the middle half of the overlap) from 0 at the edge to 1; the two
ramps of neighbouring tiles sum to exactly 1. The weights therefore form a partition of unity,
no image-sized weight map is needed, and the pixels nearest a tile border (the ones a
zero-padded convolution gets wrong) carry no weight. Tiles run row by row: the output rows no
later tile touches are handed to `write` as soon as their row of tiles is done, so with a writer
the float buffers are bounded by one row of tiles and only the caller's result (e.g. uint8) is
the size of the image; without one they go into a float32 canvas that is returned.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from core.archs.spec import MIN_TILE
from core.errors import Cancelled, InputError

TileFn = Callable[[np.ndarray], np.ndarray]
RowWriter = Callable[[int, np.ndarray], None]
"""write(first output row, 1×C×h×sW float32 finished rows), called top to bottom; the array is
only valid during the call."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length) with neighbours overlapping >= `overlap`."""
    if tile <= 0 or length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    return [round(i * last / (count - 1)) for i in range(count)]


def _ramp(n: int) -> np.ndarray:
    """Rising weights over an overlap of n samples: 0 over the first quarter, a smoothstep over
    the middle half, 1 over the last quarter. `1 - ramp` is the falling side."""
    x = (np.arange(n, dtype=np.float64) + 0.5) / n
    t = np.clip((x - 0.25) / 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _axis_weights(starts: list[int], tile: int, length: int, scale: int) -> list[np.ndarray]:
    """1-D output-resolution weights of each tile along one axis (they sum to 1 everywhere)."""
    weights = []
    for i, start in enumerate(starts):
        end = min(start + tile, length) if len(starts) > 1 else length
        w = np.ones((end - start) * scale, dtype=np.float64)
        if i > 0:
            prev_end = starts[i - 1] + tile
            n = (prev_end - start) * scale
            w[:n] *= _ramp(n)
        if i < len(starts) - 1:
            n = (end - starts[i + 1]) * scale
            w[len(w) - n:] *= 1.0 - _ramp(n)
        weights.append(w)
    # The rising and falling ramps of two neighbours sum to 1; where three tiles meet (short
    # axes with a large overlap) dividing by the 1-D sum restores the partition of unity.
    total = np.zeros(length * scale)
    for start, w in zip(starts, weights):
        total[start * scale:start * scale + len(w)] += w
    return [(w / total[s * scale:s * scale + len(w)]).astype(np.float32)
            for s, w in zip(starts, weights)]


def tiled_upscale(
    fn: TileFn,
    rgb_nchw: np.ndarray,
    scale: int,
    tile: int = 256,
    overlap: int = 16,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    write: RowWriter | None = None,
) -> np.ndarray | None:
    """Apply `fn` (1×C×h×w -> 1×C'×(h·scale)×(w·scale)) to `rgb_nchw` tile by tile.

    `tile` is the tile side in input pixels (0 = the whole image in one call), `overlap` the
    minimum overlap between neighbours. `progress(done, total)` is called before the first tile
    (done = 0) and after every tile, so a caller can name the tile under way; `cancel()` is polled
    before every tile and stops the job with `Cancelled`. With `write`, finished rows go there and
    None is returned; without it, the 1×C'×sH×sW canvas is returned.
    """
    if rgb_nchw.ndim != 4 or rgb_nchw.shape[0] != 1:
        raise InputError(f"tiling expects a 1×C×H×W array, got shape {rgb_nchw.shape}")
    _, _, height, width = rgb_nchw.shape
    if tile < 0:
        raise InputError(f"tile size must be 0 (no tiling) or positive, got {tile}")
    if tile and tile < MIN_TILE:
        raise InputError(f"tile size {tile} is too small (at least {MIN_TILE} pixels)")
    if write is None:
        canvas: list[np.ndarray] = []

        def into_canvas(y: int, rows: np.ndarray) -> None:
            if not canvas:
                canvas.append(np.empty((1, rows.shape[1], height * scale, width * scale), np.float32))
            canvas[0][:, :, y:y + rows.shape[2]] = rows

        tiled_upscale(fn, rgb_nchw, scale, tile, overlap, progress, cancel, into_canvas)
        return canvas[0]
    if tile == 0 or (height <= tile and width <= tile):
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is not None:
            progress(0, 1)
        write(0, _checked(fn(rgb_nchw), rgb_nchw.shape, scale))
        if progress is not None:
            progress(1, 1)
        return None
    overlap = max(0, min(overlap, tile // 2 - 1))
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    wy = _axis_weights(ys, tile, height, scale)
    wx = _axis_weights(xs, tile, width, scale)
    pending: np.ndarray | None = None  # rows of earlier tile rows that this row still adds to
    total, done = len(ys) * len(xs), 0
    if progress is not None:
        progress(0, total)
    for iy, y in enumerate(ys):
        top, bottom = y * scale, min(y + tile, height) * scale
        band: np.ndarray | None = None
        for ix, x in enumerate(xs):
            if cancel is not None and cancel():
                raise Cancelled()
            piece = rgb_nchw[:, :, y:y + tile, x:x + tile]
            out = _checked(fn(np.ascontiguousarray(piece)), piece.shape, scale)
            if band is None:
                band = np.zeros((1, out.shape[1], bottom - top, width * scale), np.float32)
                if pending is not None:
                    band[:, :, :pending.shape[2]] = pending
            weight = wy[iy][:, None] * wx[ix][None, :]
            oy, ox = y * scale - top, x * scale
            band[:, :, oy:oy + out.shape[2], ox:ox + out.shape[3]] += out * weight
            done += 1
            if progress is not None:
                progress(done, total)
        assert band is not None
        final = (ys[iy + 1] if iy + 1 < len(ys) else height) * scale
        write(top, band[:, :, :final - top])
        pending = band[:, :, final - top:]
    return None


def _checked(out: np.ndarray, in_shape: tuple, scale: int) -> np.ndarray:
    expected = (in_shape[2] * scale, in_shape[3] * scale)
    if out.ndim != 4 or tuple(out.shape[2:]) != expected:
        raise InputError(f"the network returned shape {tuple(out.shape)} for a tile of "
                         f"{tuple(in_shape)}, expected spatial size {expected}")
    return out.astype(np.float32, copy=False)
