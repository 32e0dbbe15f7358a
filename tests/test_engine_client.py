"""The engine supervisor with a real `python -m core serve` process: start, crash, restart, stop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plugin.engine_process import EngineProcess, SupervisedClient, engine_python
from protocol.client import EngineClient, default_model, run_job
from protocol.errors import EngineError, JobCancelled
from protocol.raw_image import RawImage
from conftest import wait_for_job

ROOT = Path(__file__).resolve().parent.parent


def gray(width, height) -> RawImage:
    return RawImage(width, height, 1, "u8", bytes((x * 7 + y * 3) % 256 for y in range(height) for x in range(width)))


@pytest.fixture()
def supervised():
    process = EngineProcess(sys.executable, str(ROOT), start_timeout=60)
    client = SupervisedClient(process)
    yield client, process
    client.close()


def test_engine_python_prefers_the_setting_then_engine_json(tmp_path):
    assert engine_python(None, tmp_path) is None
    (tmp_path / "engine.json").write_text(json.dumps({"python": sys.executable, "root": "/proj"}))
    assert engine_python(None, tmp_path) == (sys.executable, "/proj")
    assert engine_python("/opt/venv/bin/python", tmp_path) == ("/opt/venv/bin/python", "/proj")
    (tmp_path / "engine.json").write_text(json.dumps({"python": "/gone/bin/python"}))
    assert engine_python(None, tmp_path) is None


def test_unreachable_engine_is_one_plain_sentence():
    with pytest.raises(EngineError, match=r"not reachable"):
        EngineClient("http://127.0.0.1:9", "t", timeout=2).health()


def test_missing_python_is_reported():
    with pytest.raises(EngineError, match="does not exist"):
        EngineProcess("/no/such/python").start()


def test_start_kill_mid_job_report_and_restart(supervised):
    client, process = supervised
    with pytest.raises(EngineError, match="not running"):
        client.status("1-x")  # job questions never start an engine
    health = client.health()
    assert health["busy"] is False
    first_pid = process.pid

    job = client.submit(gray(600, 600), {"model": "bicubic", "tile": 16, "overlap": 0})
    deadline = time.monotonic() + 30
    while client.status(job)["state"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first_pid, signal.SIGKILL)
    with pytest.raises(EngineError, match=r"stopped unexpectedly \(exit code -9\).*restart"):
        for _ in range(200):
            client.status(job)
            time.sleep(0.02)
    with pytest.raises(EngineError, match="stopped unexpectedly"):
        client.result(job)

    # the next new request brings up a fresh engine
    job = client.submit(gray(8, 8), {"model": "bicubic"})
    assert process.pid != first_pid
    while client.status(job)["state"] in ("queued", "running"):
        time.sleep(0.02)
    result = client.result(job)
    assert (result.width, result.height, result.channels) == (32, 32, 1)

    pid = process.pid
    client.close()
    assert not process.running()
    with pytest.raises(OSError):
        os.kill(pid, 0)


def test_a_hung_engine_is_ended_reported_and_replaced(supervised):
    """Issue 21, defect 4: a stopped engine (SIGSTOP) made every request wait 60 s and fail,
    forever, on the same PID."""
    client, process = supervised
    client.health()
    process.client.answer_timeout = 2.0  # the default 5 s, shortened for the test
    first_pid = process.pid
    job = client.submit(gray(600, 600), {"model": "bicubic", "tile": 16, "overlap": 0})
    while client.status(job)["state"] == "queued":
        time.sleep(0.02)

    os.kill(first_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(EngineError) as failure:
            client.status(job)
        noticed = time.monotonic() - started
    finally:
        if alive(first_pid):
            os.kill(first_pid, signal.SIGKILL)
    message = str(failure.value)
    assert message == ("The engine stopped answering (no reply within 2 s) and was ended; your image "
                       "is unchanged, and a new engine starts on the next request.")
    assert noticed < 6.0  # the status request and one health check, each bounded by 2 s
    assert not alive(first_pid) and process.exit_code() == -signal.SIGKILL
    with pytest.raises(EngineError, match="stopped answering"):
        client.result(job)  # the job's questions keep the same answer, and start nothing

    job = client.submit(gray(8, 8), {"model": "bicubic"})
    assert process.pid != first_pid
    assert wait_for_job(client, job)["state"] == "done"


def test_new_work_on_a_hung_idle_engine_gets_a_fresh_one(supervised):
    client, process = supervised
    client.health()
    process.client.answer_timeout = 2.0
    hung_pid = process.pid
    os.kill(hung_pid, signal.SIGSTOP)
    try:
        health = client.health()
    finally:
        if alive(hung_pid):
            os.kill(hung_pid, signal.SIGKILL)
    assert health["busy"] is False
    assert process.pid != hung_pid and not alive(hung_pid)


def test_engine_that_cannot_start_says_why(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named torch' >&2\nexit 3\n")
    fake.chmod(0o755)
    process = EngineProcess(str(fake), str(tmp_path), start_timeout=30)
    with pytest.raises(EngineError, match=r"exited while starting \(code 3\): No module named torch"):
        process.start()
    assert not process.running()


def test_engine_stops_when_its_parent_dies(tmp_path):
    """A crashed or killed editor leaves no engine behind (--parent-pid)."""
    port_file = tmp_path / "engine.port"
    launcher = ("import os, subprocess, sys, time\n"
                f"port_file = {str(port_file)!r}\n"
                "p = subprocess.Popen([sys.executable, '-m', 'core', 'serve', '--port-file', port_file,"
                " '--parent-pid', str(os.getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                "deadline = time.monotonic() + 60\n"
                "while not os.path.exists(port_file) and time.monotonic() < deadline:\n"
                "    time.sleep(0.1)\n"
                "print(p.pid)\n")  # then the launcher, the engine's parent, ends
    started = subprocess.run([sys.executable, "-c", launcher], cwd=ROOT, capture_output=True, text=True,
                             timeout=90)
    pid = int(started.stdout)
    assert port_file.exists() or not alive(pid), "the engine did not start"
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), "the engine outlived the process that started it"
    assert not port_file.exists()


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaped)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def test_run_job_waits_for_the_result_and_reports_progress():
    from plugin.standalone.local_engine import LocalEngine

    engine = LocalEngine()
    try:
        heard = []
        result = run_job(engine, gray(12, 8), {"model": "bicubic"}, progress=lambda f, s: heard.append(f),
                         interval=0.01)
        assert (result.width, result.height, result.channels, result.dtype) == (48, 32, 1, "u8")
        assert all(0.0 <= f <= 1.0 for f in heard)
        with pytest.raises(EngineError, match="nonesuch") as failed:
            run_job(engine, gray(12, 8), {"model": "nonesuch"}, interval=0.01)
        assert not isinstance(failed.value, JobCancelled)
    finally:
        engine.close()


def test_run_job_cancelled_stops_the_engine_job():
    from plugin.standalone.local_engine import LocalEngine

    engine = LocalEngine()
    try:
        submitted = []
        original_submit = engine.submit
        engine.submit = lambda image, request: submitted.append(original_submit(image, request)) or submitted[-1]
        with pytest.raises(JobCancelled, match="nothing was changed"):
            run_job(engine, gray(96, 96), {"model": "kdsr", "tile": 16}, cancelled=lambda: True, interval=0.01)
        assert wait_for_job(engine, submitted[0])["state"] == "cancelled"
    finally:
        engine.close()


def test_default_model_is_the_best_one_with_weights():
    assert default_model([{"id": "bicubic", "weights": "bundled"}, {"id": "kdsr", "weights": "bundled"},
                          {"id": "mmrealsr", "weights": "missing"}]) == "kdsr"
    assert default_model([]) == "bicubic"
