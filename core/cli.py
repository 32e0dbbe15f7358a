"""`python -m core models|upscale|analyse|batch|serve`: the engine from a shell.

Every failure is one line `error: <message>` on stderr and exit status 1 (2 for a malformed
command line); `upscale` never leaves a partial output file behind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from core.errors import BlindUpscaleError, InputError, InputWarning

EXIT_ERROR, EXIT_USAGE = 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single `error:` line like every other failure."""

    def error(self, message: str):
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{what} must be integers separated by commas, got {text!r}") from None


def parse_box(text: str, what: str = "region") -> tuple[int, int, int, int]:
    values = _ints(text, what)
    if len(values) != 4:
        raise InputError(f"{what} must be X,Y,W,H, got {text!r}")
    x, y, w, h = values
    return x, y, w, h


def parse_faces(text: str):
    if text in ("auto", "none"):
        return text
    return [list(parse_box(part, "face box")) for part in text.split(";") if part.strip()]


def add_upscale_options(parser: argparse.ArgumentParser) -> None:
    """The request options `upscale` and `batch` share (see `request_from_args`)."""
    parser.add_argument("--model", default=None, metavar="ID",
                        help="default: the method that does best on real photos among those with weights")
    parser.add_argument("--config", default=None, help="model configuration (default: one with weights)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx", "openvino"), default="auto",
                        help="auto: the runtime measured fastest for the model on this CPU (see README, 'Speed')")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all physical cores)")
    parser.add_argument("--tile", type=int, default=256, help="tile side in input pixels, 0 = no tiling")
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--support", default=None, metavar="X,Y,W,H",
                        help="CMDSR: the area that shows the degradation")
    parser.add_argument("--faces", default="auto", metavar="auto|none|X,Y,W,H[;...]",
                        help="MetaF2N: face boxes")
    parser.add_argument("--blur", type=float, default=None, help="MM-RealSR blur dial 0..1")
    parser.add_argument("--noise", type=float, default=None, help="MM-RealSR noise dial 0..1")
    parser.add_argument("--restore-faces", action="store_true",
                        help="restore the faces found with the face restorer and paste them back over the result")
    parser.add_argument("--ensemble", action="store_true",
                        help="average the 8 orientations of every tile: a little sharper, 8x slower")
    parser.add_argument("--max-pixels", type=int, default=None, help="largest input accepted")


def request_from_args(args):
    """The UpscaleRequest the options of `add_upscale_options` (and `--region`, if any) describe."""
    from core.engine import UpscaleRequest
    from core.registry import list_models
    from protocol.client import default_model

    region = getattr(args, "region", None)
    model = args.model or default_model([spec.to_dict() for spec in list_models()])
    return UpscaleRequest.from_dict({
        "model": model, "config": args.config, "scale": args.scale, "device": args.device,
        "backend": args.backend, "precision": args.precision, "threads": args.threads,
        "tile": args.tile, "overlap": args.overlap,
        "region": parse_box(region, "region") if region else None,
        "support": parse_box(args.support, "support region") if args.support else None,
        "faces": parse_faces(args.faces), "blur": args.blur, "noise": args.noise,
        "ensemble": args.ensemble, "restore_faces": args.restore_faces,
    })


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Blind Upscale engine")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    models = sub.add_parser("models", help="list the models and the status of their weights")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    up = sub.add_parser("upscale", help="upscale an image file")
    up.add_argument("input", metavar="IN")
    up.add_argument("output", metavar="OUT", help="PNG, JPEG, TIFF or WebP; written atomically")
    add_upscale_options(up)
    up.add_argument("--region", default=None, metavar="X,Y,W,H", help="upscale only this area")
    up.add_argument("--overwrite-input", action="store_true",
                    help="allow OUT to be the input file itself (its original is then lost)")
    up.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    an = sub.add_parser("analyse", help="estimate blur and noise, find faces")
    an.add_argument("input", metavar="IN")
    an.add_argument("--region", default=None, metavar="X,Y,W,H")
    an.add_argument("--max-pixels", type=int, default=None)
    an.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run the engine server (see core/server.py)", add_help=False)
    serve.add_argument("args", nargs=argparse.REMAINDER)

    from core import batch

    batch.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # argparse's REMAINDER refuses a first word starting with "--": the server parses its own options.
    args = (argparse.Namespace(command="serve", args=argv[1:]) if argv[:1] == ["serve"]
            else build_parser().parse_args(argv))
    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = _show_warning
        return _run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line, like an error: `warning: <message>`."""
    sys.stderr.write(f"warning: {message}\n")


def _run(args) -> int:
    try:
        if args.command == "models":
            return _models(args)
        if args.command == "upscale":
            return _upscale(args)
        if args.command == "analyse":
            return _analyse(args)
        if args.command == "batch":
            from core import batch

            return batch.run(args)
        return _serve(args)
    except BlindUpscaleError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return EXIT_ERROR
    except MemoryError:
        sys.stderr.write("error: out of memory; try a smaller --tile or a smaller image\n")
        return EXIT_ERROR
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get("BLIND_UPSCALE_DEBUG"):
            raise
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc} "
                         "(set BLIND_UPSCALE_DEBUG=1 to see the traceback)\n")
        return EXIT_ERROR


def _models(args) -> int:
    from core.registry import list_models

    specs = list_models()
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return 0
    methods = [s for s in specs if s.checkpoint is None]
    print(f"{'id':10} {'family':10} {'scale':>5}  {'weights':8} configs")
    for s in methods:
        configs = ", ".join(f"{c.name} ({c.weights})" for c in s.configs)
        print(f"{s.id:10} {s.family:10} {'x' + str(s.scale):>5}  {s.weights:8} {configs}")
    from core.weights import models_dir

    print(f"\nyour own models (in {models_dir()}):")
    for s in specs:
        if s.checkpoint is not None and s.problem:
            print(f"{s.id}: unusable: {s.problem}")
        elif s.checkpoint is not None:
            print(f"{s.id}: {s.summary}{_size_note(s.checkpoint)}")
    if len(methods) == len(specs):
        print("none (put .safetensors or .pth files of spandrel-supported models there)")
    return 0


def _size_note(checkpoint: dict) -> str:
    """A user model's input size requirements, when it has any."""
    size = checkpoint.get("size_requirements") or {}
    notes = [f"at least {size['minimum']} px"] if size.get("minimum") else []
    notes += [f"a multiple of {size['multiple_of']} px"] if size.get("multiple_of", 1) > 1 else []
    notes += ["square"] if size.get("square") else []
    return f"; input {', '.join(notes)}" if notes else ""


def _load(path: str, max_pixels: int | None):
    from core.image_io import DEFAULT_MAX_PIXELS, load_image

    return load_image(path, max_pixels or DEFAULT_MAX_PIXELS)


def _check_output(path: Path, has_alpha: bool) -> None:
    """Refuse an unusable OUT before spending minutes on the upscale."""
    from core.image_io import FORMATS

    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot save {path.name}: unknown extension (use .png, .jpg, .tif or .webp)")
    if not path.parent.is_dir():
        raise InputError(f"cannot save {path.name}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"cannot save {path}: it is a folder; name an image file")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot save {path.name}: folder {path.parent} is not writable")
    if fmt == "JPEG" and has_alpha:
        raise InputError(f"cannot save {path.name}: JPEG has no alpha channel; use PNG, TIFF or WebP")


def _refuse_input_as_output(source: Path, target: Path) -> None:
    """OUT naming the input file (the same path, another path to it, a symlink or hard link)
    would replace the user's original with the result."""
    try:
        same = target.exists() and os.path.samefile(source, target)
    except OSError:
        same = False
    if same or source.resolve() == target.resolve():
        raise InputError(f"{target} is the input file: writing there would replace the original; "
                         "choose another OUT, or pass --overwrite-input to replace it")


def upscale_file(engine, source: Path, target: Path, request, max_pixels: int | None = None,
                 progress=None, cancel=None, timings: dict[str, float] | None = None):
    """One image file to one image file: the path every `upscale` and every image of a `batch`
    takes. Returns the result `Image` (integer pixels where the output is 8/16-bit, so a large
    output holds no float canvas); OUT is written atomically or not at all. `timings` gets where
    the time went: read, the engine's stages, encode."""
    from core.image_io import save_image

    timings = {} if timings is None else timings
    started = time.perf_counter()
    image = _load(str(source), max_pixels)
    timings["read"] = time.perf_counter() - started
    _check_output(target, image.has_alpha)
    result = engine.upscale(image, request, progress, cancel, as_integers=True, timings=timings)
    encoding = time.perf_counter()
    save_image(result, target)
    timings["encode"] = time.perf_counter() - encoding
    return result


def _upscale(args) -> int:
    from core.engine import Engine

    out_path = Path(args.output)
    if not args.overwrite_input:
        _refuse_input_as_output(Path(args.input), out_path)
    request = request_from_args(args)
    started = time.perf_counter()
    show = sys.stderr.isatty() and not args.json
    status = ""

    def progress(fraction: float, stage: str) -> None:
        nonlocal status
        status = stage
        if show:
            sys.stderr.write(f"\r{fraction * 100:5.1f}%  {stage:<40}")
            sys.stderr.flush()

    timings: dict[str, float] = {}
    result = upscale_file(Engine(), Path(args.input), out_path, request, args.max_pixels, progress,
                          timings=timings)
    if show:
        sys.stderr.write("\n")
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"output": str(out_path), "model": request.model, "width": result.width,
                          "height": result.height, "channels": result.channels,
                          "bit_depth": result.bit_depth, "seconds": round(seconds, 3), "status": status,
                          "timings": {stage: round(t, 3) for stage, t in timings.items()}}))
    else:
        print(f"{out_path} ({result.width}x{result.height}, {request.model}, {seconds:.1f} s)")
        notes = status.split("; ", 1)[1] if "; " in status else ""
        if notes:
            print(notes)
    return 0


def _analyse(args) -> int:
    from core.engine import Engine

    image = _load(args.input, args.max_pixels)
    region = parse_box(args.region, "region") if args.region else None
    result = Engine().analyse(image, region)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"blur {result['blur']:.2f}  noise {result['noise']:.2f}  ({result['method']})  "
              f"faces {len(result['faces'])}")
    return 0


def _serve(args) -> int:
    try:
        from core import server
    except ImportError as exc:
        raise BlindUpscaleError(f"the engine server is not available ({exc})") from None
    return server.main(args.args) or 0
