"""CMDSR support-set sampling: deterministic, texture-seeking, safe on tiny or bad regions."""
import numpy as np
import pytest

from core.errors import InputError
from core.support_set import sample_support_patches, stack_support


def _half_textured(size=128):
    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), 0.5, dtype=np.float32)
    image[:, size // 2:] = rng.random((size, size // 2, 3), dtype=np.float32)
    return image


def test_same_image_same_patches():
    image = _half_textured()
    a = sample_support_patches(image)
    b = sample_support_patches(image)
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)


def test_textured_windows_are_preferred():
    patches = sample_support_patches(_half_textured(), count=4)
    assert all(p.std() > 0.1 for p in patches)


def test_region_restricts_the_patches():
    image = _half_textured()
    patches = sample_support_patches(image, region=(0, 0, 64, 128), count=4)
    assert np.allclose(patches, 0.5)  # the flat left half only


def test_small_region_is_padded_and_filled():
    image = _half_textured()
    patches = sample_support_patches(image, region=(70, 10, 12, 9))
    assert patches.shape == (20, 32, 32, 3)


def test_degenerate_region_is_a_clear_error():
    with pytest.raises(InputError, match="fewer than 2x2 pixels"):
        sample_support_patches(_half_textured(), region=(5, 5, 1, 40))
    with pytest.raises(InputError, match="fewer than 2x2 pixels"):
        sample_support_patches(_half_textured(), region=(500, 500, 10, 10))


def test_stack_support_puts_patches_along_channels():
    patches = np.random.default_rng(1).random((20, 32, 32, 3), dtype=np.float32)
    stacked = stack_support(patches)
    assert stacked.shape == (1, 60, 32, 32)
    assert np.array_equal(stacked[0, 3:6], patches[1].transpose(2, 0, 1))
