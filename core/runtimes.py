"""Torch modules and ONNX graphs behind one interface: `dict[str, ndarray] -> dict[str, ndarray]`.

Device choice is CUDA first, then CPU. onnxruntime-gpu lists CUDAExecutionProvider even on a
machine without a GPU; asking for it there logs an error about libcuda and falls back silently.
So "auto" asks onnxruntime for CUDA only when torch sees a usable GPU, and an explicit "cuda"
request that ends up on the CPU is reported as an error instead of running slowly by surprise.
"""
from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from core.errors import Cancelled, ModelError

DEVICES = ("auto", "cpu", "cuda")
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
    returns one tensor or a tuple in `output_names` order."""

    def __init__(self, module, input_names: Iterable[str] = ("input",),
                 output_names: Iterable[str] = ("output",), device: str = "cpu"):
        import torch

        self.device = select_device(device)
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.module = stoppable(module.to(self.device).eval())
        self._torch = torch

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ModelError(f"graph input(s) missing: {', '.join(missing)}")
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(self.device)
                for n in self.input_names]
        with torch.inference_mode():
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


def onnx_session(path: str | os.PathLike, providers: list[str]):
    """One cached `InferenceSession` per (file, modification time, providers)."""
    import onnxruntime as ort

    path = Path(path).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise ModelError(f"ONNX file {path} does not exist") from None
    key = (str(path), mtime, tuple(providers))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # keep provider fallback chatter off the user's stderr
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ModelError(f"cannot load ONNX graph {path.name}: {exc}") from None
            _sessions[key] = session
    return session


class OnnxGraph(Graph):
    def __init__(self, path: str | os.PathLike, device: str = "auto"):
        providers = onnx_providers(device)
        self.session = onnx_session(path, providers)
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
