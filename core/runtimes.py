"""Torch modules, ONNX graphs (onnxruntime) and OpenVINO compiled models behind one interface:
`dict[str, ndarray] -> dict[str, ndarray]`, each at a precision (fp32, bf16, int8) and a thread count.

Device choice is CUDA first, then CPU. onnxruntime-gpu lists CUDAExecutionProvider even on a
machine without a GPU; asking for it there logs an error about libcuda and falls back silently.
So "auto" asks onnxruntime for CUDA only when torch sees a usable GPU, and an explicit "cuda"
request that ends up on the CPU is reported as an error instead of running slowly by surprise.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from core.errors import Cancelled, InputWarning, ModelError

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "onnx", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRECISIONS_OF = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
"""What each runtime can run: onnxruntime's CPU provider has no bf16 arithmetic (a bf16 graph
fails to load), int8 graphs come from onnxruntime's static quantization (core/quantize.py), which
OpenVINO cannot compile."""
_PACKAGE_OF = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}


def runtime_installed(backend: str) -> bool:
    """Whether the package a backend runs on can be imported (openvino is an optional extra)."""
    return importlib.util.find_spec(_PACKAGE_OF[backend]) is not None


def physical_cores() -> int:
    """Physical cores (hyper-threads of one core share its vector units, so SR gains nothing from
    them): distinct (physical id, core id) pairs of /proc/cpuinfo, else the logical count."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return os.cpu_count() or 1
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or os.cpu_count() or 1


THREADS_VARIABLE = "BLIND_UPSCALE_THREADS"


def default_threads() -> int:
    """$BLIND_UPSCALE_THREADS when set (a whole number), else all physical cores."""
    value = os.environ.get(THREADS_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else physical_cores()


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: `default_threads()`) and return it; onnxruntime
    sessions and OpenVINO models get the same number when they are made."""
    import torch

    count = threads or default_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def cpu_class() -> str:
    """The vector extensions that decide which runtime and precision are fastest on this CPU:
    "avx512_bf16", "avx512", "avx2" or "other" (the key of the measured choice in the manifest)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "other"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    for name in ("avx512_bf16", "avx512f", "avx2"):
        if name in flags:
            return name.removesuffix("f")
    return "other"
_job = threading.local()  # the cancel check of the job this thread runs, if any



@contextmanager
def cancel_checks(is_cancelled: Callable[[], bool]) -> Iterator[None]:
    """Within this block, a `TorchGraph` run on this thread stops between two of its layers with
    `Cancelled` once `is_cancelled()` is true: a tile of a slow network (seconds on a CPU) no longer
    delays a cancel, and a run that is not cancelled computes exactly what it would without it."""
    previous = getattr(_job, "is_cancelled", None)
    _job.is_cancelled = is_cancelled
    try:
        yield
    finally:
        _job.is_cancelled = previous


def _stop_if_cancelled(_module, _args) -> None:
    """The forward pre-hook `stoppable` puts on every layer: the cancel point inside a tile."""
    is_cancelled = getattr(_job, "is_cancelled", None)
    if is_cancelled is not None and is_cancelled():
        raise Cancelled()


_stoppable: weakref.WeakSet = weakref.WeakSet()  # layers that have the hook (graphs share modules)


def stoppable(module):
    """`module` with a cancel point before each of its layers (see `cancel_checks`); returned for chaining."""
    for layer in module.modules():
        if next(layer.children(), None) is None and layer not in _stoppable:
            layer.register_forward_pre_hook(_stop_if_cancelled)
            _stoppable.add(layer)
    return module


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def select_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; "cuda" without a GPU is an error."""
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r} (expected auto, cpu or cuda)")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ModelError("device 'cuda' was requested but no CUDA GPU is usable here; choose the CPU or Auto device")
    return device


class Graph:
    """A network as a function of named numpy arrays (float32 in, float32 out)."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    device: str

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TorchGraph(Graph):
    """An `nn.Module` whose forward takes the inputs positionally in `input_names` order and
    returns one tensor or a tuple in `output_names` order. bf16 runs under autocast with
    channels-last memory (the fast layout of oneDNN's bf16 convolutions)."""

    def __init__(self, module, input_names: Iterable[str] = ("input",),
                 output_names: Iterable[str] = ("output",), device: str = "cpu",
                 precision: str = "fp32"):
        import torch

        if precision not in PRECISIONS_OF["torch"]:
            raise ModelError(f"torch runs fp32 or bf16, not {precision}")
        self.device = select_device(device)
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.precision = precision
        self.module = stoppable(module.to(self.device).eval())
        if precision == "bf16":
            self.module = self.module.to(memory_format=torch.channels_last)
        self._torch = torch

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ModelError(f"graph input(s) missing: {', '.join(missing)}")
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(self.device)
                for n in self.input_names]
        with torch.inference_mode(), torch.autocast(self.device, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            out = self.module(*args)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        if len(out) != len(self.output_names):
            raise ModelError(f"module returned {len(out)} outputs, expected {len(self.output_names)}")
        return {n: t.detach().float().cpu().numpy() for n, t in zip(self.output_names, out)}


_sessions: dict[tuple, object] = {}
_sessions_lock = threading.Lock()


def onnx_providers(device: str = "auto") -> list[str]:
    """Execution providers to ask onnxruntime for, CUDA first where it can work."""
    import onnxruntime as ort

    device = select_device(device)
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("device 'cuda' was requested but this onnxruntime has no CUDA provider")
    return ["CPUExecutionProvider"]


def _file_key(path: str | os.PathLike) -> tuple[Path, int]:
    path = Path(path).resolve()
    try:
        return path, path.stat().st_mtime_ns
    except OSError:
        raise ModelError(f"ONNX file {path} does not exist") from None


def onnx_session(path: str | os.PathLike, providers: list[str], threads: int | None = None):
    """One cached `InferenceSession` per (file, modification time, providers, threads)."""
    import onnxruntime as ort

    path, mtime = _file_key(path)
    key = (str(path), mtime, tuple(providers), threads)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # keep provider fallback chatter off the user's stderr
            options.intra_op_num_threads = threads or 0  # 0: onnxruntime's own default
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ModelError(f"cannot load ONNX graph {path.name}: {exc}") from None
            _sessions[key] = session
    return session


class OnnxGraph(Graph):
    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int | None = None):
        providers = onnx_providers(device)
        self.session = onnx_session(path, providers, threads)
        active = self.session.get_providers()
        if (providers[0] == "CUDAExecutionProvider" and active[0] != "CUDAExecutionProvider"
                and device == "cuda"):
            raise ModelError("onnxruntime could not start its CUDA provider (check the CUDA and "
                             "cuDNN libraries); choose the CPU device")
        self.device = "cuda" if active[0] == "CUDAExecutionProvider" else "cpu"
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ModelError(f"graph input(s) missing: {', '.join(missing)}")
        feeds = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        outs = self.session.run(list(self.output_names), feeds)
        return dict(zip(self.output_names, outs))


_compiled: dict[tuple, Any] = {}


def _graph_name(names: set[str]) -> str:
    """The ONNX graph's own name of a tensor: OpenVINO merges the names of tensors it fuses
    (a graph input may also carry "/condition_net/Mul_output_0"); exporter-made names start
    with "/" or "onnx::"."""
    return min(names, key=lambda name: (name.startswith(("/", "onnx::")), name))


class OpenVinoGraph(Graph):
    """An ONNX graph compiled by OpenVINO for the CPU at fp32 or bf16 (bf16 only pays where the
    CPU has bf16 instructions; elsewhere OpenVINO computes in fp32). Compiled models are cached
    per (file, modification time, precision, threads) like onnxruntime sessions."""

    def __init__(self, path: str | os.PathLike, precision: str = "fp32", threads: int | None = None):
        import openvino as ov

        if precision not in PRECISIONS_OF["openvino"]:
            raise ModelError(f"OpenVINO runs fp32 or bf16 here, not {precision} (int8 runs on --backend onnx)")
        path, mtime = _file_key(path)
        key = (str(path), mtime, precision, threads)
        with _sessions_lock:
            compiled = _compiled.get(key)
            if compiled is None:
                config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
                if threads:
                    config["INFERENCE_NUM_THREADS"] = str(threads)
                try:
                    compiled = ov.Core().compile_model(str(path), "CPU", config)
                except Exception as exc:  # OpenVINO raises its own untyped errors
                    raise ModelError(f"OpenVINO cannot compile {path.name}: {exc}") from None
                _compiled[key] = compiled
        self.compiled = compiled
        self.device = "cpu"
        self.input_names = tuple(_graph_name(i.get_names()) for i in compiled.inputs)
        self.output_names = tuple(_graph_name(o.get_names()) for o in compiled.outputs)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ModelError(f"graph input(s) missing: {', '.join(missing)}")
        feeds = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        outs = self.compiled(feeds)
        return {n: np.asarray(outs[port]) for n, port in zip(self.output_names, self.compiled.outputs)}


def choose_runtime(offered: tuple[str, ...], stored: tuple[str, str] | None, device: str,
                   backend: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """The (backend, precision) a job runs on. `offered`: the model's backends, preferred first;
    `stored`: the choice measured for this model on this class of CPU (bench/speed.py writes it
    into the manifest), or None. "auto" takes the stored choice where it fits what was asked,
    else fp32 on the first offered backend; a runtime whose package is missing falls back to
    torch (with a warning when it was asked for by name)."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r} (expected {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r} (expected {', '.join(PRECISIONS)})")
    if backend != "auto" and backend not in offered:
        raise ModelError(f"this model cannot run on the {backend!r} backend (available: {', '.join(offered)})")
    if device == "cuda":  # the GPU path: torch or onnxruntime-gpu, measured choices are CPU ones
        if backend == "openvino" or precision == "int8":
            raise ModelError("OpenVINO and int8 run on the CPU; use --device cpu")
        return (offered[0] if backend == "auto" else backend), ("fp32" if precision == "auto" else precision)
    if stored is not None and stored[0] in offered and backend in ("auto", stored[0]) \
            and precision in ("auto", stored[1]):
        chosen = stored
    elif backend != "auto":
        chosen = (backend, "fp32" if precision == "auto" else precision)
    elif precision in ("auto", "fp32"):
        chosen = (offered[0], "fp32")
    else:
        runs_it = [b for b in offered if precision in PRECISIONS_OF[b] and runtime_installed(b)]
        if not runs_it:
            raise ModelError(f"no installed runtime of this model runs {precision}")
        chosen = (runs_it[0], precision)
    if chosen[1] not in PRECISIONS_OF[chosen[0]]:
        raise ModelError(f"the {chosen[0]} backend runs {' or '.join(PRECISIONS_OF[chosen[0]])}, "
                         f"not {chosen[1]}")
    if runtime_installed(chosen[0]):
        return chosen
    fallback = ("torch", chosen[1] if chosen[1] in PRECISIONS_OF["torch"] else "fp32")
    if backend != "auto":
        warnings.warn(InputWarning(f"the {backend} backend needs the {_PACKAGE_OF[backend]} package, "
                                   f"which is not installed; running on torch {fallback[1]}"), stacklevel=2)
    return fallback
