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


def test_linear_float_highlights_above_1_survive_the_srgb_round_trip(jobs):
    """A linear float layer's HDR highlights (and negative samples) are not clipped to 0..1."""
    pixels = np.full((16, 24, 4), 1.0, np.float32)
    pixels[:, :12, :3] = 0.2
    pixels[:, 12:, :3] = 3.0
    pixels[:, 12:, 2] = -0.25
    job = jobs.submit(to_raw(Image(pixels, 32)), UpscaleRequest(), linear=True)
    assert wait_for_job(jobs, job)["state"] == "done"
    out = from_raw(jobs.result(job)).pixels
    assert out.shape == (64, 96, 4)
    np.testing.assert_allclose(out[8:-8, 4:40, :3], 0.2, atol=1e-4)
    np.testing.assert_allclose(out[8:-8, 56:-4, :2], 3.0, atol=1e-3)
    np.testing.assert_allclose(out[8:-8, 56:-4, 2], -0.25, atol=1e-4)
    np.testing.assert_allclose(out[..., 3], 1.0, atol=1e-6)


def test_the_srgb_curves_extend_beyond_0_1_and_invert_each_other():
    linear = np.array([-4.0, -0.5, -0.001, 0.0, 0.001, 0.0031308, 0.2, 1.0, 1.5, 16.0], np.float32)
    encoded = srgb_encode(linear)
    assert np.all(np.diff(encoded) > 0)  # monotonic through 0 and past 1
    np.testing.assert_allclose(encoded[7], 1.0, atol=1e-6)
    np.testing.assert_allclose(srgb_decode(encoded), linear, rtol=1e-5, atol=1e-7)


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
