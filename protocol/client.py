"""The engine client over HTTP: the client interface of docs/internals.md, "The client interface".

Standard library only: this module runs inside Krita's embedded Python, which has neither numpy
nor torch. The protocol is the one in docs/internals.md, "Engine protocol"; images travel as
`protocol.raw_image.RawImage` bytes.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from protocol.errors import EngineError, JobCancelled, sentence
from protocol.raw_image import RawImage

PREFERRED_MODELS = ("mmrealsr", "ccl", "kdsr", "cmdsr", "realesrgan", "bicubic")
"""The default model is the first of these whose weights are present."""


class EngineClient:
    """The client interface of docs/internals.md over HTTP (local or remote engine).

    health, status and cancel carry no image and a working engine answers them at once, even in
    the middle of a job: they wait `answer_timeout` at most, so a hung engine is noticed within
    seconds. Requests with an image or a model list wait up to `timeout`.
    """

    def __init__(self, url: str, token: str, timeout: float = 30.0, answer_timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.answer_timeout = answer_timeout
        self.max_pixels: int | None = None  # the engine's limit, learnt from health()

    def health(self) -> dict:
        info = self._json("GET", "/health", timeout=self.answer_timeout)
        if isinstance(info, dict) and isinstance(info.get("max_pixels"), int):
            self.max_pixels = info["max_pixels"]
        return info

    def _check_size(self, image: RawImage) -> None:
        if self.max_pixels is not None and image.width * image.height > self.max_pixels:
            raise EngineError(f"The image is {image.width}x{image.height} = "
                              f"{image.width * image.height / 1e6:.1f} MP, above the engine's limit "
                              f"of {self.max_pixels / 1e6:.1f} MP; select a smaller area.")

    def models(self) -> list[dict]:
        return self._json("GET", "/models")

    def analyse(self, image: RawImage, region=None) -> dict:
        self._check_size(image)
        path = "/analyse"
        if region is not None:
            x, y, w, h = (int(v) for v in region)
            path += "?" + urllib.parse.urlencode({"x": x, "y": y, "w": w, "h": h})
        return self._json("POST", path, image.to_bytes())

    def submit(self, image: RawImage, request: dict) -> str:
        self._check_size(image)
        body = json.dumps(request).encode("utf-8") + b"\n" + image.to_bytes()
        return str(self._json("POST", "/jobs", body)["job"])

    def status(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{urllib.parse.quote(job_id)}", timeout=self.answer_timeout)

    def cancel(self, job_id: str) -> None:
        self._json("POST", f"/jobs/{urllib.parse.quote(job_id)}/cancel", b"", timeout=self.answer_timeout)

    def result(self, job_id: str) -> RawImage:
        payload = self._call("GET", f"/jobs/{urllib.parse.quote(job_id)}/result")
        try:
            return RawImage.from_bytes(payload)
        except ValueError as exc:
            raise EngineError(f"The engine sent an unreadable image: {exc}.") from None

    def _json(self, method: str, path: str, body: bytes | None = None, timeout: float | None = None):
        payload = self._call(method, path, body, timeout)
        try:
            return json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise EngineError(f"The engine sent an unreadable answer to {path}.") from None

    def _call(self, method: str, path: str, body: bytes | None = None, timeout: float | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise EngineError(_http_error_message(exc)) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineError(f"The engine at {self.url} is not reachable ({reason}).") from None


def default_model(models: list[dict]) -> str:
    """The model to use when the user names none: the first of PREFERRED_MODELS with weights."""
    present = {m["id"] for m in models if m.get("weights") != "missing"}
    return next((model for model in PREFERRED_MODELS if model in present), "bicubic")


def run_job(client, image: RawImage, request: dict, progress=None, cancelled=None,
            interval: float = 0.1) -> RawImage:
    """Submit one job to any engine client and wait for its result, for hosts that have no event
    loop to poll from (a GIMP plug-in blocks in its run function).

    `progress(fraction, stage)` hears every status; `cancelled()` returning True cancels the job
    and raises `JobCancelled`. A failed job raises EngineError with the engine's sentence.
    """
    job = client.submit(image, request)
    while True:
        status = client.status(job)
        state = status.get("state")
        if state == "done":
            return client.result(job)
        if state in ("failed", "cancelled"):
            raise EngineError(sentence(status.get("error") or f"The engine {state} the job"))
        if progress is not None:
            progress(float(status.get("progress") or 0.0), str(status.get("stage") or ""))
        if cancelled is not None and cancelled():
            client.cancel(job)
            raise JobCancelled("Cancelled; nothing was changed.")
        time.sleep(interval)


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read().decode("utf-8"))["error"]
    except Exception:
        message = None
    if exc.code == 401:
        return "The engine refused the access token."
    if message:
        return str(message)
    return f"The engine answered HTTP {exc.code} ({exc.reason})."
