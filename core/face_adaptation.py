"""MetaF2N's inner step: adapt the SR backbone to one photo from face patch pairs.

What the paper does: detect and align the faces of the LR photo, restore each with a face
restorer (GPEN-BFR-512), and take one plain-SGD step (lr 0.01) on every backbone parameter,
from the meta-learned weights, minimising the MaskNet-weighted L1 between SR(LQ face patch) and
the restored face patch; the adapted weights then super-resolve the whole photo.

What this module does instead, and why: no face-restoration weights can be had here (GPEN's are
on Google Drive/Baidu only), and a restorer the team could train on the few HQ faces available
would be a weak prior. So the target of every pair is the photo's own face, at its own
resolution, aligned to the FFHQ template at scale ≈ 1 (a user-drawn box is taken as it is), and
the input is that face shrunk ×4 (antialiased bicubic, 8-bit rounding). That is MZSR-style
internal learning restricted to faces: the step teaches the net how this photo's faces look one
octave finer, so it adapts to the photo's degradation and content statistics, but it carries no
external face prior and cannot make faces sharper than the photo holds them. The patch sampling,
loss, optimiser, learning rate and step count are the paper's; the meta-learned init and
MaskNet must be meta-trained with these same pairs (they are not interchangeable with the
official GPEN-trained ones). When a face restorer exists, its output replaces the target crops
and the rest is unchanged.

The step runs on a copy of the parameters with `torch.func.functional_call`: the module's
stored weights are never modified, so one loaded model serves every photo.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from core.degradations import bicubic_downsample, quantize
from core.faces import Face, align_face, native_face_size

INNER_LR = 0.01           # MetaF2N TASK_LR (plain SGD)
PATCH = 16                # LR patch side (official test.py: patch_size 64 at HR)
PATCHES_PER_FACE = 16     # official test.py: patch_num_per_img
MAX_FACES = 4             # largest faces used; bounds the step's time on a CPU
CHUNK = 8                 # patches per forward/backward; bounds memory, same gradient


@dataclass
class FacePairs:
    """LR patches N×3×p×p, their targets N×3×(p·s)×(p·s), and how many faces they come from."""

    lr: torch.Tensor
    hr: torch.Tensor
    faces: int


def face_targets(rgb: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
    """The crop each face contributes, largest first: aligned at its native size when it has
    landmarks, the box itself (clipped to the image) when the user named it."""
    h, w = rgb.shape[:2]
    crops = []
    for face in faces:
        if face.landmarks is not None:
            crop, _ = align_face(rgb, face.landmarks, native_face_size(face.landmarks, largest=1024))
        else:
            x0, y0 = max(0, int(round(face.box[0]))), max(0, int(round(face.box[1])))
            x1 = min(w, int(round(face.box[0] + face.box[2])))
            y1 = min(h, int(round(face.box[1] + face.box[3])))
            if x1 <= x0 or y1 <= y0:
                continue
            crop = rgb[y0:y1, x0:x1]
        crops.append(np.ascontiguousarray(crop, dtype=np.float32))
    return sorted(crops, key=lambda c: -c.shape[0] * c.shape[1])


def build_pairs(targets: list[np.ndarray], scale: int = 4, patch: int = PATCH,
                per_face: int = PATCHES_PER_FACE, max_faces: int = MAX_FACES,
                seed: int = 0) -> FacePairs | None:
    """`per_face` random aligned (LR p×p, target (p·s)×(p·s)) pairs from each of the
    `max_faces` largest targets. p is `patch`, or less when even the largest face is smaller
    (the official test then uses the face whole); faces smaller than p are left out. None if
    no target gives an LR input of at least 4×4. The seed makes the result repeatable."""
    examples = [_input_and_target(t, scale) for t in targets if min(t.shape[0], t.shape[1]) // scale >= 4]
    return sample_pairs(examples, scale, patch, per_face, max_faces, seed)


def restored_pairs(rgb: np.ndarray, faces: list[Face], restorer, scale: int = 4, patch: int = PATCH,
                   per_face: int = PATCHES_PER_FACE, max_faces: int = MAX_FACES,
                   seed: int = 0) -> FacePairs | None:
    """The paper's pairs: the LR face (aligned to the restorer's framing; a user's box as it is)
    as input and the face restorer's output for it as target. Sampled as `build_pairs` does."""
    from core.face_restore import restore_crop, restore_face

    h, w = rgb.shape[:2]
    examples = []
    for face in faces:
        if face.landmarks is not None:
            lr_face, restored = restore_face(restorer, rgb, face.landmarks, scale)
        else:
            x0, y0 = max(0, int(round(face.box[0]))), max(0, int(round(face.box[1])))
            lr_face = rgb[y0:min(h, int(round(face.box[1] + face.box[3]))),
                          x0:min(w, int(round(face.box[0] + face.box[2])))]
            if min(lr_face.shape[:2]) < 4:
                continue
            restored = restore_crop(restorer, lr_face, scale)
        examples.append((_nchw(lr_face), _nchw(restored)))
    return sample_pairs(examples, scale, patch, per_face, max_faces, seed)


def sample_pairs(examples: list[tuple[torch.Tensor, torch.Tensor]], scale: int, patch: int = PATCH,
                 per_face: int = PATCHES_PER_FACE, max_faces: int = MAX_FACES,
                 seed: int = 0) -> FacePairs | None:
    """`per_face` random patch pairs from each of the `max_faces` largest (LR 1×3×h×w, target
    1×3×sh×sw) examples; p shrinks to the largest LR side when that is smaller than `patch`."""
    sides = [min(lq.shape[2], lq.shape[3]) for lq, _ in examples]
    if not sides or max(sides) < 4:
        return None
    patch = min(patch, max(sides))
    rng = np.random.default_rng(seed)
    lr_patches, hr_patches = [], []
    used = [ex for ex, side in sorted(zip(examples, sides), key=lambda es: -es[1]) if side >= patch]
    for lq, hr in used[:max_faces]:
        lq_patches, target_patches = random_patches(lq, hr, per_face, patch, scale, rng)
        lr_patches.append(lq_patches)
        hr_patches.append(target_patches)
    return FacePairs(torch.cat(lr_patches), torch.cat(hr_patches), min(len(used), max_faces))


def _nchw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]


def random_patches(lq: torch.Tensor, hr: torch.Tensor, count: int, patch: int, scale: int,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random aligned crops: LR count×3×p×p from `lq` (1×3×h×w) and their targets
    count×3×(p·s)×(p·s) from `hr` (1×3×(h·s)×(w·s)). Meta-training samples its inner pairs here too."""
    lr_patches, hr_patches = [], []
    for _ in range(count):
        i = int(rng.integers(0, lq.shape[2] - patch + 1))
        j = int(rng.integers(0, lq.shape[3] - patch + 1))
        lr_patches.append(lq[:, :, i:i + patch, j:j + patch])
        hr_patches.append(hr[:, :, i * scale:(i + patch) * scale, j * scale:(j + patch) * scale])
    return torch.cat(lr_patches), torch.cat(hr_patches)


def _input_and_target(target: np.ndarray, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = (target.shape[0] // scale) * scale, (target.shape[1] // scale) * scale
    hr = _nchw(target[:h, :w])
    return quantize(bicubic_downsample(hr, scale).clamp(0, 1)), hr


def stored_parameters(model) -> dict[str, torch.Tensor]:
    """The backbone's own (meta-learned) parameters, detached: the weights used unadapted."""
    return {name: p.detach() for name, p in model.backbone.named_parameters()}


def adapt(model, pairs: FacePairs, lr: float = INNER_LR, chunk: int = CHUNK,
          progress=None) -> tuple[dict, float]:
    """One SGD step on all backbone parameters from their stored values:
    θ' = θ − lr·∇ mean(W ⊙ |target − SR_θ(input)|), W = MaskNet(bicubic(input), target).
    Returns (θ' as name -> tensor, the loss before the step). The mean is taken over every
    patch, pixel and channel as in the paper; patches go through in chunks and their gradients
    add up to the same step. `progress(fraction)` after each chunk (the engine's cancel point)."""
    device = next(model.backbone.parameters()).device
    inputs, targets = pairs.lr.to(device), pairs.hr.to(device)
    count = targets.numel()
    with torch.inference_mode(False), torch.enable_grad():
        params = {name: p.detach().clone().requires_grad_(True)
                  for name, p in model.backbone.named_parameters()}
        grads = {name: torch.zeros_like(p) for name, p in params.items()}
        total = 0.0
        for start in range(0, len(inputs), chunk):
            lq, hr = inputs[start:start + chunk], targets[start:start + chunk]
            with torch.no_grad():
                weight = model.loss_weight(lq, hr)
            sr = functional_call(model.backbone, params, (lq,))
            loss = (weight * (hr - sr).abs()).sum() / count
            for (name, _), g in zip(params.items(), torch.autograd.grad(loss, tuple(params.values()))):
                grads[name] += g
            total += float(loss.detach())
            if progress is not None:
                progress(min(start + chunk, len(inputs)) / len(inputs))
        adapted = {name: (p - lr * grads[name]).detach() for name, p in params.items()}
    return adapted, total
