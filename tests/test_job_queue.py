"""The one job queue both hosts run (server and standalone editor), tested directly and through
the standalone editor's in-process client."""
from __future__ import annotations


import numpy as np
import pytest

from core.engine import Engine, UpscaleRequest
from core.image_io import Image, from_raw, to_raw
from core.job_queue import JobQueue, NoResult, QueueFull, UnknownJob
from core.transfer import map_colour, srgb_decode, srgb_encode
from plugin.standalone.local_engine import LocalEngine
from protocol.errors import EngineError
from protocol.raw_image import LinearRawImage, RawImage
from conftest import wait_for_job


def gradient(width=24, height=16, channels=4, dtype="u16") -> RawImage:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [x / width, y / height, (x + y) / (width + height), 0.5 + 0.5 * (x > width / 2)]
    return to_raw(Image(np.stack(planes[:channels], axis=2), 16 if dtype == "u16" else 8), dtype)



@pytest.fixture()
def jobs():
    q = JobQueue(Engine())
    yield q
    q.close()


def test_linear_light_is_encoded_for_the_model_in_every_host(jobs):
    raw = gradient()
    image = from_raw(raw)
    expected = map_colour(Engine().upscale(map_colour(image, srgb_encode), UpscaleRequest()),
                          srgb_decode).pixels
    job = jobs.submit(raw, UpscaleRequest(), linear=True)
    assert wait_for_job(jobs, job)["state"] == "done"
    np.testing.assert_allclose(from_raw(jobs.result(job)).pixels, expected, atol=1.5 / 65535)

    local = LocalEngine()
    try:
        marked = LinearRawImage(raw.width, raw.height, raw.channels, raw.dtype, raw.data)
        job = local.submit(marked, {"model": "bicubic"})
        assert wait_for_job(local, job)["state"] == "done"
        result = local.result(job)
        assert result.dtype == "u16"
        np.testing.assert_allclose(from_raw(result).pixels, expected, atol=1.5 / 65535)
    finally:
        local.close()


def test_refusals_are_engine_errors_the_hosts_can_map(jobs):
    with pytest.raises(UnknownJob, match="no job 7-x"):
        jobs.status("7-x")
    big = gradient(512, 512, channels=3, dtype="u8")
    first = jobs.submit(big, UpscaleRequest(tile=16, overlap=0))
    with pytest.raises(QueueFull, match="jobs waiting"):
        for _ in range(10):
            jobs.submit(gradient(), UpscaleRequest())
    with pytest.raises(NoResult, match="has no result"):
        jobs.result(first)
    assert jobs.busy()


def test_failures_are_one_sentence_and_the_worker_lives_on(jobs, monkeypatch):
    failed = jobs.submit(gradient(), UpscaleRequest(model="no-such-model"))
    assert wait_for_job(jobs, failed)["error"].startswith("Unknown model 'no-such-model'")
    assert jobs.status(failed)["error"].endswith(".")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(jobs.engine, "upscale", broken)
    bug = jobs.submit(gradient(), UpscaleRequest())
    assert wait_for_job(jobs, bug)["error"] == "Internal error in the engine (ZeroDivisionError: a bug)."
    monkeypatch.undo()
    assert wait_for_job(jobs, jobs.submit(gradient(), UpscaleRequest()))["state"] == "done"


def test_only_the_last_finished_jobs_are_kept():
    jobs = JobQueue(Engine(), keep_finished=2)
    try:
        ids = [jobs.submit(gradient(8, 8), UpscaleRequest()) for _ in range(3)]
        wait_for_job(jobs, ids[-1])  # jobs run in order: the others finished before it
        with pytest.raises(UnknownJob):
            jobs.status(ids[0])
        assert [jobs.status(job)["state"] for job in ids[1:]] == ["done", "done"]
    finally:
        jobs.close()


def test_local_engine_turns_refusals_into_sentences():
    local = LocalEngine()
    try:
        with pytest.raises(EngineError, match=r"^There is no job 3-x on this engine\.$"):
            local.status("3-x")
    finally:
        local.close()
