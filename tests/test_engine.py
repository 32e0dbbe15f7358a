import threading

import numpy as np
import pytest

from core import methods
from core.errors import BlindUpscaleError, Cancelled, InputError, ModelError, WeightsError
from core.image_io import Image
from core.engine import Engine, UpscaleRequest, time_left
from core.estimate import estimate_degradation
from core.methods.base import Upscaler
from core.methods.bicubic import bicubic_upscale
from core.methods.base import ConfigSpec
from core.registry import get_model, list_models


def _scene(h=64, w=80, seed=0):
    """A photo-like test scene: smooth shading, edges and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 0.5 + 0.3 * np.sin(x / 9) * np.cos(y / 7)
    squares = ((x // 12 + y // 12) % 2) * 0.2
    texture = 0.05 * np.sin(x * 1.3 + y * 0.7)
    base = shade + squares + texture
    rgb = np.stack([base, base * 0.9 + 0.05, 1 - base * 0.8], axis=2)
    return np.clip(rgb + rng.normal(0, 0.002, rgb.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bits", [8, 16])
def test_bicubic_keeps_channels_alpha_and_bit_depth(engine, channels, bits):
    rgb = _scene(24, 20)
    pixels = {1: rgb[..., :1], 2: np.concatenate([rgb[..., :1], rgb[..., 2:]], 2),
              3: rgb, 4: np.concatenate([rgb, rgb[..., :1]], 2)}[channels]
    out = engine.upscale(Image(pixels, bits, b"icc", b"exif"), UpscaleRequest(tile=16, overlap=4))
    assert out.pixels.shape == (96, 80, channels)
    assert (out.bit_depth, out.icc, out.exif) == (bits, b"icc", b"exif")
    assert out.pixels.min() >= 0 and out.pixels.max() <= 1
    if channels in (2, 4):  # alpha is the bicubic of the input alpha, clipped
        expected = np.clip(bicubic_upscale(pixels[..., -1][None, None], 4)[0, 0], 0, 1)
        np.testing.assert_allclose(out.pixels[..., -1], expected, atol=1e-5)


def test_bicubic_result_is_the_baseline_function(engine):
    rgb = _scene(40, 44)
    out = engine.upscale(Image(rgb), UpscaleRequest(tile=0))
    expected = np.clip(bicubic_upscale(rgb.transpose(2, 0, 1)[None], 4)[0].transpose(1, 2, 0), 0, 1)
    np.testing.assert_allclose(out.pixels, expected, atol=1e-6)


def test_region_is_cropped_before_upscaling(engine):
    rgb = _scene(40, 44)
    out = engine.upscale(Image(rgb), UpscaleRequest(region=(4, 8, 20, 12), tile=0))
    crop = engine.upscale(Image(np.ascontiguousarray(rgb[8:20, 4:24])), UpscaleRequest(tile=0))
    assert out.pixels.shape == (48, 80, 3)
    np.testing.assert_array_equal(out.pixels, crop.pixels)


@pytest.mark.parametrize("region", [(30, 30, 20, 20), (0, 0, 0, 5)])
def test_bad_region_is_an_input_error(engine, region):
    with pytest.raises(InputError, match="region"):
        engine.upscale(Image(_scene(40, 44)), UpscaleRequest(region=region))


def test_other_scales(engine):
    out = engine.upscale(Image(_scene(10, 12)), UpscaleRequest(scale=2))
    assert out.pixels.shape == (20, 24, 3)


def test_progress_rises_to_one_with_stages_in_plain_words(engine, monkeypatch):
    seen = []
    # a clock on which every tile takes 1 s: the number of tiles named so far
    monkeypatch.setattr("core.engine.time.perf_counter",
                        lambda: float(sum(stage.startswith("Upscaling") for _, stage in seen)))
    engine.upscale(Image(_scene(64, 80)), UpscaleRequest(tile=32, overlap=8),
                   lambda fraction, stage: seen.append((fraction, stage)))
    fractions = [f for f, _ in seen]
    stages = [stage for _, stage in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert stages[:3] == ["Reading the image", "Loading the model", "Analysing the image"]
    tiles = [s for s in stages if s.startswith("Upscaling: tile")]
    total = len(tiles)
    assert total == 9  # 3 rows of 3 tiles
    # each tile is named before it runs; the time left appears once two tiles are timed
    assert tiles[:3] == [f"Upscaling: tile 1 of {total}", f"Upscaling: tile 2 of {total}",
                         f"Upscaling: tile 3 of {total}, about {total - 2} s left"]
    assert tiles[-1] == f"Upscaling: tile {total} of {total}, about 1 s left"
    assert len({f for f, s in seen if s.startswith("Upscaling")}) == total  # the bar moves per tile


def test_time_left_is_said_as_a_person_would():
    assert [time_left(s) for s in (0.2, 12.4, 59, 61, 600)] == [
        "about 1 s left", "about 12 s left", "about 59 s left", "about 1 min left", "about 10 min left"]


def test_cancel_event_stops_the_job(engine):
    cancel = threading.Event()

    def progress(fraction, stage):
        if stage.startswith("Upscaling: tile 2 "):
            cancel.set()

    with pytest.raises(Cancelled):
        engine.upscale(Image(_scene(64, 80)), UpscaleRequest(tile=32, overlap=8), progress, cancel)


class _NeedsWeights(Upscaler):
    """A model id whose only configuration has no weights file (as on a fresh install)."""

    id = "needs-weights"
    family = "Test"
    title = "Needs weights"
    summary = "Used to check how missing weights are reported."

    @classmethod
    def configs(cls):
        return [ConfigSpec("needs-weights:full", 1000, "missing")]


def test_missing_weights_are_listed_and_refused(engine, monkeypatch):
    monkeypatch.setattr(methods, "METHODS", {"bicubic": methods.METHODS["bicubic"],
                                             "needs-weights": _NeedsWeights})
    listed = {m.id: m.to_dict() for m in list_models()}
    assert listed["needs-weights"]["weights"] == "missing"
    assert listed["needs-weights"]["configs"][0]["weights"] == "missing"
    with pytest.raises(WeightsError, match="weights of needs-weights:full are missing"):
        engine.upscale(Image(_scene(8, 8)), UpscaleRequest(model="needs-weights"))


def test_missing_weights_message_names_the_file(engine, monkeypatch, tmp_path):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    with pytest.raises(WeightsError, match="MMRealSRGAN.pth") as error:
        engine.upscale(Image(_scene(8, 8)), UpscaleRequest(model="mmrealsr", config="official"))
    assert str(tmp_path) in str(error.value)


def test_unknown_model_and_config(engine):
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        engine.upscale(Image(_scene(8, 8)), UpscaleRequest(model="nope"))
    with pytest.raises(ModelError, match="no configuration 'huge'"):
        get_model("bicubic").config("huge")


def test_every_registered_model_describes_itself():
    for spec in list_models():
        d = spec.to_dict()
        assert d["id"] and d["family"] and d["title"] and d["summary"]
        assert d["scale"] >= 1 and d["configs"]
        assert d["weights"] in ("bundled", "user", "missing")
        for config in d["configs"]:
            assert config["id"].startswith(d["id"] + ":")


@pytest.mark.parametrize("data,message", [
    ({"scale": 0}, "scale"), ({"device": "tpu"}, "device"), ({"backend": "tf"}, "backend"),
    ({"tile": 8}, "tile"), ({"blur": 1.5}, "blur"), ({"noise": "lots"}, "noise"),
    ({"region": [1, 2, 3]}, "region"), ({"support": [0, 0, -1, 4]}, "support"),
    ({"faces": "some"}, "faces"), ({"config": 3}, "config"), ({"faces": [[1, 2, 3]]}, "face box"), ({"colour": 1}, "unknown"),
    ({"ensemble": "yes"}, "ensemble"),
])
def test_request_validation(data, message):
    with pytest.raises(InputError, match=message):
        UpscaleRequest.from_dict(data)


def test_request_round_trips_through_json_fields():
    request = UpscaleRequest.from_dict({"model": "bicubic", "region": [1, 2, 3, 4],
                                        "faces": [[0, 0, 8, 8]], "blur": 0.5})
    assert request.region == (1, 2, 3, 4) and request.faces == [(0, 0, 8, 8)]
    assert UpscaleRequest.from_dict(request.to_dict()) == request


def _blurred(rgb, radius):
    from PIL import Image as PILImage
    from PIL import ImageFilter

    im = PILImage.fromarray((rgb * 255 + 0.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(im).astype(np.float32) / 255


def test_classical_estimates_rank_noise_and_blur():
    clean = _scene(96, 96)
    rng = np.random.default_rng(5)
    noisy = np.clip(clean + rng.normal(0, 15 / 255, clean.shape), 0, 1).astype(np.float32)
    blurred = _blurred(clean, 2.0)
    e_clean, e_noisy, e_blur = (estimate_degradation(x) for x in (clean, noisy, blurred))
    assert e_noisy["noise"] > e_clean["noise"] + 0.3
    assert abs(e_noisy["noise_sigma"] - 15 / 255) < 4 / 255
    assert e_blur["blur"] > e_clean["blur"] + 0.2
    for e in (e_clean, e_noisy, e_blur):
        assert 0 <= e["blur"] <= 1 and 0 <= e["noise"] <= 1


def test_analyse_reports_estimates_and_faces(engine):
    rgb = _scene(64, 64)
    result = engine.analyse(Image(rgb), region=(8, 8, 40, 40))
    assert set(result) == {"blur", "noise", "method", "faces"}
    assert result["method"] in ("classical", "de-net")
    assert isinstance(result["faces"], list)
    with pytest.raises(InputError, match="region"):
        engine.analyse(Image(rgb), region=(60, 60, 10, 10))


def test_too_large_result_is_refused_before_any_work():
    small_engine = Engine(max_output_pixels=1000)
    with pytest.raises(InputError, match="the result would be"):
        small_engine.upscale(Image(_scene(10, 10)), UpscaleRequest())
    assert small_engine.upscale(Image(_scene(7, 8)), UpscaleRequest()).pixels.shape == (28, 32, 3)


class _RunsOutOfMemory(_NeedsWeights):
    id = "oom"

    @classmethod
    def configs(cls):
        return [ConfigSpec("oom:lite", 10, "bundled")]

    def run_tile(self, tile, context):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_in_a_tile_becomes_a_clear_error(monkeypatch):
    monkeypatch.setattr(methods, "METHODS", {"oom": _RunsOutOfMemory})
    with pytest.raises(BlindUpscaleError, match="out of memory while upscaling with tiles of 64 px"):
        Engine().upscale(Image(_scene(8, 8)), UpscaleRequest(model="oom", tile=64))


def test_prepare_sees_the_whole_image_and_tiles_only_the_region(monkeypatch):
    """A selection limits what is upscaled; the degradation sample and faces stay in image coordinates."""
    seen = {}
    bicubic = methods.METHODS["bicubic"]

    class Recording(bicubic):
        def prepare(self, rgb, request, progress):
            seen["shape"], seen["support"] = rgb.shape, request.support
            return super().prepare(rgb, request, progress)

    monkeypatch.setattr(methods, "METHODS", {**methods.METHODS, "bicubic": Recording})
    scene = _scene(64, 80)
    request = UpscaleRequest(region=(40, 8, 24, 16), support=(0, 0, 20, 20), tile=0)
    result = Engine().upscale(Image(scene), request)  # a fresh engine: no cached bicubic
    assert seen == {"shape": (64, 80, 3), "support": (0, 0, 20, 20)}
    assert result.pixels.shape[:2] == (64, 96)
    expected = bicubic_upscale(np.ascontiguousarray(scene[8:24, 40:64].transpose(2, 0, 1)[None]), 4)
    np.testing.assert_allclose(result.pixels, np.clip(expected[0].transpose(1, 2, 0), 0, 1), atol=1e-6)


def test_cancel_stops_a_long_global_step_at_its_next_progress_report(monkeypatch):
    """Face adaptation can take minutes on a CPU: a cancel takes effect between its chunks."""
    cancel = threading.Event()
    reports = []
    bicubic = methods.METHODS["bicubic"]

    class SlowPrepare(bicubic):
        def prepare(self, rgb, request, progress):
            for chunk in range(4):
                reports.append(chunk)
                if chunk == 1:
                    cancel.set()  # the user presses Cancel during the second chunk
                progress((chunk + 1) / 4, f"adapting, chunk {chunk + 1}/4")
            return super().prepare(rgb, request, progress)

    monkeypatch.setattr(methods, "METHODS", {**methods.METHODS, "bicubic": SlowPrepare})
    with pytest.raises(Cancelled):
        Engine().upscale(Image(_scene(16, 16)), UpscaleRequest(), cancel=cancel)
    assert reports == [0, 1]


def _float_rgb_beyond_range(h=16, w=20):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / w * 4 - 1, y / h, np.full((h, w), 0.5, np.float32)], axis=2)  # -1..3


def test_float_image_keeps_its_range_outside_zero_to_one():
    """Issue 21, defect 6: a float image with values from -1 to 3 came out clipped to 0..1."""
    pixels = _float_rgb_beyond_range()
    result = Engine().upscale(Image(pixels, 32), UpscaleRequest(model="bicubic", tile=0))
    expected = bicubic_upscale(pixels.transpose(2, 0, 1)[None].copy(), 4)[0].transpose(1, 2, 0)
    assert result.pixels.min() < -0.8 and result.pixels.max() > 2.8
    assert np.abs(result.pixels - expected).mean() < 0.01
    eight_bit = Engine().upscale(Image(np.clip(pixels, 0, 1), 8), UpscaleRequest(model="bicubic"))
    assert eight_bit.pixels.min() >= 0.0 and eight_bit.pixels.max() <= 1.0


def test_non_finite_samples_are_replaced_before_inference_with_a_warning():
    """Issue 21, defect 6: one NaN and one inf spread to 100 NaN samples of the result."""
    from core.errors import InputWarning

    pixels = np.clip(_float_rgb_beyond_range(), 0, 1)
    pixels[3, 4, 0], pixels[8, 9, 1], pixels[10, 2, 2] = np.nan, np.inf, -np.inf
    with pytest.warns(InputWarning, match="3 samples were NaN or infinite"):
        result = Engine().upscale(Image(pixels, 32), UpscaleRequest(model="bicubic", tile=0))
    assert np.isfinite(result.pixels).all()
    assert np.isnan(pixels[3, 4, 0])  # the caller's image is not modified


def test_a_slow_torch_tile_stops_within_a_moment_of_a_cancel():
    """The cancel point sits between the layers of a torch network: a tile that would take
    seconds stops within a layer, and without a cancel the network computes the same."""
    import time

    import torch

    from core.runtimes import TorchGraph, cancel_checks

    class SlowLayer(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x * 1.01

    graph = TorchGraph(torch.nn.Sequential(*[SlowLayer() for _ in range(100)]), ("x",), ("y",))
    tile = np.ones((1, 3, 8, 8), np.float32)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with cancel_checks(cancel.is_set), pytest.raises(Cancelled):
        graph({"x": tile})  # 5 s uncancelled
    assert time.monotonic() - started < 0.5
    small = TorchGraph(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1)), ("x",), ("y",))
    with cancel_checks(lambda: False):
        inside = small({"x": tile})["y"]
    np.testing.assert_array_equal(inside, small({"x": tile})["y"])


@pytest.mark.parametrize("channels, bits", [(3, 8), (4, 16), (1, 8)])
def test_integer_result_is_the_float_result_quantised(engine, channels, bits):
    """as_integers writes the tiles straight into a uint8/uint16 result (no float canvas the size
    of the output): the same samples the float result gives once saved."""
    from core.image_io import _quantise

    rgb = _scene(40, 52)
    pixels = np.concatenate([rgb, rgb[..., :1]], axis=2)[..., :channels] if channels != 1 else rgb[..., :1]
    image = Image(np.ascontiguousarray(pixels), bits)
    request = UpscaleRequest(model="bicubic", tile=16, overlap=4)
    as_float = engine.upscale(image, request).pixels
    as_int = engine.upscale(image, request, as_integers=True).pixels
    assert as_int.dtype == (np.uint8 if bits == 8 else np.uint16) and as_float.dtype == np.float32
    assert np.array_equal(as_int, _quantise(as_float, bits))


def test_timings_name_every_stage_and_a_warm_model_loads_at_once():
    engine = Engine()
    image = Image(_scene(24, 24), 8)
    request = UpscaleRequest(model="kdsr", backend="torch", tile=16, overlap=4)
    first, second = {}, {}
    engine.upscale(image, request, timings=first)
    engine.upscale(image, request, timings=second)
    assert set(first) == set(second) == {"load", "prepare", "tiles", "blend"}
    assert all(seconds >= 0 for seconds in (*first.values(), *second.values()))
    assert second["load"] < 0.05 < first["load"] + first["tiles"]
