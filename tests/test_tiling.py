import numpy as np
import pytest
import torch

from core.errors import Cancelled, InputError
from core.tiling import tile_starts, tiled_upscale


def _conv_net(seed=0):
    """A random-init ×4 conv stack (receptive radius 5): stands in for an SR net here."""
    torch.manual_seed(seed)
    layers = []
    for i in range(4):
        layers += [torch.nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1), torch.nn.ReLU()]
    layers += [torch.nn.Conv2d(16, 48, 3, padding=1), torch.nn.PixelShuffle(4)]
    net = torch.nn.Sequential(*layers).eval()

    def run(tile):
        with torch.inference_mode():
            return net(torch.from_numpy(tile)).numpy()
    return run


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).random((1, 3, 70, 90), dtype=np.float32)


@pytest.mark.parametrize("tile,overlap,bound", [(32, 16, 1e-4), (40, 12, 1e-3), (64, 24, 1e-6)])
def test_tiled_output_matches_untiled_output_of_a_conv_net(image, tile, overlap, bound):
    fn = _conv_net()
    whole = fn(image)
    tiled = tiled_upscale(fn, image, 4, tile, overlap)
    assert tiled.shape == whole.shape == (1, 3, 280, 360)
    assert np.abs(tiled - whole).max() < bound


def test_blend_weights_sum_to_one_everywhere(image):
    """Nearest-neighbour ×3 of a constant image: any weighting error shows as a seam."""
    ones = np.ones((1, 3, 53, 77), np.float32)
    out = tiled_upscale(lambda t: t.repeat(3, axis=2).repeat(3, axis=3), ones, 3, 20, 8)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (33, 32, 8), (61, 32, 8), (500, 64, 30)])
def test_tiles_cover_the_axis_and_overlap_enough(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap


def test_tiles_never_exceed_the_tile_size(image):
    seen = []

    def fn(tile):
        seen.append(tile.shape)
        return tile.repeat(2, axis=2).repeat(2, axis=3)

    tiled_upscale(fn, image, 2, 24, 6)
    assert len(seen) > 1
    assert all(h <= 24 and w <= 24 for _, _, h, w in seen)


def test_progress_is_reported_per_tile(image):
    calls = []
    tiled_upscale(lambda t: t, image, 1, 32, 8, progress=lambda done, total: calls.append((done, total)))
    total = len(tile_starts(70, 32, 8)) * len(tile_starts(90, 32, 8))
    assert calls == [(i, total) for i in range(0, total + 1)]  # 0: before the first tile


def test_cancel_stops_between_tiles(image):
    ran = []

    def fn(tile):
        ran.append(1)
        return tile

    with pytest.raises(Cancelled):
        tiled_upscale(fn, image, 1, 32, 8, cancel=lambda: len(ran) >= 2)
    assert len(ran) == 2


def test_no_tiling_runs_once(image):
    ran = []
    out = tiled_upscale(lambda t: ran.append(t.shape) or t, image, 1, 0, 16)
    assert ran == [image.shape] and out.shape == image.shape


def test_wrong_output_size_is_reported(image):
    with pytest.raises(InputError, match="expected spatial size"):
        tiled_upscale(lambda t: t, image, 2, 32, 8)


def test_rows_are_written_once_top_to_bottom_and_match_the_canvas(image):
    net = _conv_net()
    canvas = tiled_upscale(net, image, 4, tile=20, overlap=6)
    rows, starts = np.zeros_like(canvas), []

    def write(y, band):
        starts.append((y, band.shape[2]))
        rows[:, :, y:y + band.shape[2]] += band

    assert tiled_upscale(net, image, 4, tile=20, overlap=6, write=write) is None
    assert len(starts) > 2 and starts[0][0] == 0
    assert all(y + h == next_y for (y, h), (next_y, _) in zip(starts, starts[1:]))
    assert starts[-1][0] + starts[-1][1] == canvas.shape[2]
    np.testing.assert_array_equal(rows, canvas)
