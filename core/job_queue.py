"""The engine's job queue: what the server (core/server.py) and the standalone editor's in-process
engine (plugin/standalone/local_engine.py) both run, so every host gets the same behaviour.

Jobs run one at a time, in order, on one worker thread (one computation at a time: the cached
models are shared). At most `max_waiting` jobs wait; a queued job is cancelled at once, a running
one at its next tile or progress report. Linear-light images are sRGB-encoded for the model and
the result decoded again. A failed job's error is one sentence; a bug fails the job, never the
worker. The last `keep_finished` finished jobs keep their status and result.
"""
from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field

from core.engine import Box, Engine, UpscaleRequest
from core.errors import BlindUpscaleError, Cancelled
from core.image_io import from_raw, to_raw
from core.transfer import map_colour, srgb_decode, srgb_encode
from protocol.errors import sentence
from protocol.raw_image import RawImage

log = logging.getLogger(__name__)

MAX_WAITING = 4
KEEP_FINISHED = 4


class UnknownJob(BlindUpscaleError):
    """No job has this id (never submitted, or finished long enough ago to be forgotten)."""


class NoResult(BlindUpscaleError):
    """The job has not finished with a result (it is queued, running, failed or cancelled)."""


class QueueFull(BlindUpscaleError):
    """`max_waiting` jobs are already waiting."""


@dataclass
class Job:
    id: str
    image: RawImage | None
    request: UpscaleRequest
    linear: bool
    state: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    stage: str = "queued"
    error: str | None = None
    result: RawImage | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    finished: float = 0.0

    def status(self) -> dict:
        return {"state": self.state, "progress": round(self.progress, 4), "stage": self.stage,
                "error": self.error}


class JobQueue:
    """Upscale jobs on raw images, run one at a time by `engine` on a worker thread."""

    def __init__(self, engine: Engine | None = None, max_waiting: int = MAX_WAITING,
                 keep_finished: int = KEEP_FINISHED):
        self.engine = engine or Engine()
        self.max_waiting = max_waiting
        self.keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._current: Job | None = None
        self._worker = threading.Thread(target=self._work, name="upscale-worker", daemon=True)
        self._worker.start()

    def busy(self) -> bool:
        return self._current is not None or not self._queue.empty()

    def analyse(self, image: RawImage, region: Box | None = None, linear: bool = False) -> dict:
        """`Engine.analyse` on the caller's thread: an estimate never waits behind a long job."""
        decoded = from_raw(image)
        if linear:
            decoded = map_colour(decoded, srgb_encode)
        return self.engine.analyse(decoded, region)

    def submit(self, image: RawImage, request: UpscaleRequest, linear: bool = False) -> str:
        """Queue a job; the result comes back with the input's sample type (and transfer)."""
        with self._lock:
            waiting = sum(1 for job in self._jobs.values() if job.state == "queued")
            if waiting >= self.max_waiting:
                raise QueueFull(f"the engine already has {waiting} jobs waiting; "
                                "try again when one has finished")
            job = Job(f"{next(self._ids)}-{secrets.token_hex(4)}", image, request, linear)
            self._jobs[job.id] = job
        self._queue.put(job)
        return job.id

    def status(self, job_id: str) -> dict:
        return self._job(job_id).status()

    def cancel(self, job_id: str) -> dict:
        job = self._job(job_id)
        with self._lock:
            self._stop(job)
        return job.status()

    def result(self, job_id: str) -> RawImage:
        job = self._job(job_id)
        if job.state != "done" or job.result is None:
            raise NoResult(f"job {job_id} has no result (it is {job.state})")
        return job.result

    def cancel_all(self) -> None:
        """Ask every job to stop, without waiting (the standalone editor's window closing)."""
        with self._lock:
            for job in list(self._jobs.values()):  # _finish may forget old jobs
                self._stop(job)

    def close(self, timeout: float = 5.0) -> bool:
        """Cancel every job and stop the worker, waiting up to `timeout` s for the current step to
        end; whether the worker has stopped."""
        self.cancel_all()
        self._queue.put(None)
        self._worker.join(timeout=timeout)
        return not self._worker.is_alive()

    # ------------------------------------------------------------ worker
    def _job(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"there is no job {job_id} on this engine")
        return job

    def _stop(self, job: Job) -> None:
        """Called with the lock held: a queued job ends now, a running one at its next check."""
        job.cancel_event.set()
        if job.state == "queued":
            self._finish(job, "cancelled", "cancelled")

    def _finish(self, job: Job, state: str, stage: str, error: str | None = None) -> None:
        """Called with the lock held; forgets all but the last `keep_finished` finished jobs."""
        job.state, job.stage, job.error = state, stage, error
        job.image = None
        job.finished = time.monotonic()
        done = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished)
        for old in done[:-self.keep_finished]:
            del self._jobs[old.id]

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state != "queued":
                    continue
                job.state, job.stage = "running", "Reading the image"
                self._current = job
            try:
                self._run(job)
            finally:
                self._current = None

    def _run(self, job: Job) -> None:
        def progress(fraction: float, stage: str | None = None) -> None:
            job.progress = max(0.0, min(1.0, float(fraction)))
            if stage:
                job.stage = stage

        try:
            raw = job.image
            assert raw is not None  # only _finish clears it, and a running job is not finished yet
            image = from_raw(raw)
            if job.linear:
                image = map_colour(image, srgb_encode)
            out = self.engine.upscale(image, job.request, progress, job.cancel_event)
            if job.cancel_event.is_set():  # asked after the last tile: the user no longer wants it
                raise Cancelled()
            if job.linear:
                out = map_colour(out, srgb_decode)
            job.result = to_raw(out, raw.dtype)
            job.progress = 1.0
            with self._lock:
                self._finish(job, "done", job.stage if job.stage.startswith("Done") else "Done")
        except Cancelled:
            with self._lock:
                self._finish(job, "cancelled", "cancelled")
        except BlindUpscaleError as exc:
            self._fail(job, sentence(exc.message) or "The engine failed.")
        except MemoryError:
            self._fail(job, "Not enough memory for this image; try a smaller tile size or a selection.")
        except Exception as exc:  # a bug in a method must fail the job, not the worker thread
            log.exception("job %s failed", job.id)
            self._fail(job, f"Internal error in the engine ({type(exc).__name__}: {exc}).")

    def _fail(self, job: Job, error: str) -> None:
        with self._lock:
            self._finish(job, "failed", "failed", error)
