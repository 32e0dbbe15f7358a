"""Faces through the face restorer trained here (core/archs/face_restorer.py): the "restore faces"
option, which pastes restored faces back (feathered) over any model's result, and the targets of
MetaF2N's face pairs.

The restorer is trained on UTKFace's aligned crops (core/train/face_restorer.py), so faces are
aligned to *that* framing (`TEMPLATE`), tighter than FFHQ's: forehead to chin, little hair. A face
is restored at the training scale (128 px output for a 32 px LR crop) or at its own size when it
is larger, then warped back with the inverse similarity and blended under a mask that fades out
over the outer `FEATHER` of the crop, so no seam shows.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.archs.face_restorer import TRAINED_SIZE
from core.faces import Face, align_face, umeyama

MODEL = ARCH_ID = "face_restorer"
CONFIG = "lite"
# Mean 5 landmarks (detector order) of UTKFace's aligned 200x200 crops, measured with YuNet on 41
# of 42 sampled crops (std about 7 px), in units of the crop side: the restorer's framing.
TEMPLATE = np.array([[64.2, 61.2], [133.3, 61.9], [96.3, 105.5], [68.2, 135.4], [128.1, 135.9]]) / 200.0
FEATHER = 0.15      # share of the crop side over which the pasted face fades out
LARGEST_SIDE = 512  # output side cap per face: bounds time and memory on a CPU
HOW_TO_GET = "train it with `python -m core.train face_restorer` and copy the run's face_restorer_lite.safetensors"


class LowResRestorer(nn.Module):
    """The restorer fed as it is trained: the LR face bicubic-enlarged `scale` times."""

    def __init__(self, restorer: nn.Module, scale: int):
        super().__init__()
        self.restorer, self.scale = restorer, scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.restorer(up)


def status() -> str:
    """"bundled" | "user" | "missing": whether the "restore faces" option can run (the engine's
    health answer carries it, so the panels grey the option when it cannot)."""
    from core.weights import weights_status

    return weights_status(MODEL, ARCH_ID, CONFIG)


def available() -> bool:
    return status() != "missing"


def load() -> nn.Module:
    """The trained restorer (bundled or in the models folder), or a WeightsError saying how to
    get it."""
    from core.weights import load_model

    return load_model(MODEL, ARCH_ID, CONFIG, HOW_TO_GET).module


def output_side(landmarks: np.ndarray, scale: int) -> int:
    """Side of the restored crop: the face's own size at `scale` (or the training size when that
    is larger), capped, a multiple of both `scale` and 4 (the restorer's U-Net)."""
    own = scale / np.linalg.norm(umeyama(landmarks, TEMPLATE)[:, 0])
    side = min(max(float(TRAINED_SIZE), own), float(LARGEST_SIDE))
    step = scale * 4 // np.gcd(scale, 4)
    return int(np.ceil(side / step) * step)


def restore_face(restorer: nn.Module, lr_rgb: np.ndarray, landmarks: np.ndarray,
                 scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(the LR face aligned to TEMPLATE, its restored version `scale` times larger), H×W×3."""
    side = output_side(landmarks, scale)
    lr_face, _ = align_face(lr_rgb, landmarks, side // scale, TEMPLATE)
    return lr_face, restore_crop(restorer, lr_face, scale)


def restore_crop(restorer: nn.Module, lr_face: np.ndarray, scale: int) -> np.ndarray:
    """An LR face crop (H×W×3; H·scale and W·scale multiples of 4) restored at `scale` times its size."""
    x = torch.from_numpy(np.ascontiguousarray(lr_face.transpose(2, 0, 1), dtype=np.float32))[None]
    with torch.inference_mode():
        restored = LowResRestorer(restorer, scale)(x).clamp(0, 1)
    return restored[0].permute(1, 2, 0).numpy()


def feather_mask(side: int, feather: float = FEATHER) -> np.ndarray:
    """side×side weights: 1 inside, a smooth step to 0 over the outer `feather` of the side."""
    ramp = max(1.0, feather * side)
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32) + 0.5
    t = np.clip(d / ramp, 0.0, 1.0)
    t = t * t * (3 - 2 * t)
    return np.minimum.outer(t, t)


def paste_back(canvas: np.ndarray, crop: np.ndarray, matrix: np.ndarray, feather: float = FEATHER) -> None:
    """Blends `crop` (S×S×3) into `canvas` (H×W×3, modified in place) where the 2×3 similarity
    `matrix` (canvas -> crop pixels) puts it, under a feathered mask."""
    side = crop.shape[0]
    full = np.vstack([matrix, [0, 0, 1]])
    inverse = np.linalg.inv(full)[:2]
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], dtype=np.float64) - [0.5, 0.5, 0]
    xy = corners @ inverse.T
    h, w = canvas.shape[:2]
    x0, y0 = max(0, int(np.floor(xy[:, 0].min()))), max(0, int(np.floor(xy[:, 1].min())))
    x1, y1 = min(w, int(np.ceil(xy[:, 0].max())) + 1), min(h, int(np.ceil(xy[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    u, v = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    cx = matrix[0, 0] * u + matrix[0, 1] * v + matrix[0, 2]
    cy = matrix[1, 0] * u + matrix[1, 1] * v + matrix[1, 2]
    grid = torch.from_numpy(np.stack([(2 * cx + 1) / side - 1, (2 * cy + 1) / side - 1], -1)[None].astype(np.float32))
    layers = np.concatenate([crop, feather_mask(side, feather)[..., None]], axis=2)
    source = torch.from_numpy(np.ascontiguousarray(layers.transpose(2, 0, 1), dtype=np.float32))[None]
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)[0].permute(1, 2, 0).numpy()
    alpha = warped[..., 3:]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = alpha * warped[..., :3] + (1 - alpha) * region


def restore_faces(canvas: np.ndarray, lr_rgb: np.ndarray, faces: list[Face], scale: int,
                  restorer: nn.Module, progress=None) -> int:
    """Restores every face with landmarks of `lr_rgb` and pastes it into `canvas`, the H·scale ×
    W·scale result (modified in place). Returns how many were pasted. `progress(fraction)` after
    each face (the engine's cancel point)."""
    done = 0
    marked = [face.landmarks for face in faces if face.landmarks is not None]
    for i, landmarks in enumerate(marked):
        _, restored = restore_face(restorer, lr_rgb, landmarks, scale)
        out_marks = (landmarks + 0.5) * scale - 0.5
        paste_back(canvas, restored, umeyama(out_marks, TEMPLATE * restored.shape[0]))
        done += 1
        if progress is not None:
            progress((i + 1) / len(marked))
    return done
