"""The engine inside the standalone editor's process, behind the same client interface as the
HTTP `protocol.client.EngineClient` (docs/internals.md, "The client interface").

Jobs run one at a time on a worker thread through `core.engine.Engine`; the GUI polls `status`.
Cancelling sets the job's event, which the engine checks between tiles and stages. Only this
module touches `core` (numpy, torch): the panel sees RawImages and dicts.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback

from protocol.errors import EngineError, sentence
from protocol.raw_image import RawImage

log = logging.getLogger(__name__)
VERSION = "in-process"


class _LocalJob:
    def __init__(self, job_id: str, image: RawImage, request):
        self.id = job_id
        self.image = image
        self.request = request
        self.state = "queued"
        self.progress = 0.0
        self.stage = "waiting"
        self.error: str | None = None
        self.result: RawImage | None = None
        self.cancel_event = threading.Event()

    def status(self) -> dict:
        return {"state": self.state, "progress": self.progress, "stage": self.stage, "error": self.error}


class LocalEngine:
    """`health/models/analyse/submit/status/cancel/result`, running core.engine.Engine on a thread."""

    def __init__(self, engine=None):
        from core.engine import Engine

        self.engine = engine or Engine()
        self._jobs: dict[str, _LocalJob] = {}
        self._queue: "queue.Queue[_LocalJob | None]" = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._compute = threading.Lock()  # one engine computation at a time (shared model objects)
        self._busy = False
        self._worker = threading.Thread(target=self._work, name="blind-upscale-engine", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ client interface
    def health(self) -> dict:
        from core.image_io import DEFAULT_MAX_PIXELS
        from core.runtimes import select_device

        return {"version": VERSION, "device": _call(select_device, "auto"), "busy": self._busy,
                "max_pixels": DEFAULT_MAX_PIXELS}

    def models(self) -> list[dict]:
        from core.registry import list_models

        return [spec.to_dict() for spec in _call(list_models)]

    def analyse(self, image: RawImage, region=None) -> dict:
        from core.image_io import from_raw

        box = tuple(int(v) for v in region) if region is not None else None
        with self._compute:
            return _call(self.engine.analyse, from_raw(image), box)

    def submit(self, image: RawImage, request: dict) -> str:
        from core.engine import UpscaleRequest

        parsed = _call(UpscaleRequest.from_dict, dict(request))
        job = _LocalJob(str(next(self._ids)), image, parsed)
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put(job)
        return job.id

    def status(self, job_id: str) -> dict:
        return self._job(job_id).status()

    def cancel(self, job_id: str) -> None:
        job = self._job(job_id)
        job.cancel_event.set()
        with self._lock:
            if job.state == "queued":
                job.state, job.stage = "cancelled", "cancelled"

    def result(self, job_id: str) -> RawImage:
        job = self._job(job_id)
        if job.state != "done" or job.result is None:
            raise EngineError(f"Job {job_id} has no result (it is {job.state}).")
        with self._lock:
            self._jobs.pop(job_id, None)  # fetched once: the memory goes back
        return job.result

    def close(self) -> None:
        """Cancel everything and stop the worker (the window calls this when it closes)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_event.set()
        self._queue.put(None)
        self._worker.join(timeout=5.0)

    # ------------------------------------------------------------ worker
    def _job(self, job_id: str) -> _LocalJob:
        with self._lock:
            job = self._jobs.get(str(job_id))
        if job is None:
            raise EngineError(f"There is no job {job_id}.")
        return job

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state == "cancelled":
                    continue
                job.state, job.stage = "running", "starting"
            self._busy = True
            try:
                with self._compute:
                    self._run(job)
            finally:
                self._busy = False
                job.image = None

    def _run(self, job: _LocalJob) -> None:
        from core.errors import BlindUpscaleError, Cancelled
        from core.image_io import from_raw, to_raw

        def progress(fraction: float, stage: str) -> None:
            job.progress, job.stage = max(0.0, min(1.0, float(fraction))), stage

        try:
            image = from_raw(job.image)
            upscaled = self.engine.upscale(image, job.request, progress, job.cancel_event)
            if job.cancel_event.is_set():
                raise Cancelled()
            job.result = to_raw(upscaled, job.image.dtype)
        except Cancelled:
            job.state, job.stage = "cancelled", "cancelled"
            return
        except BlindUpscaleError as exc:
            job.state, job.error = "failed", sentence(exc.message)
            return
        except MemoryError:
            job.state, job.error = "failed", "Not enough memory for this image; try a smaller tile size or a selection."
            return
        except Exception as exc:  # a bug in a method must not take the editor down: report it
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            job.state, job.error = "failed", f"Internal error in the engine ({type(exc).__name__}: {exc})."
            return
        job.progress, job.stage, job.state = 1.0, "done", "done"


def _call(function, *args):
    """Run a core call, turning its user-facing errors into EngineError sentences."""
    from core.errors import BlindUpscaleError

    try:
        return function(*args)
    except BlindUpscaleError as exc:
        raise EngineError(sentence(exc.message)) from None

