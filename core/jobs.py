"""The one job API of the engine, shared by the CLI, the standalone editor and the server.

`Engine.upscale(image, request, progress, cancel)` loads the model (cached), lets it `prepare` over
the whole image, runs its tiles over the region (or the whole image), enlarges alpha with the bicubic baseline
and returns an `Image` with the input's channels, bit depth, ICC profile and EXIF.
`Engine.analyse(image, region)` estimates blur and noise (MM-RealSR's DE-Net when its weights are
present, a classical estimate otherwise) and finds faces (core.faces when it is available).
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from core.errors import BlindUpscaleError, Cancelled, InputError, WeightsError
from core.image_io import Image
from core.methods.bicubic import bicubic_upscale
from core.registry import get_model, upscaler_class
from core.runtimes import select_device
from core.self_ensemble import self_ensemble
from core.tiling import tiled_upscale

Progress = Callable[[float, str], None]
Box = tuple[int, int, int, int]

# Share of the progress bar each stage owns.
_PREPARE = (0.05, 0.25)
_TILES = (0.25, 0.95)


@dataclass
class UpscaleRequest:
    """Everything a job needs besides the pixels; also the JSON body of a server job."""

    model: str = "bicubic"
    config: str | None = None
    scale: int = 4
    device: str = "auto"
    backend: str = "auto"
    tile: int = 256
    overlap: int = 16
    support: Box | None = None
    faces: str | list[Box] = "auto"
    blur: float | None = None
    noise: float | None = None
    region: Box | None = None
    ensemble: bool = False
    """Self-ensemble: average the 8 orientations of every tile (core/self_ensemble.py), 8x the time."""

    @classmethod
    def from_dict(cls, data: dict) -> "UpscaleRequest":
        """Build and validate a request from JSON-like data; problems are `InputError`s."""
        if not isinstance(data, dict):
            raise InputError("the request must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown request field(s): {', '.join(unknown)}")
        request = cls(**data)
        request.validate()
        return request

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("support", "region"):
            if d[key] is not None:
                d[key] = list(d[key])
        if isinstance(d["faces"], (list, tuple)):
            d["faces"] = [list(b) for b in d["faces"]]
        return d

    def validate(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InputError("the request needs a model id")
        if self.config is not None and not isinstance(self.config, str):
            raise InputError(f"config must be a configuration name, got {self.config!r}")
        if not isinstance(self.scale, int) or isinstance(self.scale, bool) or not 1 <= self.scale <= 8:
            raise InputError(f"scale must be an integer from 1 to 8, got {self.scale!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.backend not in ("auto", "torch", "onnx"):
            raise InputError(f"backend must be auto, torch or onnx, got {self.backend!r}")
        if not isinstance(self.tile, int) or self.tile < 0 or 0 < self.tile < 16:
            raise InputError(f"tile must be 0 (no tiling) or at least 16, got {self.tile!r}")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise InputError(f"overlap must be a non-negative integer, got {self.overlap!r}")
        if not isinstance(self.ensemble, bool):
            raise InputError(f"ensemble must be true or false, got {self.ensemble!r}")
        for name in ("blur", "noise"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    raise InputError(f"{name} must be a number from 0 to 1, got {value!r}")
                setattr(self, name, float(value))
        for name in ("support", "region"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _box(value, name))
        if isinstance(self.faces, str):
            if self.faces not in ("auto", "none"):
                raise InputError(f"faces must be auto, none or a list of boxes, got {self.faces!r}")
        elif isinstance(self.faces, (list, tuple)):
            self.faces = [_box(b, "face box") for b in self.faces]
        else:
            raise InputError(f"faces must be auto, none or a list of boxes, got {self.faces!r}")


def _box(value, what: str) -> Box:
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise InputError(f"{what} must be four integers x, y, w, h, got {value!r}")
    x, y, w, h = value
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise InputError(f"{what} {tuple(value)} is empty or starts outside the image")
    return (x, y, w, h)


def check_box(box: Box, width: int, height: int, what: str) -> Box:
    """A box must lie inside the image."""
    x, y, w, h = box
    if x + w > width or y + h > height:
        raise InputError(f"{what} {x},{y},{w},{h} reaches outside the {width}x{height} image")
    return box


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """H x W x 3 float32 in 0..1 from gray, gray+alpha, RGB or RGBA pixels (alpha dropped)."""
    color = pixels[..., :1] if pixels.shape[2] <= 2 else pixels[..., :3]
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    return np.clip(color, 0.0, 1.0).astype(np.float32)


MAX_OUTPUT_PIXELS = 400_000_000
"""Largest result accepted by default: 400 MP is 4.8 GB as float32 RGB, and the tile canvas needs
as much again; larger jobs are refused before any work instead of exhausting memory."""


class Engine:
    """Runs jobs; keeps loaded models so the next job with the same model starts at once."""

    def __init__(self, max_cached_models: int = 2, max_output_pixels: int = MAX_OUTPUT_PIXELS):
        self._models: dict[tuple, object] = {}
        self.max_output_pixels = max_output_pixels
        self._max_cached = max_cached_models
        self._lock = threading.Lock()

    # ------------------------------------------------------------ models
    def load(self, model: str, config: str | None = None, device: str = "auto",
             backend: str = "auto"):
        """The Upscaler for (model, config, device, backend), loaded once and cached."""
        spec = get_model(model)
        chosen = spec.config(config)
        if chosen.weights == "missing":
            # A model that loads weights raises its own error naming the file to put where.
            try:
                upscaler_class(model)(chosen.name, "cpu", "torch")
            except WeightsError:
                raise
            raise WeightsError(
                f"the weights of {chosen.id} are missing: put them in the models folder "
                "(see README, 'Weights') or pick a model whose weights are present")
        device = select_device(device)
        key = (model, chosen.name, device, backend)
        with self._lock:
            upscaler = self._models.pop(key, None)
            if upscaler is None:
                upscaler = upscaler_class(model)(chosen.name, device, backend)
            self._models[key] = upscaler  # most recently used last
            while len(self._models) > self._max_cached:
                self._models.pop(next(iter(self._models)))
        return upscaler

    # ------------------------------------------------------------ upscale
    def upscale(self, image: Image, request: UpscaleRequest, progress: Progress | None = None,
                cancel=None) -> Image:
        """Upscale `image` (or `request.region` of it); `cancel` is a callable or an Event."""
        request.validate()
        report = progress or (lambda fraction, stage: None)
        is_cancelled = _cancel_check(cancel)
        started = time.perf_counter()

        pixels = image.pixels
        region = request.region
        if region is not None:
            x, y, w, h = check_box(region, image.width, image.height, "region")
            pixels = pixels[y:y + h, x:x + w]
        if request.support is not None:
            check_box(request.support, image.width, image.height, "support region")
        if isinstance(request.faces, list):
            for box in request.faces:
                check_box(box, image.width, image.height, "face box")

        out_pixels = pixels.shape[0] * pixels.shape[1] * request.scale ** 2
        if out_pixels > self.max_output_pixels:
            raise InputError(
                f"the result would be {out_pixels / 1e6:.0f} MP, above the limit of "
                f"{self.max_output_pixels / 1e6:.0f} MP; upscale a smaller region")

        report(0.0, "loading model")
        upscaler = self.load(request.model, request.config, request.device, request.backend)
        if is_cancelled():
            raise Cancelled()

        channels = pixels.shape[2]
        # The global step (degradation estimate, support set, faces) sees the whole image, in image
        # coordinates, so a selection limits only what is upscaled, not what the model learns from.
        whole = _rgb(image.pixels)
        lo, hi = _PREPARE
        report(lo, "preparing")

        def prepare_progress(fraction, stage):
            """A long global step (face adaptation) stops at its next progress report."""
            if is_cancelled():
                raise Cancelled()
            report(lo + (hi - lo) * fraction, stage)

        context = upscaler.prepare(whole, request, prepare_progress)
        color = whole if region is None else whole[y:y + h, x:x + w]
        del whole
        if is_cancelled():
            raise Cancelled()

        scale = upscaler.tile_scale(request)
        lo, hi = _TILES
        nchw = np.ascontiguousarray(color.transpose(2, 0, 1)[None])

        def run_tile(tile):
            return upscaler.run_tile(tile, context)

        if request.ensemble:
            run_tile = self_ensemble(run_tile)
        try:
            out = tiled_upscale(
                run_tile, nchw, scale, request.tile, request.overlap,
                progress=lambda done, total: report(lo + (hi - lo) * done / total,
                                                    f"upscaling tile {done}/{total}"),
                cancel=is_cancelled)
        except (MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "out of memory" not in str(exc).lower():
                raise
            raise BlindUpscaleError(f"out of memory while upscaling with tiles of {request.tile} px; "
                                    "try a smaller tile size or a smaller region") from None
        if scale != request.scale:
            out = _resize(out, pixels.shape[0] * request.scale, pixels.shape[1] * request.scale)

        report(0.96, "finishing")
        # One output-sized buffer besides the canvas: filled channel by channel, clipped in place.
        result = np.empty((out.shape[2], out.shape[3], channels), np.float32)
        if channels <= 2:
            np.mean(out[0], axis=0, out=result[..., 0])
        else:
            result[..., :3] = out[0].transpose(1, 2, 0)
        del out
        if channels in (2, 4):
            result[..., -1] = bicubic_upscale(pixels[..., -1][None, None], request.scale)[0, 0]
        np.clip(result, 0.0, 1.0, out=result)
        report(1.0, f"done in {time.perf_counter() - started:.1f} s")
        return Image(result, image.bit_depth, image.icc, image.exif)

    # ------------------------------------------------------------ analyse
    def analyse(self, image: Image, region: Box | None = None) -> dict:
        """{"blur", "noise"} in 0..1, "method" ("de-net" or "classical"), "faces": [[x,y,w,h,score]]."""
        rgb = image.color()
        x0 = y0 = 0
        if region is not None:
            x0, y0, w, h = check_box(_box(region, "region"), image.width, image.height, "region")
            rgb = rgb[y0:y0 + h, x0:x0 + w]
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
        estimate = self._de_net_estimate(rgb)
        method = "de-net"
        if estimate is None:
            estimate, method = estimate_degradation(rgb), "classical"
        faces = [[fx + x0, fy + y0, fw, fh, score] for fx, fy, fw, fh, score in find_faces(rgb)]
        return {"blur": estimate["blur"], "noise": estimate["noise"], "method": method,
                "faces": faces}

    def _de_net_estimate(self, rgb: np.ndarray) -> dict | None:
        """MM-RealSR's degradation estimate when that model and its weights are available."""
        try:
            spec = get_model("mmrealsr")
        except BlindUpscaleError:
            return None
        if spec.weights == "missing":
            return None
        upscaler = self.load("mmrealsr")
        estimate = getattr(upscaler, "estimate_degradation", None)
        if estimate is None:
            return None
        values = estimate(rgb)
        return {"blur": float(values["blur"]), "noise": float(values["noise"])}


def _cancel_check(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return cancel


def _resize(nchw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bring a model's native-scale output to the requested size (antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(nchw)
    with torch.inference_mode():
        y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False,
                          antialias=height < x.shape[2])
    return y.numpy()


# ---------------------------------------------------------------- classical estimates
def _gray(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float64)


NOISE_SIGMA_AT_ONE = 30.0 / 255.0
"""Noise sigma (0..1 pixel units) that maps to noise = 1: the top of Real-ESRGAN's Gaussian range."""


def estimate_noise_sigma(gray: np.ndarray) -> float:
    """Gaussian noise sigma from the median absolute deviation of a Laplacian-like high-pass
    (Immerkær's mask), measured on the flattest half of the image so edges do not count as noise."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    g = gray
    hp = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
          - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
          + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    # Edges are found on a smoothed copy: on the raw image, "flat" would also select the
    # pixels where the noise happens to be small, and the estimate would come out low.
    smooth = _box_blur(_box_blur(g, 5, 0), 5, 1)
    gx = np.abs(smooth[1:-1, 2:] - smooth[1:-1, :-2])
    gy = np.abs(smooth[2:, 1:-1] - smooth[:-2, 1:-1])
    edge = gx + gy
    flat = hp[edge <= np.median(edge)]
    if flat.size == 0:
        return 0.0
    mad = np.median(np.abs(flat - np.median(flat)))
    return float(1.4826 * mad / 6.0)  # the mask's noise gain is sqrt(36) = 6


def _box_blur(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Mean over a window of `size` along `axis` (edges replicated), via a cumulative sum."""
    half = size // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half + 1, half)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    hi = np.take(c, np.arange(size, size + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / size


def estimate_blur(gray: np.ndarray) -> float:
    """Crété-Roffet's blur effect (2007): how much gradient a further 9-tap box blur removes.
    0 means sharp (re-blurring destroys a lot of gradient), 1 means already fully blurred."""
    if gray.shape[0] < 10 or gray.shape[1] < 10:
        return 0.0
    values = []
    for axis in (0, 1):
        blurred = _box_blur(gray, 9, axis)
        d_orig = np.abs(np.diff(gray, axis=axis))
        d_blur = np.abs(np.diff(blurred, axis=axis))
        crop = (slice(4, -4), slice(4, -4))
        d_orig, d_blur = d_orig[crop], d_blur[crop]
        total = d_orig.sum()
        if total <= 1e-12:
            values.append(1.0)
            continue
        variation = np.maximum(d_orig - d_blur, 0).sum()
        values.append(float((total - variation) / total))
    return max(values)


BLUR_EFFECT_SHARP, BLUR_EFFECT_BLURRED = 0.25, 0.75
"""Blur-effect values mapped to blur = 0 and blur = 1 (sharp photos measure about 0.2-0.3)."""


def estimate_degradation(rgb: np.ndarray) -> dict:
    """Classical blur and noise estimates, both mapped to 0..1 like MM-RealSR's dials."""
    gray = _gray(rgb)
    # Per channel: averaging channels into gray would shrink independent colour noise by 1/3.
    sigma = float(np.median([estimate_noise_sigma(rgb[..., c].astype(np.float64)) for c in range(3)]))
    effect = estimate_blur(gray)
    noise = float(np.clip(sigma / NOISE_SIGMA_AT_ONE, 0.0, 1.0))
    blur = float(np.clip((effect - BLUR_EFFECT_SHARP) / (BLUR_EFFECT_BLURRED - BLUR_EFFECT_SHARP),
                         0.0, 1.0))
    return {"blur": blur, "noise": noise, "noise_sigma": sigma, "blur_effect": effect}


def find_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int, float]]:
    """Faces as (x, y, w, h, score) through core.faces when it is installed, else none."""
    try:
        from core import faces
    except ImportError:
        return []
    return [tuple(f) for f in faces.detect_faces(rgb)]
