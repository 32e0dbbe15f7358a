"""The engine inside the standalone editor's process, behind the same client interface as the
HTTP `protocol.client.EngineClient` (docs/internals.md, "The client interface").

A thin client over `core.job_queue.JobQueue`, the queue the server runs too, so jobs behave the
same in both hosts (one at a time, cancel, queue limit, linear light, one-sentence errors).
`core` (numpy, torch) is imported on first use: the panel sees RawImages and dicts.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from protocol.errors import EngineError, sentence
from protocol.raw_image import RawImage

VERSION = "in-process"
ROOT = Path(__file__).resolve().parents[2]


class LocalEngine:
    """`health/models/analyse/submit/status/cancel/result` over a core job queue in this process."""

    def __init__(self, engine=None):
        from core.job_queue import JobQueue

        self.jobs = JobQueue(engine)

    def health(self) -> dict:
        from core import face_restore
        from core.image_io import DEFAULT_MAX_PIXELS
        from core.runtimes import select_device
        from core.weights import models_dir

        return {"version": VERSION, "device": _call(select_device, "auto"), "busy": self.jobs.busy(),
                "max_pixels": DEFAULT_MAX_PIXELS, "models_dir": str(models_dir()),
                "face_restorer": _call(face_restore.status)}

    def models(self) -> list[dict]:
        from core.registry import list_models

        return [spec.to_dict() for spec in _call(list_models)]

    def analyse(self, image: RawImage, region=None) -> dict:
        box = tuple(int(v) for v in region) if region is not None else None
        return _call(self.jobs.analyse, image, box, _is_linear(image))

    def submit(self, image: RawImage, request: dict) -> str:
        from core.engine import UpscaleRequest

        parsed = _call(UpscaleRequest.from_dict, dict(request))
        return _call(self.jobs.submit, image, parsed, _is_linear(image))

    def status(self, job_id: str) -> dict:
        return _call(self.jobs.status, str(job_id))

    def cancel(self, job_id: str) -> None:
        _call(self.jobs.cancel, str(job_id))

    def result(self, job_id: str) -> RawImage:
        return _call(self.jobs.result, str(job_id))

    def cancel_all(self) -> None:
        """Ask every job to stop and return at once (the window closing during a run)."""
        self.jobs.cancel_all()

    def close(self) -> None:
        """Cancel everything and stop the worker (at the end of the process, before torch goes).
        It waits for the running step's next cancel point, a minute at most: a worker still inside
        torch when Python finalises aborts the process (seen when the editor quit during
        MetaF2N's adaptation step, whose chunks take seconds on a busy CPU)."""
        self.jobs.close(timeout=60.0)


def _is_linear(image: RawImage) -> bool:
    """Linear-light samples say so in their header, as on the wire (docs/internals.md)."""
    return image.header().get("transfer") == "linear"


def _call(function, *args):
    """Run a core call, turning its user-facing errors into EngineError sentences."""
    from core.errors import BlindUpscaleError

    try:
        return function(*args)
    except BlindUpscaleError as exc:
        raise EngineError(sentence(exc.message) or "The engine failed.") from None


def start_local_engine() -> tuple[LocalEngine | None, str | None]:
    """The in-process engine, or None and what to do when this Python cannot run it."""
    try:
        return LocalEngine(), None
    except ImportError as exc:
        return None, missing_packages_message(exc)


def missing_packages_message(error: ImportError) -> str:
    """What went wrong (the Python tried, the import that failed) and the command that mends it."""
    venv = ROOT / ".venv"
    build = f"cd {shlex.quote(str(ROOT))} && python3 build.py run"
    if Path(sys.prefix).resolve() == venv.resolve():  # the project's own .venv lacks a package
        # without build.py's stamp (pyproject.toml's hash) the next run reinstalls the dependencies
        fix = f"reinstall its packages: rm -f {shlex.quote(str(venv / '.blind-upscale-stamp'))} && {build}"
    elif (venv / "bin" / "python").exists():
        fix = f"open the editor with the project's Python: {shlex.quote(str(venv / 'bin' / 'python'))} -m plugin.standalone"
    else:
        fix = f"create the project's Python environment and open the editor with it: {build}"
    return f"The engine cannot start in {sys.executable} ({error}). To fix it, {fix}"
