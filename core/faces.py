"""Faces in a photo: detection and 5-point alignment, for MetaF2N's face pairs and `analyse`.

Two detectors, both offline:
- YuNet through `yuface` (default): weights compiled into the wheel, numpy only. It works on
  images up to 960 px, so larger images are detected on a downscaled copy.
- RetinaFace mobilenet0.25 through facexlib, used when `retinaface_mobilenet0.25_Final.pth`
  (or facexlib's `detection_mobilenet0.25_Final.pth`) is in the models folder and facexlib
  imports (it needs torchvision). As in MetaF2N, images above 1500 px are detected on a copy
  1000 px long. The network is built and loaded here with `torch.load(weights_only=True)`;
  facexlib's `init_detection_model` is not called because it downloads whenever its own file
  name is absent.
Small images (LR photos) are detected on a bicubic-enlarged copy: both detectors miss faces of
a few pixels that they find there (bench/metaf2n_faces.py).

Landmarks are in detector order: image-left eye, image-right eye, nose tip, image-left and
image-right mouth corners. Alignment maps them onto the FFHQ 5-point template (the one
facexlib/GPEN use for 512 px faces) with a least-squares similarity (Umeyama 1991).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from core.errors import WeightsError
from core.image_io import to_rgb

RETINAFACE_FILE = "retinaface_mobilenet0.25_Final.pth"
FACEXLIB_RETINAFACE_FILE = "detection_mobilenet0.25_Final.pth"  # the same file, facexlib's name
YUNET_MAX_SIDE = 960
YUNET_ENLARGE_BELOW = 480
# MetaF2N's generate_test_faces.py detects images above 1500 px on a copy 1000 px long.
RETINAFACE_MAX_SIDE = 1500
RETINAFACE_RESIZED_SIDE = 1000
RETINAFACE_ENLARGE_BELOW = 500
RETINAFACE_MIN_SCORE = 0.9
YUNET_MIN_SCORE = 0.6

# FFHQ 5-point template for a 512x512 aligned face (x, y), in detector landmark order.
FFHQ_TEMPLATE_512 = np.array([
    [192.98138, 239.94708],
    [318.90277, 240.19360],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
])


@dataclass(frozen=True)
class Face:
    """A face in image pixels: box (x, y, w, h), detector score in 0..1, and 5 landmarks
    (5×2, x/y) or None for a box the user drew."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def as_list(self) -> list[float]:
        """[x, y, w, h, score], the form `analyse` and the engine protocol report."""
        return [float(v) for v in self.box] + [float(self.score)]


@dataclass(frozen=True)
class Detection:
    """Faces found, and which detector found them (with a note when the preferred one was
    unavailable)."""

    faces: list[Face]
    detector: str
    note: str = ""


def faces_from_boxes(boxes) -> list[Face]:
    """User-named face boxes (x, y, w, h): no detection, no landmarks, score 1."""
    return [Face((float(x), float(y), float(w), float(h)), 1.0, None) for x, y, w, h in boxes]


def detect(rgb: np.ndarray, models_dir=None, region=None, min_score: float | None = None) -> Detection:
    """Faces in an H×W×3 (or H×W×1) float image in 0..1, optionally only inside
    region = (x, y, w, h); boxes and landmarks are in whole-image coordinates. `models_dir`
    (default: the user's models folder) is where RetinaFace's weights are looked for. The
    default score threshold is the detector's: 0.9 for RetinaFace (MetaF2N's setting), 0.6 for
    YuNet, whose scores for clear faces sit around 0.9 and for small ones around 0.75."""
    rgb = to_rgb(rgb)
    ox = oy = 0
    if region is not None:
        ox, oy, w, h = (int(v) for v in region)
        rgb = rgb[oy:oy + h, ox:ox + w]
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        return Detection([], "none", "the image is too small to hold a face")
    bgr8 = np.ascontiguousarray((rgb * 255 + 0.5).astype(np.uint8)[:, :, ::-1])
    if models_dir is None:
        from core.weights import models_dir as user_models_dir
        models_dir = user_models_dir()
    weights = next((Path(models_dir) / name for name in (RETINAFACE_FILE, FACEXLIB_RETINAFACE_FILE)
                    if (Path(models_dir) / name).is_file()), None)
    note = ""
    if weights is not None:
        try:
            detector = RetinaFaceDetector(weights)
        except ImportError as err:
            note = f"facexlib is not importable ({err}); used YuNet instead of RetinaFace"
        except WeightsError as err:
            note = f"{err}; used YuNet instead of RetinaFace"
        else:
            faces = detector(bgr8, RETINAFACE_MIN_SCORE if min_score is None else min_score)
            return Detection(_offset(faces, ox, oy), "retinaface")
    faces = YuNetDetector()(bgr8, YUNET_MIN_SCORE if min_score is None else min_score)
    return Detection(_offset(faces, ox, oy), "yunet", note)


def detect_faces(rgb: np.ndarray, models_dir=None, region=None) -> list[list[float]]:
    """[[x, y, w, h, score], ...] of the faces `detect` finds: what `analyse` reports."""
    return [face.as_list() for face in detect(rgb, models_dir, region).faces]


class YuNetDetector:
    """libfacedetection's YuNet via `yuface.detect` (BGR uint8, scores 0..100)."""

    def __call__(self, bgr8: np.ndarray, min_score: float) -> list[Face]:
        import yuface

        view = DetectorView(bgr8, YUNET_ENLARGE_BELOW, YUNET_MAX_SIDE, YUNET_MAX_SIDE)
        confs, boxes, landmarks = yuface.detect(view.image, conf=min_score)
        faces = []
        for conf, box, marks in zip(confs, boxes, landmarks):
            x, y, w, h = (float(v) for v in box)
            faces.append(view.face((x, y, x + w, y + h), float(conf) / 100.0,
                                   np.asarray(marks, dtype=np.float64).reshape(5, 2)))
        return sorted(faces, key=lambda f: -f.score)


class RetinaFaceDetector:
    """facexlib's RetinaFace('mobile0.25') with weights loaded without unpickling code."""

    _cache: dict = {}

    def __init__(self, weights: Path):
        from facexlib.detection.retinaface import RetinaFace  # ImportError without torchvision

        key = str(weights)
        if key not in self._cache:
            net = RetinaFace(network_name="mobile0.25", half=False, device=torch.device("cpu"))
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                state = {k.removeprefix("module."): v for k, v in state.items()}
                net.load_state_dict(state, strict=True)
            except Exception as err:  # torch.load raises many types; all mean "not this file"
                raise WeightsError(f"{weights.name} is not a usable RetinaFace mobilenet0.25 "
                                   f"checkpoint ({type(err).__name__})") from err
            self._cache[key] = net.eval()
        self.net = self._cache[key]

    def __call__(self, bgr8: np.ndarray, min_score: float) -> list[Face]:
        view = DetectorView(bgr8, RETINAFACE_ENLARGE_BELOW, RETINAFACE_MAX_SIDE, RETINAFACE_RESIZED_SIDE)
        with torch.no_grad():
            found = self.net.detect_faces(view.image, conf_threshold=min_score)
        faces = []
        for row in found:
            faces.append(view.face(tuple(float(v) for v in row[:4]), float(row[4]),
                                   row[5:15].reshape(5, 2).astype(np.float64)))
        return sorted(faces, key=lambda f: -f.score)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 similarity (rotation, uniform scale, translation) that maps the points `src` (N×2)
    onto `dst` (N×2) with least squared error, without reflection (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_dst - scale * rotation @ mu_src
    return matrix


def native_face_size(landmarks: np.ndarray, multiple: int = 4, largest: int = 512) -> int:
    """Side of the aligned crop at which the face keeps its pixel size (scale ≈ 1), rounded to
    `multiple` and capped at `largest`."""
    scale = np.linalg.norm(umeyama(landmarks, FFHQ_TEMPLATE_512)[:, 0])
    side = 512.0 / scale
    return int(min(largest, max(multiple, round(side / multiple) * multiple)))


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int,
               template: np.ndarray = FFHQ_TEMPLATE_512 / 512.0) -> tuple[np.ndarray, np.ndarray]:
    """The face warped onto `template` (5 points in units of the crop side; default FFHQ's)
    scaled to size×size (bicubic, edges reflected) and the 2×3 image->crop matrix."""
    matrix = umeyama(landmarks, template * size)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    h, w = rgb.shape[:2]
    u, v = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    src_x = inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2]
    src_y = inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2]
    # grid_sample with align_corners=False: pixel centre i sits at (2i + 1) / n - 1.
    grid = np.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], axis=-1)
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    crop = F.grid_sample(image, torch.from_numpy(grid[None].astype(np.float32)), mode="bicubic",
                         padding_mode="reflection", align_corners=False)
    return crop[0].permute(1, 2, 0).clamp(0, 1).numpy(), matrix


class DetectorView:
    """The image a detector sees: shrunk to `target` px when longer than `shrink_above`,
    enlarged (bicubic, at most 4×, up to `target`) when shorter than `enlarge_below`: both
    detectors miss faces of a few pixels that they find on an enlarged copy. `face` maps
    results back to the original pixel grid (pixel centres at integer coordinates)."""

    def __init__(self, bgr8: np.ndarray, enlarge_below: int, shrink_above: int, target: int):
        h, w = bgr8.shape[:2]
        longest = max(h, w)
        factor = 1.0
        if longest > shrink_above:
            factor = target / longest
        elif longest < enlarge_below:
            factor = min(4.0, target / longest)
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        self.fx, self.fy = size[0] / w, size[1] / h
        if size == (w, h):
            self.image = bgr8
        else:
            kind = Image.Resampling.BOX if factor < 1 else Image.Resampling.BICUBIC
            self.image = np.ascontiguousarray(np.asarray(Image.fromarray(bgr8).resize(size, kind)))

    def face(self, corners, score: float, landmarks: np.ndarray) -> Face:
        """A Face from corners (x1, y1, x2, y2) and landmarks in the view's pixels."""
        x1, y1 = self._point(corners[0], corners[1])
        x2, y2 = self._point(corners[2], corners[3])
        marks = np.array([self._point(x, y) for x, y in landmarks])
        return Face((x1, y1, x2 - x1, y2 - y1), score, marks)

    def _point(self, x, y):
        return (x + 0.5) / self.fx - 0.5, (y + 0.5) / self.fy - 0.5


def _offset(faces: list[Face], ox: int, oy: int) -> list[Face]:
    if not (ox or oy):
        return faces
    shift = np.array([ox, oy], dtype=np.float64)
    return [Face((f.box[0] + ox, f.box[1] + oy, f.box[2], f.box[3]), f.score,
                 None if f.landmarks is None else f.landmarks + shift) for f in faces]
