"""A batch on a Ray cluster (`python -m core batch ... --ray auto|local|ADDRESS`).

One task per image, never a part of one: an image's adaptation step (CMDSR's support set,
MetaF2N's faces) needs the whole image. The tasks go to actors (`BatchWorker`) that keep their
Engine, so a model is loaded once per worker, not once per image. Workers get file paths, not
pixels (Ray's object store handles large images of varying size badly): every node must see IN
and OUT at the same paths. Stopping cancels the tasks through Ray; a worker polls the cancel flag
between tiles, and its outputs are atomic, so a stop leaves no partial file.

Ray is optional (`python3 build.py cluster`). Its token authentication is asked for
(`RAY_AUTH_MODE=token`, the token from ~/.ray/auth_token or RAY_AUTH_TOKEN): without it a
driver cannot join a cluster started by `ray start`, and with it a stranger on the network cannot.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path

from core.batch import Item, Outcome, Runner, process_item
from core.errors import BlindUpscaleError, Cancelled, InputError

INSTALL_HINT = ("--ray needs Ray, which is not installed: run `python3 build.py cluster` in the project "
                "folder (or `.venv/bin/python -m pip install 'ray>=2.52'`)")
STOP_GRACE_SECONDS = 20.0
"""How long a stop waits for the running tasks to notice their cancel flag before killing them."""


def import_ray(address: str = "local"):
    """Ray, set to send its token to the cluster at `address` unless this process starts its own
    (Ray reads RAY_AUTH_MODE when it is imported; a cluster started here makes its own token)."""
    if address != "local":
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise BlindUpscaleError(INSTALL_HINT) from None
    return ray


class BatchWorker:
    """A Ray actor: one Engine whose models stay loaded across the images it is given."""

    def __init__(self):
        from core.engine import Engine

        self.engine = Engine()

    def upscale(self, item: Item, request: dict, max_pixels: int | None) -> Outcome:
        import ray

        from core.engine import UpscaleRequest

        cancelled = ray.get_runtime_context().is_canceled
        return process_item(self.engine, item, UpscaleRequest.from_dict(request), max_pixels, cancel=cancelled)


QUIET = {"log_to_driver": False, "logging_level": logging.WARNING}
"""Worker output stays in Ray's logs: an image's failure comes back as its Outcome."""

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def start_local(ray, num_cpus: int | None = None) -> None:
    """A new one-machine Ray cluster (address="local": never one that `ray start` left running
    here) whose workers import this checkout, wherever the driver's working folder is (they inherit
    PYTHONPATH from the Ray processes this starts; a runtime_env would make Ray start fresh
    workers instead of the ones it has ready). Ray makes the token itself."""
    paths = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **QUIET)
    except BaseException:
        ray.shutdown()  # what had started (on a loaded machine a Ray process may time out starting)
        raise


@contextlib.contextmanager
def connected(ray, address: str) -> Iterator[None]:
    """Ray started ("local") or joined ("auto", HOST:PORT) for the block; a Ray this process
    already runs (a test's fixture) is used as it is and left running."""
    if ray.is_initialized():
        yield
        return
    try:
        if address == "local":
            start_local(ray)
        else:
            ray.init(address=address, **QUIET)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, its own auth errors...
        raise BlindUpscaleError(f"cannot start or reach the Ray cluster '{address}': {_reason(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def worker_count(resources: dict, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many workers of that size the cluster holds."""
    counts = []
    if cpus_per_worker > 0:
        counts.append(int(resources.get("CPU", 0) // cpus_per_worker))
    if gpus_per_worker > 0:
        counts.append(int(resources.get("GPU", 0) // gpus_per_worker))
    count = min(counts) if counts else 1
    if count < 1:
        raise BlindUpscaleError(
            f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs: "
            f"not enough for one worker of {cpus_per_worker:g} CPUs and {gpus_per_worker:g} GPUs")
    return count


def ray_runner(request, max_pixels: int | None, address: str, cpus_per_worker: float = 1.0,
               gpus_per_worker: float = 0.0) -> Runner:
    """A batch Runner (core/batch.py) on the Ray cluster at `address`: "local", "auto" or HOST:PORT."""
    if cpus_per_worker < 0 or gpus_per_worker < 0 or cpus_per_worker == gpus_per_worker == 0:
        raise InputError("--cpus-per-worker and --gpus-per-worker must not be negative, nor both 0")
    ray = import_ray(address)  # before any work: a missing Ray is a one-line error at once
    fields = request.to_dict()

    def run(items: list[Item], stop: threading.Event) -> Generator[Outcome, None, None]:
        if not items:
            return
        with connected(ray, address):
            worker = ray.remote(BatchWorker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
            count = min(len(items), worker_count(ray.cluster_resources(), cpus_per_worker, gpus_per_worker))
            actors = [worker.remote() for _ in range(count)]
            waiting = deque(items)
            running: dict = {}  # ObjectRef -> (actor, item)

            def give(actor) -> None:
                if waiting:
                    item = waiting.popleft()
                    running[actor.upscale.remote(item, fields, max_pixels)] = (actor, item)

            try:
                for actor in actors:
                    give(actor)
                while running:
                    if stop.is_set():
                        raise Cancelled()
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
                    for ref in ready:
                        actor, item = running.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except ray.exceptions.RayActorError as exc:  # the worker process died
                            outcome = Outcome.of(item, "failed", error=f"the Ray worker stopped: {_reason(exc)}")
                            actors.remove(actor)
                            actor = worker.remote()
                            actors.append(actor)
                        except ray.exceptions.RayError as exc:
                            outcome = Outcome.of(item, "failed", error=f"Ray: {_reason(exc)}")
                        give(actor)
                        yield outcome
            finally:
                _stop(ray, running, actors)

    return run


def _reason(exc: BaseException) -> str:
    """The exception's own message: the last line of what Ray prints (a remote traceback first)."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _stop(ray, running: dict, actors: list) -> None:
    """Cancel the tasks still running, give them STOP_GRACE_SECONDS to stop at a tile boundary,
    then end the workers; remove what a killed worker may have left half-written."""
    refs = list(running)
    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_SECONDS)
    for actor in actors:
        ray.kill(actor)
    for _, item in running.values():
        for partial in item.target.parent.glob(f".{item.target.name}.*.part"):
            partial.unlink(missing_ok=True)
