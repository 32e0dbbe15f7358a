"""The engine process: `python -m core serve`, HTTP on 127.0.0.1 with a per-launch token.

Hosts whose Python cannot import torch (Krita) reach the engine through this server; the protocol
is in docs/internals.md, "Engine protocol". Jobs run through core.job_queue (one at a time, a
short queue), as in the standalone editor. Sizes are checked from the headers before any body byte is read, and every failure is
answered with a JSON `{"error": ...}`: a bad request never takes the process down.
"""
from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from core import face_restore
from core.engine import Box, Engine, UpscaleRequest
from core.errors import BlindUpscaleError, InputError
from core.image_io import DEFAULT_MAX_PIXELS
from core.job_queue import JobQueue, NoResult, QueueFull, UnknownJob
from core.weights import models_dir
from core.registry import list_models
from core.runtimes import select_device
from protocol.files import atomic_write
from protocol.raw_image import ORDERS, SAMPLE_SIZE, RawImage

MAX_HEADER_LINE = 4096
MAX_REQUEST_LINE = 65536
DRAIN_LIMIT = 8 << 20
"""A refused request's unread body up to this size is read and dropped, so the client, which
sends its whole body before reading the answer, gets the error instead of a broken pipe."""
IDLE_TIMEOUT = 30.0
"""Seconds a connection may send nothing before it is closed, so idle (unauthenticated)
connections cannot pile up, each holding a thread."""
MIN_TOKEN_LENGTH = 24
"""A token chosen for an address other machines can reach must be at least this long."""
QUEUE_STATUS = {UnknownJob: 404, NoResult: 409, QueueFull: 503}
"""The HTTP status of the job queue's refusals; any other engine error is a bad request (400)."""


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- HTTP
class EngineServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, engine: Engine, token: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        super().__init__(address, Handler)
        self.token = token
        self.max_pixels = max_pixels
        self.info = {"version": _version(), "device": select_device("auto")}
        self.jobs = JobQueue(engine)

    def server_close(self) -> None:
        super().server_close()
        self.jobs.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):  # typeshed allows it; an AF_INET socket names its host as str
            host = host.decode()
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: EngineServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT

    def log_message(self, fmt, *args) -> None:  # quiet unless something fails
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        self._unread = 0
        try:
            self._authorise()
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            route = (method, parts[0] if parts else "", len(parts))
            if route == ("GET", "health", 1):
                self._send_json(200, self._health())
            elif route == ("GET", "models", 1):
                self._send_json(200, [spec.to_dict() for spec in list_models()])
            elif route == ("POST", "analyse", 1):
                self._send_json(200, self._analyse(query))
            elif route == ("POST", "jobs", 1):
                self._send_json(200, self._submit())
            elif route == ("GET", "jobs", 2):
                self._send_json(200, self.server.jobs.status(parts[1]))
            elif route == ("POST", "jobs", 3) and parts[2] == "cancel":
                self._send_json(200, self.server.jobs.cancel(parts[1]))
            elif route == ("GET", "jobs", 3) and parts[2] == "result":
                result = self.server.jobs.result(parts[1])
                self._send(200, result.to_bytes(), "application/octet-stream")
            else:
                raise HttpError(404, f"no such request: {method} {url.path}")
        except HttpError as exc:
            self._drain()
            self._send_error(exc.status, exc.message)
        except BlindUpscaleError as exc:
            self._drain()
            status = next((s for kind, s in QUEUE_STATUS.items() if isinstance(exc, kind)), 400)
            self._send_error(status, str(exc))
        except TimeoutError:  # the client stopped sending mid-request: nobody to answer
            self.close_connection = True
        except Exception as exc:
            traceback.print_exc()
            self._send_error(500, f"internal error: {type(exc).__name__}: {exc}")

    # -------------------------------------------------------- requests
    def _authorise(self) -> None:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.token}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
            self.close_connection = True
            raise HttpError(401, "missing or wrong access token")

    def _health(self) -> dict:
        return {**self.server.info, "busy": self.server.jobs.busy(),
                "max_pixels": self.server.max_pixels, "models_dir": str(models_dir()),
                "face_restorer": face_restore.status()}

    def _analyse(self, query: dict) -> dict:
        remaining = self._content_length()
        raw, linear = self._read_raw(remaining)
        region: Box | None = None
        if any(k in query for k in ("x", "y", "w", "h")):
            try:
                x, y, w, h = (int(query[k]) for k in ("x", "y", "w", "h"))
                region = (x, y, w, h)
            except (KeyError, ValueError):
                raise HttpError(400, "the region needs integer x, y, w and h") from None
        return self.server.jobs.analyse(raw, region, linear)

    def _submit(self) -> dict:
        remaining = self._content_length()
        line = self._readline(MAX_REQUEST_LINE)
        if not line.endswith(b"\n"):
            self.close_connection = True
            raise HttpError(400, "the job request must start with one line of JSON")
        try:
            fields = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.close_connection = True
            raise HttpError(400, f"the job request is not valid JSON ({exc})") from None
        try:
            request = UpscaleRequest.from_dict(fields)
        except (InputError, TypeError) as exc:
            self.close_connection = True
            raise HttpError(400, f"bad job request: {exc}") from None
        raw, linear = self._read_raw(remaining - len(line))
        return {"job": self.server.jobs.submit(raw, request, linear)}

    def _content_length(self) -> int:
        value = self.headers.get("Content-Length")
        if value is None:
            self.close_connection = True
            raise HttpError(411, "the request needs a Content-Length")
        try:
            length = int(value)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0:
            self.close_connection = True
            raise HttpError(400, "Content-Length is negative")
        self._unread = length
        return length

    def _readline(self, limit: int) -> bytes:
        line = self.rfile.readline(min(limit, self._unread))
        self._unread -= len(line)
        return line

    def _drain(self) -> None:
        if 0 < self._unread <= DRAIN_LIMIT:
            try:
                while self._unread > 0:
                    chunk = self.rfile.read(min(self._unread, 1 << 20))
                    if not chunk:
                        break
                    self._unread -= len(chunk)
            except OSError:
                pass
        self.close_connection = True

    def _read_raw(self, remaining: int) -> tuple[RawImage, bool]:
        """Read one raw image of exactly `remaining` bytes, refusing it from its header alone.

        An optional header field `"transfer": "linear"` marks linear-light samples (Krita's
        high-depth default profile): the engine sRGB-encodes them for the model and linearises
        the result again, so the nets see the values they were trained on."""
        head_line = self._readline(MAX_HEADER_LINE)
        self.close_connection = True  # until the body is fully read
        if not head_line.endswith(b"\n"):
            raise HttpError(400, "the image must start with one line of JSON header")
        try:
            head = json.loads(head_line.decode("ascii"))
            width, height, channels = int(head["width"]), int(head["height"]), int(head["channels"])
            dtype = str(head["dtype"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise HttpError(400, f"malformed image header ({exc})") from None
        if dtype not in SAMPLE_SIZE or channels not in ORDERS or width < 1 or height < 1:
            raise HttpError(400, f"unsupported image: {width}x{height}, {channels} channels, {dtype}")
        if "order" in head and head["order"] != ORDERS[channels]:
            raise HttpError(400, f"channel order must be {ORDERS[channels]}, not {head['order']}")
        transfer = head.get("transfer", "srgb")
        if transfer not in ("srgb", "linear"):
            raise HttpError(400, f"transfer must be srgb or linear, not {transfer}")
        if width * height > self.server.max_pixels:
            raise HttpError(413, f"the image is {width}x{height} = {width * height / 1e6:.1f} MP, "
                                 f"above this engine's limit of {self.server.max_pixels / 1e6:.1f} MP")
        expected = width * height * channels * SAMPLE_SIZE[dtype]
        body = remaining - len(head_line)
        if body != expected:
            raise HttpError(400, f"the image needs {expected} bytes of pixels, the request has {body}")
        data = self._read_exact(expected)
        self.close_connection = False
        return RawImage(width, height, channels, dtype, data), transfer == "linear"

    def _read_exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            self._unread -= len(chunk)
            if not chunk:
                raise HttpError(400, f"the request ended {left} bytes early")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    # -------------------------------------------------------- answers
    def _send_json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _send_error(self, status: int, message: str) -> None:
        try:
            self._send_json(status, {"error": message})
        except OSError:
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


# ---------------------------------------------------------------- process
def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("blind-upscale")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def _is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback one (a name such as
    127.evil.example is checked by what it resolves to, not by how it is spelt)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def write_port_file(path: Path, info: dict) -> None:
    """Atomically, readable by the owner only: the file holds the access token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, private=True) as tmp:
        tmp.write_text(json.dumps(info), encoding="utf-8")


def _stop_with_parent(server: EngineServer, parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        server.shutdown()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core serve",
                                     description="Run the Blind Upscale engine as an HTTP server.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; others need --token)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--token", default=None,
                        help="access token clients must send (default: a random one per launch, "
                             "or $BLIND_UPSCALE_TOKEN)")
    parser.add_argument("--port-file", default=None,
                        help="write {url, port, token, pid} as JSON here once listening")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process (the editor that started the engine) is no "
                             "longer its parent, so a crashed editor leaves no engine behind")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per job (default: all physical cores)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest image accepted, width*height (default {DEFAULT_MAX_PIXELS})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = args.token or os.environ.get("BLIND_UPSCALE_TOKEN") or None
    if not _is_loopback(args.host):
        if not token:
            print(f"error: listening on {args.host} makes the engine reachable from other machines; "
                  "give it a token with --token", file=sys.stderr)
            return 1
        if len(token) < MIN_TOKEN_LENGTH:
            print(f"error: listening on {args.host} needs a token of at least {MIN_TOKEN_LENGTH} "
                  "random characters (python -c 'import secrets; print(secrets.token_urlsafe(24))')",
                  file=sys.stderr)
            return 1
    token = token or secrets.token_urlsafe(24)
    try:
        server = EngineServer((args.host, args.port), Engine(threads=args.threads), token, args.max_pixels)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    port_file = Path(args.port_file) if args.port_file else None
    info = {"url": server.url, "port": server.server_address[1], "pid": os.getpid(), "token": token}
    if port_file:
        write_port_file(port_file, info)
        print(f"Blind Upscale engine on {server.url} (token in {port_file})", flush=True)
    else:
        print(f"Blind Upscale engine on {server.url} token {token}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.parent_pid is not None:
        _stop_with_parent(server, args.parent_pid)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if port_file and port_file.exists():
            port_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
