"""`python -m core batch IN OUT`: every image of a folder, a glob or a list of paths, upscaled to
the same relative path under OUT, in this process or on a Ray cluster (`--ray`, core/cluster.py).

Every image takes the path `upscale` takes (`core.cli.upscale_file`), so a batch writes the very
file `upscale` would. Outputs are written atomically, so an output that exists with the size the
request gives is complete: a second run skips it unless `--overwrite`. A file that fails is
reported (path and one-line reason) and the batch goes on; the exit status is 1 when any image
failed or the batch was stopped (Ctrl-C), which leaves no partial file behind.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from core.cli import add_upscale_options, request_from_args, upscale_file
from core.errors import BlindUpscaleError, Cancelled, InputError
from core.image_io import FORMATS, image_size

IMAGE_SUFFIXES = frozenset(FORMATS)
"""The files a batch takes: those it can write back in their own format."""


@dataclass(frozen=True)
class Item:
    """One image of the batch: where it is read and where its result goes."""

    source: Path
    target: Path


@dataclass
class Outcome:
    """What became of one image; a `--json` line."""

    input: str
    output: str
    status: str  # "done" | "skipped" | "failed"
    error: str | None = None
    width: int = 0  # of the result
    height: int = 0
    megapixels: float = 0.0  # of the input
    seconds: float = 0.0

    @classmethod
    def of(cls, item: Item, status: str, **values) -> Outcome:
        return cls(str(item.source), str(item.target), status, **values)


# ---------------------------------------------------------------- what to do
def collect(spec: str, out_dir: Path, pattern: str | None = None, recursive: bool = False) -> list[Item]:
    """The images IN names (a folder, a list file of paths, an image, or a glob pattern), each with
    its target: the same path relative to IN (a glob's fixed folder, a list's folder or the
    folder all its paths share), under OUT. Files under OUT itself are never inputs."""
    path = Path(spec)
    if path.is_dir():
        base = path
        if recursive:
            found: Iterable[Path] = path.rglob(pattern or "*")
        else:
            found = path.glob(pattern) if pattern else path.iterdir()
        sources = [p for p in found if p.is_file()]
    elif path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        sources = _read_list(path)
        base = _shared_folder(sources, path.parent)
    elif path.is_file():
        sources, base = [path], path.parent
    elif glob.has_magic(spec):
        sources = [Path(p) for p in glob.glob(spec, recursive=recursive) if Path(p).is_file()]
        base = _glob_root(spec)
    else:
        raise InputError(f"{spec} is not a folder, an image, a list of paths or a glob pattern")
    base = _absolute(base)
    out_dir = _absolute(out_dir)
    unique = {_absolute(s) for s in sources if s.suffix.lower() in IMAGE_SUFFIXES}
    inputs = sorted(s for s in unique if not s.is_relative_to(out_dir))
    if unique and not inputs:
        raise InputError(f"every image of {spec} is inside OUT ({out_dir}), where the results would replace "
                         "them; choose an OUT outside IN")
    if not inputs:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"no images ({kinds}) found in {spec}"
                         + ("" if recursive or not path.is_dir() else "; add --recursive for sub-folders"))
    return [Item(s, out_dir / s.relative_to(base)) for s in inputs]


def _absolute(path: Path) -> Path:
    """Absolute and normalised, symlinks kept (the user's names appear in OUT)."""
    return Path(os.path.abspath(path))


def _read_list(path: Path) -> list[Path]:
    """One path a line; blank lines and lines starting with # are skipped; relative paths are
    relative to the list's folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list of images {path}: {exc}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [path.parent / entry for entry in entries]


def _shared_folder(sources: list[Path], preferred: Path) -> Path:
    """The folder targets are made relative to: the list's own folder when it holds every path."""
    paths = [_absolute(s) for s in sources]
    preferred = _absolute(preferred)
    if all(p.is_relative_to(preferred) for p in paths):
        return preferred
    return Path(os.path.commonpath([p.parent for p in paths])) if paths else preferred


def _glob_root(spec: str) -> Path:
    """The folders of a glob pattern before its first wildcard."""
    parts = Path(spec).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def is_complete(item: Item, scale: int) -> bool:
    """True when the target exists and has the size the request makes of the source."""
    source, target = image_size(item.source), image_size(item.target)
    return source is not None and target == (source[0] * scale, source[1] * scale)


# ---------------------------------------------------------------- one image
def process_item(engine, item: Item, request, max_pixels: int | None, cancel=None) -> Outcome:
    """Upscale one image; any failure but a stop becomes a failed Outcome with a one-line reason."""
    started = time.perf_counter()

    def failed(reason: str) -> Outcome:
        return Outcome.of(item, "failed", error=reason, seconds=round(time.perf_counter() - started, 3))

    try:
        item.target.parent.mkdir(parents=True, exist_ok=True)
        result = upscale_file(engine, item.source, item.target, request, max_pixels, cancel=cancel)
    except Cancelled:
        raise
    except BlindUpscaleError as exc:
        return failed(str(exc))
    except OSError as exc:
        return failed(f"cannot write {item.target.parent}: {exc.strerror or exc}")
    except MemoryError:
        return failed("out of memory; try a smaller --tile")
    except Exception as exc:  # a bug met on one file must not stop the others
        return failed(f"unexpected {type(exc).__name__}: {exc}")
    megapixels = result.width * result.height / request.scale ** 2 / 1e6
    return Outcome.of(item, "done", width=result.width, height=result.height, megapixels=round(megapixels, 6),
                      seconds=round(time.perf_counter() - started, 3))


Runner = Callable[[list[Item], threading.Event], Generator[Outcome, None, None]]
"""Upscales the items, yielding an Outcome per image in the order they finish; stops (raising
`Cancelled`) soon after the event is set."""


def local_runner(request, max_pixels: int | None) -> Runner:
    """The images one after the other in this process, on one Engine (its model stays loaded)."""

    def run(items: list[Item], stop: threading.Event) -> Generator[Outcome, None, None]:
        from core.engine import Engine

        engine = Engine()
        for item in items:
            if stop.is_set():
                raise Cancelled()
            yield process_item(engine, item, request, max_pixels, cancel=stop)

    return run


# ---------------------------------------------------------------- the batch
@dataclass
class Summary:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0
    stopped: bool = False

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.megapixels += outcome.megapixels

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = (f"{self.done} done, {self.skipped} skipped, {self.failed} failed of {self.total} "
                f"in {self.seconds:.1f} s ({self.megapixels_per_second:.2f} MP/s)")
        return text + (f"; stopped, {self.total - self.done - self.skipped - self.failed} not done"
                       if self.stopped else "")


def run_batch(items: list[Item], scale: int, runner: Runner, overwrite: bool = False,
              report: Callable[[Outcome], None] = lambda outcome: None,
              stop: threading.Event | None = None) -> Summary:
    """Skip the complete outputs (unless `overwrite`), run the rest, report every Outcome.
    Ctrl-C (or `stop`) ends the batch after the runner has stopped; no partial file remains."""
    summary = Summary(total=len(items))
    todo = []
    for item in items:
        if not overwrite and is_complete(item, scale):
            outcome = Outcome.of(item, "skipped")
            summary.add(outcome)
            report(outcome)
        else:
            todo.append(item)
    started = time.perf_counter()
    outcomes = runner(todo, stop or threading.Event())
    try:
        for outcome in outcomes:
            summary.add(outcome)
            summary.seconds = time.perf_counter() - started
            report(outcome)
    except (KeyboardInterrupt, Cancelled):
        summary.stopped = True
    finally:
        outcomes.close()  # a runner stops its work (Ray: cancels its tasks) here
        summary.seconds = time.perf_counter() - started
    return summary


class _Progress:
    """The terminal's view of a batch: a tqdm bar (images done/total, MP/s, ETA) on stderr, failures
    as `failed: PATH: reason` lines above it; with --json one JSON line per image on stdout."""

    def __init__(self, total: int, as_json: bool):
        from tqdm import tqdm

        self.as_json = as_json
        self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True,
                        disable=True if as_json else None)
        self.started = time.perf_counter()
        self.megapixels = 0.0

    def __call__(self, outcome: Outcome) -> None:
        if self.as_json:
            print(json.dumps(asdict(outcome)), flush=True)
        elif outcome.status == "failed":
            self.bar.write(f"failed: {outcome.input}: {outcome.error}", file=sys.stderr)
        if outcome.status == "skipped":
            self.bar.total -= 1  # the bar counts the work, so its rate and ETA are the work's
            self.bar.refresh()
            return
        self.megapixels += outcome.megapixels
        rate = self.megapixels / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{rate:.2f} MP/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def add_parser(sub) -> None:
    """The `batch` subcommand of `python -m core` (core/cli.py)."""
    batch = sub.add_parser("batch", help="upscale every image of a folder, a glob or a list of paths",
                           description=__doc__.split("\n\n")[0])
    batch.add_argument("input", metavar="IN", help="a folder, a glob pattern (quoted), or a text file of paths")
    batch.add_argument("output", metavar="OUT", help="folder for the results, same relative paths as under IN")
    add_upscale_options(batch)
    batch.add_argument("--pattern", default=None, metavar="GLOB",
                       help="only the files of the IN folder matching this (e.g. '*.png')")
    batch.add_argument("--recursive", action="store_true", help="include sub-folders (and ** in a glob)")
    batch.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    batch.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                       help="run on Ray: 'local' starts a one-machine cluster, 'auto' joins the running one, "
                            "or a head node's HOST:PORT (needs the cluster extra: python3 build.py cluster)")
    batch.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="N",
                       help="with --ray: CPUs (and torch threads) each worker gets")
    batch.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="N",
                       help="with --ray: GPUs each worker gets (0: CPU workers)")
    batch.add_argument("--json", action="store_true", help="one JSON line per image, then a summary line")


def run(args: argparse.Namespace) -> int:
    """`python -m core batch`: exit status 0 when every image is done or skipped."""
    request = request_from_args(args)
    if args.ray is None and (args.cpus_per_worker != 1.0 or args.gpus_per_worker != 0.0):
        raise InputError("--cpus-per-worker and --gpus-per-worker need --ray")
    items = collect(args.input, Path(args.output), args.pattern, args.recursive)
    if args.ray is None:
        runner = local_runner(request, args.max_pixels)
    else:
        from core.cluster import ray_runner

        runner = ray_runner(request, args.max_pixels, args.ray, args.cpus_per_worker, args.gpus_per_worker)
    progress = _Progress(len(items), args.json)
    try:
        summary = run_batch(items, request.scale, runner, args.overwrite, progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps({"summary": {**asdict(summary), "seconds": round(summary.seconds, 3)}}), flush=True)
    else:
        print(summary.line())
    if summary.stopped:
        sys.stderr.write("error: interrupted; the images not done are left for the next run\n")
    return 1 if summary.failed or summary.stopped else 0
