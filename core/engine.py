"""The engine: one image and one request in, one image out; the CLI, the server and the
standalone editor all run it.

`Engine.upscale(image, request, progress, cancel)` loads the model (cached), lets it `prepare` over
the whole image, runs its tiles over the region (or the whole image), enlarges alpha with the bicubic baseline
and returns an `Image` with the input's channels, bit depth, ICC profile and EXIF.
`Engine.analyse(image, region)` estimates blur and noise (MM-RealSR's DE-Net when its weights are
present, a classical estimate otherwise) and finds faces (core.faces when it is available).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, fields, replace
from collections.abc import Callable

import numpy as np

from core.errors import BlindUpscaleError, Cancelled, InputError, InputWarning, WeightsError
from core.archs.spec import MIN_TILE
from core.estimate import estimate_degradation
from core.image_io import Image, to_rgb
from core.methods.bicubic import bicubic_upscale
from core.registry import get_model, upscaler_class
from core.runtimes import BACKENDS, PRECISIONS, cancel_checks, select_device, use_threads
from core.self_ensemble import self_ensemble
from core.tiling import tiled_upscale

Progress = Callable[[float, str], None]
Box = tuple[int, int, int, int]

# Share of the progress bar each stage owns.
_PREPARE = (0.05, 0.25)
_TILES = (0.25, 0.95)
_TIME_LEFT_AFTER = 2  # tiles done before the time left is worth saying


@dataclass
class UpscaleRequest:
    """Everything a job needs besides the pixels; also the JSON body of a server job."""

    model: str = "bicubic"
    config: str | None = None
    scale: int = 4
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    """CPU threads for the network (None: all physical cores)."""
    tile: int = 256
    overlap: int = 16
    support: Box | None = None
    faces: str | list[Box] = "auto"
    blur: float | None = None
    noise: float | None = None
    region: Box | None = None
    ensemble: bool = False
    """Self-ensemble: average the 8 orientations of every tile (core/self_ensemble.py), 8x the time."""
    restore_faces: bool = False
    """Restore the faces found with the face restorer and paste them back (core/face_restore.py)."""

    @classmethod
    def from_dict(cls, data: dict) -> UpscaleRequest:
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
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or self.threads < 1):
            raise InputError(f"threads must be a positive integer, got {self.threads!r}")
        if not isinstance(self.tile, int) or self.tile < 0 or 0 < self.tile < MIN_TILE:
            raise InputError(f"tile must be 0 (no tiling) or at least {MIN_TILE}, got {self.tile!r}")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise InputError(f"overlap must be a non-negative integer, got {self.overlap!r}")
        for name in ("ensemble", "restore_faces"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
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


MAX_OUTPUT_PIXELS = 400_000_000
"""Largest result accepted by default: 400 MP is 4.8 GB as float32 RGB, and the tile canvas needs
as much again; larger jobs are refused before any work instead of exhausting memory."""


class Engine:
    """Runs jobs; keeps loaded models so the next job with the same model starts at once."""

    def __init__(self, max_cached_models: int = 2, max_output_pixels: int = MAX_OUTPUT_PIXELS,
                 threads: int | None = None):
        """`threads`: the CPU threads of a job that names none (None: `runtimes.default_threads`)."""
        self._models: dict[tuple, object] = {}
        self.threads = threads
        self.max_output_pixels = max_output_pixels
        self._max_cached = max_cached_models
        self._lock = threading.Lock()
        self._face_restorer = None
        self._prepared: tuple | None = None  # the last global step: (upscaler ref, key, context, outcome)

    # ------------------------------------------------------------ models
    def load(self, model: str, config: str | None = None, device: str = "auto",
             backend: str = "auto", precision: str = "auto", threads: int | None = None):
        """The Upscaler for (model, config, device, backend, precision, threads), loaded once and
        cached: the engine process keeps warm models (and their sessions) across jobs."""
        cls = upscaler_class(model)  # a user model's class is new when its file changed
        chosen = cls.spec().config(config)
        if chosen.weights not in ("bundled", "user"):
            raise WeightsError(cls.missing_weights_message(chosen.name))
        device = select_device(device)
        backend, precision = cls.runtime(chosen.name, device, backend, precision)
        key = (cls, chosen.name, device, backend, precision, threads)
        with self._lock:
            upscaler = self._models.pop(key, None)
            if upscaler is None:
                upscaler = cls(chosen.name, device, backend, precision, threads)
            self._models[key] = upscaler  # most recently used last
            while len(self._models) > self._max_cached:
                self._models.pop(next(iter(self._models)))
        return upscaler

    # ------------------------------------------------------------ upscale
    def upscale(self, image: Image, request: UpscaleRequest, progress: Progress | None = None,
                cancel=None, as_integers: bool = False, timings: dict[str, float] | None = None) -> Image:
        """Upscale `image` (or `request.region` of it); `cancel` is a callable or an Event.

        `progress(fraction, stage)` names the steps in the user's words ("Upscaling: tile 3 of 12,
        about 20 s left"); a cancel is seen between the layers of a torch network, so even a slow
        tile stops within a moment. `as_integers`: an 8/16-bit image's result holds uint8/uint16
        samples instead of float32 (a quarter or half of the memory: what a file is written from).
        `timings`, when given, receives the seconds spent in each stage: "load" (the model),
        "prepare" (the global step), "tiles" (the network), "blend" (assembling, alpha, clipping)."""
        request.validate()
        is_cancelled = _cancel_check(cancel)
        with cancel_checks(is_cancelled):
            return self._upscale(image, request, progress or (lambda fraction, stage: None), is_cancelled,
                                 as_integers, _StageClock(timings))

    def _upscale(self, image: Image, request: UpscaleRequest, report: Progress,
                 is_cancelled: Callable[[], bool], as_integers: bool, clock: _StageClock) -> Image:
        report(0.0, "Reading the image")
        image = _with_finite_samples(image)
        pixels = self._source_pixels(image, request)
        threads = use_threads(request.threads or self.threads)

        report(0.02, "Loading the model")
        upscaler = self.load(request.model, request.config, request.device, request.backend,
                             request.precision, threads)
        restorer = self.face_restorer() if request.restore_faces else None
        clock.lap("load")
        _stop_if(is_cancelled)

        # The global step (degradation estimate, support set, faces) sees the whole image, in image
        # coordinates, so a selection limits only what is upscaled, not what the model learns from.
        whole = to_rgb(image.pixels)
        context, outcome = self._prepare_once(upscaler, whole, request, report, is_cancelled)
        color = whole if request.region is None else _crop(whole, request.region)
        del whole
        clock.lap("prepare")
        _stop_if(is_cancelled)

        integers = as_integers and image.bit_depth in (8, 16)
        dtype = {8: np.uint8, 16: np.uint16}[image.bit_depth] if integers else np.float32
        channels = pixels.shape[2]
        result = np.empty((color.shape[0] * request.scale, color.shape[1] * request.scale, channels), dtype)

        def write(y: int, rows: np.ndarray) -> None:
            colour = rows[0].mean(axis=0)[..., None] if channels <= 2 else rows[0].transpose(1, 2, 0)
            _store(result[y:y + rows.shape[2], :, :colour.shape[2]], colour)

        notes = [outcome] if outcome else []
        if restorer is None:
            _run_tiles(upscaler, color, context, request, report, is_cancelled, write, clock)
        else:  # the restored faces are pasted into the whole canvas before it is stored
            out = _run_tiles(upscaler, color, context, request, report, is_cancelled, None, clock)
            assert out is not None  # without a writer the canvas comes back
            notes.append(_restore_faces(restorer, color, out, request.scale, report, is_cancelled))
            write(0, out)
            del out
        report(0.96, "Finishing")
        if channels in (2, 4):
            _store(result[..., -1], bicubic_upscale(pixels[..., -1][None, None], request.scale)[0, 0])
        if image.bit_depth == 32:
            _add_out_of_range(result, pixels, request.scale)
        clock.lap("blend")
        report(1.0, f"Done in {clock.total():.1f} s" + "".join(f"; {n}" for n in notes))
        return Image(result, image.bit_depth, image.icc, image.exif)

    def _prepare_once(self, upscaler, whole: np.ndarray, request: UpscaleRequest, report: Progress,
                      is_cancelled: Callable[[], bool]) -> tuple[object, str]:
        """The model's global step, or the last one's result when the same loaded model prepared
        the same pixels for the same request apart from the region and the tiling: the panel's
        live preview moving over a layer (and the run after it) does not estimate the whole layer
        again for each crop. Only the last step is kept, so a step that changes its model's state
        is never reused after another one."""
        key = (hashlib.blake2b(np.ascontiguousarray(whole).data, digest_size=16).digest(),
               json.dumps(replace(request, region=None, tile=0, overlap=0).to_dict(), sort_keys=True))
        last = self._prepared
        if last is not None and last[0]() is upscaler and last[1] == key:
            report(_PREPARE[1], last[3] or "Analysing the image")
            return last[2], last[3]
        context, outcome = _prepare(upscaler, whole, request, report, is_cancelled)
        self._prepared = (weakref.ref(upscaler), key, context, outcome)
        return context, outcome

    def _source_pixels(self, image: Image, request: UpscaleRequest) -> np.ndarray:
        """The pixels to upscale (the region, or all), once every box and the result size are
        known to be acceptable: a refused job does no work."""
        for box, what in ((request.region, "region"), (request.support, "support region")):
            if box is not None:
                check_box(box, image.width, image.height, what)
        if isinstance(request.faces, list):
            for box in request.faces:
                check_box(box, image.width, image.height, "face box")
        pixels = image.pixels if request.region is None else _crop(image.pixels, request.region)
        out_pixels = pixels.shape[0] * pixels.shape[1] * request.scale ** 2
        if out_pixels > self.max_output_pixels:
            raise InputError(
                f"the result would be {out_pixels / 1e6:.0f} MP, above the limit of "
                f"{self.max_output_pixels / 1e6:.0f} MP; upscale a smaller region")
        return pixels

    def face_restorer(self):
        """The trained face restorer, loaded once; a WeightsError saying how to get it if absent."""
        with self._lock:
            if self._face_restorer is None:
                from core import face_restore

                self._face_restorer = face_restore.load()
            return self._face_restorer

    # ------------------------------------------------------------ analyse
    def analyse(self, image: Image, region: Box | None = None) -> dict:
        """{"blur", "noise"} in 0..1, "method" ("de-net" or "classical"), "faces": [[x,y,w,h,score]]."""
        pixels = image.pixels
        x0 = y0 = 0
        if region is not None:
            x0, y0, w, h = check_box(_box(region, "region"), image.width, image.height, "region")
            pixels = pixels[y0:y0 + h, x0:x0 + w]
        rgb = to_rgb(pixels)
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
        values = self.load("mmrealsr").estimate_degradation(rgb)
        if values is None:
            return None
        return {"blur": float(values["blur"]), "noise": float(values["noise"])}


def _cancel_check(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return cancel


def _stop_if(is_cancelled: Callable[[], bool]) -> None:
    if is_cancelled():
        raise Cancelled()


def _crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return pixels[y:y + h, x:x + w]


def _prepare(upscaler, whole: np.ndarray, request: UpscaleRequest, report: Progress,
             is_cancelled: Callable[[], bool]) -> tuple[object, str]:
    """The Upscaler's global step over the whole image, on its share of the progress bar, and
    its outcome: the stage it reported on finishing (e.g. MetaF2N's "no usable face, upscaling
    with the unadapted weights"), which the final status repeats; "" if it reported none."""
    lo, hi = _PREPARE
    report(lo, "Analysing the image")
    outcome = ""

    def prepare_progress(fraction, stage):
        """A long global step (face adaptation) stops at its next progress report."""
        nonlocal outcome
        _stop_if(is_cancelled)
        report(lo + (hi - lo) * fraction, stage)
        if fraction >= 1.0:
            outcome = stage

    return upscaler.prepare(whole, request, prepare_progress), outcome


def _restore_faces(restorer, color: np.ndarray, out: np.ndarray, scale: int, report: Progress,
                   is_cancelled: Callable[[], bool]) -> str:
    """Finds the faces of `color` and pastes their restored versions into `out` (1×3×sH×sW,
    in place); returns what it did, for the final status."""
    from core.face_restore import restore_faces
    from core.faces import detect

    report(0.95, "Finding faces to restore")
    found = detect(color).faces
    _stop_if(is_cancelled)

    def face_progress(fraction):
        _stop_if(is_cancelled)
        report(0.95 + 0.01 * fraction, "Restoring faces")

    count = restore_faces(out[0].transpose(1, 2, 0), color, found, scale, restorer, face_progress)
    return f"{count} face(s) restored" if count else "no face found to restore"


def _run_tiles(upscaler, color: np.ndarray, context, request: UpscaleRequest, report: Progress,
               is_cancelled: Callable[[], bool], write, clock: _StageClock) -> np.ndarray | None:
    """The Upscaler's tiles (self-ensembled if asked) at `request.scale`, row by row into `write`
    (core.tiling's RowWriter), or, with `write` None, the whole 1×3×sH×sW canvas returned; resized
    when the model's own factor differs; running out of memory becomes an error that says what to
    do. The network's time is the clock's "tiles"."""
    scale = upscaler.tile_scale(request)
    tile = upscaler.tile_for(request.tile)
    lo, hi = _TILES
    nchw = np.ascontiguousarray(color.transpose(2, 0, 1)[None])

    def run_tile(tile):
        started = time.perf_counter()
        try:
            return upscaler.run_tile(tile, context)
        finally:
            clock.add("tiles", time.perf_counter() - started)

    if request.ensemble:
        run_tile = self_ensemble(run_tile)
    started = time.perf_counter()

    def tile_progress(done: int, total: int) -> None:
        """Names the tile under way (done + 1), with the time left once two tiles timed it."""
        if done == total:
            report(hi, f"Upscaled {total} tile(s)")
            return
        stage = f"Upscaling: tile {done + 1} of {total}"
        if done >= _TIME_LEFT_AFTER:
            left = (time.perf_counter() - started) / done * (total - done)
            stage += f", {time_left(left)}"
        report(lo + (hi - lo) * done / total, stage)

    try:
        out = tiled_upscale(run_tile, nchw, scale, tile, request.overlap, progress=tile_progress,
                            cancel=is_cancelled, write=write if scale == request.scale else None)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "out of memory" not in str(exc).lower():
            raise
        raise BlindUpscaleError(f"out of memory while upscaling with tiles of {tile} px; "
                                "try a smaller tile size or a smaller region") from None
    if out is None:
        return None
    if scale != request.scale:  # the model's own factor: the whole canvas, resized
        out = _resize(out, color.shape[0] * request.scale, color.shape[1] * request.scale)
    if write is None:
        return out
    write(0, out)
    return None


class _StageClock:
    """Seconds per stage of a job, into the caller's dict (or nowhere): `lap(stage)` books the
    time since the last lap minus what `add` booked to other stages inside it."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings if timings is not None else {}
        self.started = self.last = time.perf_counter()
        self.inside = 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        self.inside += seconds

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.add(stage, now - self.last - self.inside)
        self.last, self.inside = now, 0.0

    def total(self) -> float:
        return time.perf_counter() - self.started


STORE_ROWS = 64
"""Rows `_store` converts at a time: its float temporaries stay a few MB, not two copies of a
tile row band (2 x 98 MB for an 8000 px wide x4 result), which set the peak of a large job."""


def _store(target: np.ndarray, values: np.ndarray) -> None:
    """Clip float samples to 0..1 into `target`, rounding to its integer scale if it has one."""
    if target.dtype == np.float32:
        np.clip(values, 0.0, 1.0, out=target)
        return
    top = np.iinfo(target.dtype).max
    for y in range(0, values.shape[0], STORE_ROWS):
        rows = np.clip(values[y:y + STORE_ROWS], 0.0, 1.0)
        rows *= top
        rows += 0.5
        target[y:y + STORE_ROWS] = rows


def time_left(seconds: float) -> str:
    """"about 40 s left", "about 3 min left": rounded as a person would say it."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


def _with_finite_samples(image: Image) -> Image:
    """NaN and infinite samples (float files) would spread through every tile they touch: they
    become 0 (NaN, -inf) or 1 (+inf) before anything runs, with a warning."""
    if image.bit_depth != 32:
        return image
    bad = int(np.count_nonzero(~np.isfinite(image.pixels)))
    if not bad:
        return image
    warnings.warn(InputWarning(f"{bad} samples were NaN or infinite; they were replaced by 0 "
                               "(NaN, -inf) or 1 (+inf)"), stacklevel=3)
    pixels = np.nan_to_num(image.pixels, nan=0.0, posinf=1.0, neginf=0.0)
    return Image(pixels, image.bit_depth, image.icc, image.exif)


def _add_out_of_range(result: np.ndarray, pixels: np.ndarray, scale: int) -> None:
    """Models run on 0..1; a float image's colour outside that range (HDR highlights, negative
    values) is carried to the result by the bicubic, so the range is kept."""
    colour = pixels.shape[2] - (1 if pixels.shape[2] in (2, 4) else 0)
    excess = pixels[..., :colour] - np.clip(pixels[..., :colour], 0.0, 1.0)
    if not excess.any():
        return
    nchw = np.ascontiguousarray(excess.transpose(2, 0, 1)[None])
    result[..., :colour] += bicubic_upscale(nchw, scale)[0].transpose(1, 2, 0)


def _resize(nchw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bring a model's native-scale output to the requested size (antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(nchw)
    with torch.inference_mode():
        y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False,
                          antialias=height < x.shape[2])
    return y.numpy()


def find_faces(rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """Faces as (x, y, w, h, score) through core.faces when it is installed, else none."""
    try:
        from core import faces
    except ImportError:
        return []
    return [(x, y, w, h, score) for x, y, w, h, score in faces.detect_faces(rgb)]
