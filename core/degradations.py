"""Synthetic degradations: HR -> LR for training, tests and benchmarks.

Two families, both batched torch ops on B x 3 x H x W float tensors in 0..1 (per-sample parameters,
so one batch can hold many degradations):
- classic (SRMD/DASR/KDSR/CMDSR): Gaussian blur (isotropic or anisotropic, up to 21x21) ->
  bicubic x`scale` down -> additive white Gaussian noise -> 8-bit rounding;
- Real-ESRGAN-style second order: two rounds of [blur (Gaussian, generalized Gaussian, plateau or
  sinc kernels) -> random resize -> Gaussian or Poisson noise -> JPEG], then a final sinc filter.

All randomness comes from an explicit `torch.Generator` (and a `numpy` Generator for JPEG quality,
which runs through Pillow), so a seed reproduces the same LR.
"""

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

MAX_KERNEL_SIZE = 21


def _uniform(batch: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator)


def _kernel_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    half = (size - 1) / 2
    ax = torch.arange(size, dtype=torch.float32) - half
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _inverse_covariances(sigma_x, sigma_y, theta):
    """B x 2 x 2 inverse covariance of a Gaussian with principal std (sigma_x, sigma_y) rotated by theta."""
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    diag = torch.diag_embed(torch.stack([sigma_x ** 2, sigma_y ** 2], -1))
    cov = rot @ diag @ rot.transpose(-1, -2)
    return torch.linalg.inv(cov)


def _quadratic_form(inv_cov, size: int) -> torch.Tensor:
    xx, yy = _kernel_grid(size)
    a, b, c = inv_cov[:, 0, 0, None, None], inv_cov[:, 0, 1, None, None], inv_cov[:, 1, 1, None, None]
    return a * xx ** 2 + 2 * b * xx * yy + c * yy ** 2


def _normalise(kernels: torch.Tensor) -> torch.Tensor:
    return kernels / kernels.sum(dim=(-1, -2), keepdim=True)


def isotropic_gaussian_kernels(sigma: torch.Tensor, size: int = MAX_KERNEL_SIZE) -> torch.Tensor:
    """B x size x size normalised Gaussian kernels, one per sigma (pixels)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
    return anisotropic_gaussian_kernels(sigma, sigma, torch.zeros_like(sigma), size)


def anisotropic_gaussian_kernels(sigma_x, sigma_y, theta, size: int = MAX_KERNEL_SIZE) -> torch.Tensor:
    sigma_x, sigma_y, theta = (torch.as_tensor(v, dtype=torch.float32).reshape(-1)
                               for v in (sigma_x, sigma_y, theta))
    q = _quadratic_form(_inverse_covariances(sigma_x, sigma_y, theta), size)
    return _normalise(torch.exp(-0.5 * q))


def generalized_gaussian_kernels(sigma_x, sigma_y, theta, beta, size: int) -> torch.Tensor:
    """exp(-0.5 * q^beta): beta < 1 gives heavier tails, beta > 1 a flatter top."""
    q = _quadratic_form(_inverse_covariances(sigma_x, sigma_y, theta), size)
    return _normalise(torch.exp(-0.5 * q.clamp_min(0) ** beta[:, None, None]))


def plateau_kernels(sigma_x, sigma_y, theta, beta, size: int) -> torch.Tensor:
    """1 / (1 + q^beta): a flat top with polynomial tails."""
    q = _quadratic_form(_inverse_covariances(sigma_x, sigma_y, theta), size)
    return _normalise(1.0 / (1.0 + q.clamp_min(0) ** beta[:, None, None]))


def sinc_kernels(cutoff: torch.Tensor, size: int) -> torch.Tensor:
    """Circular low-pass (2-D sinc / Airy) kernels with the given cutoff in radians; they model
    ringing and overshoot artefacts."""
    xx, yy = _kernel_grid(size)
    r = torch.sqrt(xx ** 2 + yy ** 2)[None]
    cutoff = cutoff[:, None, None]
    arg = cutoff * r
    safe = torch.where(r == 0, torch.ones_like(arg), arg)
    kernel = cutoff * torch.special.bessel_j1(safe) / (2 * math.pi * torch.where(r == 0, torch.ones_like(r), r))
    centre = cutoff ** 2 / (4 * math.pi)
    kernel = torch.where(r == 0, centre.expand_as(kernel), kernel)
    return _normalise(kernel)


def pad_kernels(kernels: torch.Tensor, size: int = MAX_KERNEL_SIZE) -> torch.Tensor:
    """Zero-pad B x k x k kernels (odd k) to B x size x size."""
    pad = (size - kernels.shape[-1]) // 2
    return F.pad(kernels, (pad, pad, pad, pad)) if pad > 0 else kernels


def blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image (B x C x H x W) with its own kernel (B x k x k), reflect padding."""
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    pad = k // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    padded = F.pad(images.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.to(images.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def bicubic_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize (close to MATLAB imresize when shrinking)."""
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)


def bicubic_downsample(images: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    return bicubic_resize(images, (h // scale, w // scale))


def add_gaussian_noise(images: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator,
                       gray: torch.Tensor | None = None) -> torch.Tensor:
    """AWGN with per-sample std `sigma` (0..1 scale); where `gray` is true the same noise is added
    to all three channels."""
    b, c, h, w = images.shape
    noise = torch.randn(images.shape, generator=generator)
    if gray is not None and bool(gray.any()):
        mono = torch.randn((b, 1, h, w), generator=generator).expand(b, c, h, w)
        noise = torch.where(gray[:, None, None, None], mono, noise)
    return images + noise * sigma.reshape(b, 1, 1, 1)


def add_poisson_noise(images: torch.Tensor, scale: torch.Tensor, generator: torch.Generator,
                      gray: torch.Tensor | None = None) -> torch.Tensor:
    """Shot noise: counts ~ Poisson(x * 255 * 10^k) rescaled, difference multiplied by `scale`."""
    b, c, h, w = images.shape
    x = images.clamp(0, 1)
    gray = torch.zeros(b, dtype=torch.bool) if gray is None else gray
    luma = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(b, c, h, w)
    src = torch.where(gray[:, None, None, None], luma, x)
    vals = 255.0
    noisy = torch.poisson(src * vals, generator=generator) / vals
    return images + (noisy - src) * scale.reshape(b, 1, 1, 1)


def quantize(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round() / 255


def jpeg(images: torch.Tensor, quality: np.ndarray) -> torch.Tensor:
    """JPEG round trip through Pillow (4:2:0), one quality per sample."""
    out = []
    for img, q in zip(images, quality):
        array = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(q))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.astype(np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# Classic degradations (KDSR, CMDSR, the benchmark settings)

@dataclass
class ClassicBatch:
    """The parameters of a batch of classic degradations (what the model should infer)."""
    kernels: torch.Tensor       # B x k x k
    noise_sigma: torch.Tensor   # B, 0..1 scale


def sample_isotropic(batch: int, generator: torch.Generator, sigma=(0.2, 4.0), noise=(0.0, 0.0),
                     size: int = MAX_KERNEL_SIZE) -> ClassicBatch:
    s = _uniform(batch, *sigma, generator)
    return ClassicBatch(isotropic_gaussian_kernels(s, size), _uniform(batch, *noise, generator) / 255)


def sample_anisotropic(batch: int, generator: torch.Generator, sigma=(0.2, 4.0), noise=(0.0, 25.0),
                       size: int = MAX_KERNEL_SIZE) -> ClassicBatch:
    sx, sy = _uniform(batch, *sigma, generator), _uniform(batch, *sigma, generator)
    theta = _uniform(batch, 0.0, math.pi, generator)
    return ClassicBatch(anisotropic_gaussian_kernels(sx, sy, theta, size),
                        _uniform(batch, *noise, generator) / 255)


def classic_degrade(hr: torch.Tensor, params: ClassicBatch, scale: int,
                    generator: torch.Generator) -> torch.Tensor:
    """blur -> bicubic down -> AWGN -> 8-bit. hr: B x 3 x H x W in 0..1 (H, W divisible by scale)."""
    lr = bicubic_downsample(blur(hr, params.kernels), scale)
    if bool((params.noise_sigma > 0).any()):
        lr = add_gaussian_noise(lr, params.noise_sigma, generator)
    return quantize(lr)
