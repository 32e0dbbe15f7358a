"""Classic and Real-ESRGAN-style degradations: kernels, shapes, ranges, seeded reproducibility."""
import math

import pytest
import torch

from core import degradations as deg


def test_kernels_are_normalised_and_centred():
    kernels = torch.cat([
        deg.isotropic_gaussian_kernels(torch.tensor([0.2, 2.0, 4.0])),
        deg.anisotropic_gaussian_kernels(torch.tensor([3.0]), torch.tensor([0.5]), torch.tensor([1.0])),
        deg.generalized_gaussian_kernels(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.3]),
                                         torch.tensor([0.5]), 21),
        deg.plateau_kernels(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.3]),
                            torch.tensor([1.5]), 21),
        deg.pad_kernels(deg.sinc_kernels(torch.tensor([math.pi / 3]), 13)),
    ])
    assert kernels.shape == (7, 21, 21)
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(7), atol=1e-5)
    # point-symmetric about the centre, so blurring does not shift the image
    assert torch.allclose(kernels, kernels.flip(1).flip(2), atol=1e-6)
    assert int(kernels[1].argmax()) == 10 * 21 + 10


def test_wider_sigma_spreads_the_kernel():
    narrow, wide = deg.isotropic_gaussian_kernels(torch.tensor([1.0, 3.0]))
    assert narrow[10, 10] > wide[10, 10]
    assert wide[10, 0] > narrow[10, 0]


def test_blur_keeps_a_flat_image_flat():
    flat = torch.full((2, 3, 24, 24), 0.4)
    kernels = deg.isotropic_gaussian_kernels(torch.tensor([1.0, 4.0]))
    assert torch.allclose(deg.blur(flat, kernels), flat, atol=1e-6)


def test_classic_degrade_is_seeded_and_8bit():
    hr = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return deg.classic_degrade(hr, deg.sample_anisotropic(3, g, noise=(5.0, 25.0)), 4, g)

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (3, 3, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, (a * 255).round() / 255)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_noise_level_matches_sigma():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 128, 128), 0.5)
    noisy = deg.add_gaussian_noise(flat, torch.tensor([10 / 255]), g)
    assert abs(float((noisy - flat).std()) * 255 - 10) < 0.3


def test_realesrgan_degrade_shapes_and_reproducibility():
    hr = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a = deg.realesrgan_degrade(hr, 4, torch.Generator().manual_seed(5))
    b = deg.realesrgan_degrade(hr, 4, torch.Generator().manual_seed(5))
    assert a.shape == (2, 3, 16, 16)
    assert torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def _edges_and_flat(size=128):
    """A checkerboard of 8-px squares on the left half (detail that blur removes), flat grey on the
    right half (where only noise and JPEG put energy)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = (((yy // 8) + (xx // 8)) % 2).float() * 0.6 + 0.2
    image = torch.where(xx < size // 2, board, torch.full_like(board, 0.5))
    return image.expand(1, 3, size, size).contiguous()


def _detail(lr):
    """Mean absolute horizontal gradient of the checkerboard half."""
    half = lr[..., : lr.shape[-1] // 2 - 2]
    return float((half[..., 1:] - half[..., :-1]).abs().mean())


def _noise(lr):
    """Std of the flat half, away from the border between the halves."""
    return float(lr[..., 4:-4, lr.shape[-1] // 2 + 3: -4].std())


def test_coupled_degrade_orders_blur_and_noise_on_average():
    """MM-RealSR's ranking losses rely on this: 'more blur' keeps less detail than the origin,
    'more noise' puts more noise in flat areas, the strongest anchor is worst on both, and the
    clean anchor is the least degraded. Averaged over 24 draws (a single draw may tie)."""
    hr = _edges_and_flat().expand(24, 3, 128, 128).contiguous()
    lr, strengths = deg.coupled_degrade(hr, 4, torch.Generator().manual_seed(3))
    assert lr.shape == (len(deg.COUPLED_NAMES), 24, 3, 32, 32) and strengths.shape == (len(deg.COUPLED_NAMES), 24, 2)
    origin, blurred, noisy, strongest, clean = lr
    assert _detail(blurred) < _detail(origin) < _detail(clean)
    assert _noise(clean) < _noise(origin) < _noise(noisy)
    assert _detail(strongest) < _detail(blurred)
    assert _noise(strongest) > _noise(origin)
    again, again_strengths = deg.coupled_degrade(hr[:2], 4, torch.Generator().manual_seed(3))
    assert torch.equal(again, lr[:, :2]) and torch.equal(again_strengths, strengths[:, :2])


def test_a_chain_without_jpeg_keeps_its_noise_and_scores_only_the_noise():
    """A quarter of MM-RealSR's draws have no JPEG, so DE-Net learns plain sensor noise too: the
    noise strength then counts the noise levels alone, and more noise still raises it."""
    generator = torch.Generator().manual_seed(11)
    plan = deg.sample_chain(generator)
    plain = deg.without_jpeg(plan)
    levels = [deg._noise_levels(stage, settings)[0]
              for stage, settings in ((plan.first, deg.FIRST_STAGE), (plan.second, deg.SECOND_STAGE))]
    assert deg.chain_strengths(plain) == (deg.chain_strengths(plan)[0], pytest.approx(sum(levels) / 4))
    noisier = deg.more_noise(plain, generator)
    assert noisier.first.jpeg_quality is None and noisier.second.jpeg_quality is None
    assert deg.chain_strengths(noisier)[1] > deg.chain_strengths(plain)[1]
    hr = _edges_and_flat()
    lr = deg.apply_chain(hr, plain, 4, torch.Generator().manual_seed(1))
    assert lr.shape == (1, 3, 32, 32)
    assert not torch.equal(lr, deg.apply_chain(hr, plan, 4, torch.Generator().manual_seed(1)))


def test_coupled_strengths_name_what_each_version_changed():
    """The (blur, noise) the SR net is conditioned on in training: the anchors are exactly (1, 1)
    and (0, 0); 'more blur' raises only blur, 'more noise' only noise."""
    hr = _edges_and_flat().expand(16, 3, 128, 128).contiguous()
    _, strengths = deg.coupled_degrade(hr, 4, torch.Generator().manual_seed(5))
    origin, blurred, noisy, strongest, clean = strengths
    assert torch.allclose(strongest, torch.ones_like(strongest)) and torch.equal(clean, torch.zeros_like(clean))
    assert (blurred[:, 0] > origin[:, 0]).all() and torch.equal(blurred[:, 1], origin[:, 1])
    assert (noisy[:, 1] > origin[:, 1]).all() and torch.equal(noisy[:, 0], origin[:, 0])
    assert ((strengths >= 0) & (strengths <= 1)).all()


def test_coupled_variants_change_only_their_own_axis():
    plan = deg.sample_chain(torch.Generator().manual_seed(1))
    blurred = deg.more_blur(plan, torch.Generator().manual_seed(2))
    assert blurred.first.noise == plan.first.noise and blurred.second.jpeg_quality == plan.second.jpeg_quality
    assert blurred.first.resize <= plan.first.resize
    noisy = deg.more_noise(plan, torch.Generator().manual_seed(2))
    assert noisy.first.kernel == plan.first.kernel and noisy.first.resize == plan.first.resize
    assert noisy.first.jpeg_quality <= plan.first.jpeg_quality
    assert (noisy.first.noise.level, noisy.second.noise.level) != (plan.first.noise.level, plan.second.noise.level)
