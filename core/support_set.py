"""CMDSR's support set at inference: `count` LR patches of `size` x `size` that share the image's
degradation, drawn deterministically from a region (the user's selection, or the whole image).

How they are drawn: candidate windows lie on a grid with a stride of half a patch over the region;
each is scored by its gradient energy (mean squared finite differences), and the `count` most
textured windows are taken, since flat patches say little about blur. When the region holds fewer
windows than `count`, the remaining patches are drawn at seeded random positions (repeats allowed).
A region smaller than a patch is reflect-padded up to the patch size; a region thinner than
2 pixels is an error.
"""

import numpy as np

from core.errors import InputError

SUPPORT_SIZE = 20
PATCH_SIZE = 32


def _region_pixels(rgb: np.ndarray, region) -> np.ndarray:
    h, w = rgb.shape[:2]
    if region is None:
        return rgb
    x, y, rw, rh = (int(v) for v in region)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + rw, w), min(y + rh, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InputError(f"the support region {x},{y},{rw},{rh} holds fewer than 2x2 pixels of "
                         f"the {w}x{h} image")
    return rgb[y0:y1, x0:x1]


def _pad_to(pixels: np.ndarray, size: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    while pad_h or pad_w:
        # numpy's reflect pad is limited to the image size minus one per call
        step_h, step_w = min(pad_h, pixels.shape[0] - 1), min(pad_w, pixels.shape[1] - 1)
        pixels = np.pad(pixels, ((0, step_h), (0, step_w), (0, 0)), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return pixels


def _gradient_energy(patch: np.ndarray) -> float:
    gray = patch.mean(axis=2)
    return float(np.mean(np.diff(gray, axis=0) ** 2) + np.mean(np.diff(gray, axis=1) ** 2))


def sample_support_patches(rgb: np.ndarray, region=None, count: int = SUPPORT_SIZE,
                           size: int = PATCH_SIZE, seed: int = 0) -> np.ndarray:
    """rgb: H x W x 3 float32 LR image in 0..1; region: (x, y, w, h) or None.
    Returns count x size x size x 3 float32."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"the support set needs an H x W x 3 RGB image, got shape {rgb.shape}")
    pixels = _pad_to(_region_pixels(rgb, region), size)
    h, w = pixels.shape[:2]
    stride = max(size // 2, 1)
    ys = sorted(set(list(range(0, h - size + 1, stride)) + [h - size]))
    xs = sorted(set(list(range(0, w - size + 1, stride)) + [w - size]))
    windows = [(y, x) for y in ys for x in xs]
    scores = [_gradient_energy(pixels[y:y + size, x:x + size]) for y, x in windows]
    order = sorted(range(len(windows)), key=lambda i: (-scores[i], i))
    chosen = [windows[i] for i in order[:count]]
    if len(chosen) < count:
        rng = np.random.default_rng(seed)
        extra = count - len(chosen)
        chosen += list(zip(rng.integers(0, h - size + 1, extra), rng.integers(0, w - size + 1, extra)))
    return np.stack([pixels[y:y + size, x:x + size] for y, x in chosen]).astype(np.float32)


def stack_support(patches: np.ndarray) -> np.ndarray:
    """count x size x size x 3 -> 1 x (count*3) x size x size, the ConditionNet input layout
    (patch 0 RGB, patch 1 RGB, ...)."""
    count, size = patches.shape[0], patches.shape[1]
    return np.ascontiguousarray(patches.transpose(0, 3, 1, 2).reshape(1, count * 3, size, size))
