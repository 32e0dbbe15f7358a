"""Self-ensemble: the 8 orientations are exact inverses of each other, the average removes an
orientation-bound artefact as the symmetry group predicts, and the engine applies it per tile."""
import numpy as np
import pytest

from core import methods
from core.image_io import Image
from core.engine import Engine, UpscaleRequest
from core.methods.bicubic import Bicubic
from core.methods.base import ConfigSpec
from core.self_ensemble import ORIENTATIONS, orient, self_ensemble, unorient


def _tile(h=5, w=7):
    return np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)


def _nearest(tile, scale=2):
    return tile.repeat(scale, axis=2).repeat(scale, axis=3)


def _marks_top_left(tile):
    """An upscaler with an orientation-bound defect: its first output pixel is always +1."""
    out = _nearest(tile).copy()
    out[..., 0, 0] += 1.0
    return out


def test_orientations_are_the_8_distinct_symmetries_and_invert_exactly():
    tile = _tile()
    oriented = [orient(tile, turns, mirror) for turns, mirror in ORIENTATIONS]
    assert len({o.tobytes() + bytes(o.shape) for o in oriented}) == 8
    for (turns, mirror), o in zip(ORIENTATIONS, oriented):
        assert o.shape[2:] == ((5, 7) if turns % 2 == 0 else (7, 5))
        np.testing.assert_array_equal(unorient(o, turns, mirror), tile)


def test_an_orientation_free_upscaler_is_unchanged():
    tile = _tile()
    np.testing.assert_allclose(self_ensemble(_nearest)(tile), _nearest(tile), atol=1e-6)


def test_an_orientation_bound_defect_is_spread_over_the_corners():
    """Each corner is the top-left one in 2 of the 8 orientations, so each gets 2/8 of the mark."""
    tile = _tile()
    out = self_ensemble(_marks_top_left)(tile)
    expected = _nearest(tile).copy()
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        expected[..., y, x] += 0.25
    np.testing.assert_allclose(out, expected, atol=1e-6)


class _MarkingUpscaler(Bicubic):
    id = "marking"
    scale = 2

    @classmethod
    def configs(cls):
        return [ConfigSpec("marking:default", 0, "bundled")]

    def tile_scale(self, request):
        return 2

    def run_tile(self, tile, context):
        return _marks_top_left(tile)


def test_the_engine_ensembles_every_tile_when_asked(monkeypatch):
    monkeypatch.setattr(methods, "METHODS", {"marking": _MarkingUpscaler})
    rgb = np.full((6, 8, 3), 0.25, np.float32)
    engine = Engine()
    plain = engine.upscale(Image(rgb), UpscaleRequest(model="marking", scale=2, tile=0)).pixels
    assert plain[0, 0, 0] == pytest.approx(1.0) and plain[0, -1, 0] == pytest.approx(0.25)
    averaged = engine.upscale(Image(rgb), UpscaleRequest(model="marking", scale=2, tile=0, ensemble=True)).pixels
    corners = [averaged[y, x, 0] for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1))]
    assert corners == pytest.approx([0.5] * 4)
    assert averaged[3, 4, 0] == pytest.approx(0.25)


def test_bicubic_is_symmetric_so_its_ensemble_is_itself():
    rgb = np.random.default_rng(1).random((9, 11, 3), dtype=np.float32)
    engine = Engine()
    plain = engine.upscale(Image(rgb), UpscaleRequest(tile=0)).pixels
    averaged = engine.upscale(Image(rgb), UpscaleRequest(tile=0, ensemble=True)).pixels
    np.testing.assert_allclose(averaged, plain, atol=1e-5)
