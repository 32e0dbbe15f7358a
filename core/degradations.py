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


def kernel_width(kernels: torch.Tensor) -> torch.Tensor:
    """B x k x k normalised kernels -> their RMS radius per axis (sigma for a Gaussian), B."""
    k = kernels.shape[-1]
    offsets = torch.arange(k, dtype=kernels.dtype) - (k - 1) / 2
    squared = offsets[None, :] ** 2 + offsets[:, None] ** 2
    return torch.sqrt((kernels * squared).sum((-2, -1)) / 2)


def degradation_targets(params: ClassicBatch, noise_max: float) -> torch.Tensor:
    """B x 2: blur width (of sigma 0.2..4) and noise level (of 0..noise_max, 8-bit units), each
    scaled to about -1..1: what a training-only read-out should find in a degradation vector."""
    blur = (kernel_width(params.kernels) - 2.1) / 1.9
    noise = params.noise_sigma * 255 / (noise_max / 2) - 1
    return torch.stack([blur, noise], dim=1)


def classic_degrade(hr: torch.Tensor, params: ClassicBatch, scale: int,
                    generator: torch.Generator) -> torch.Tensor:
    """blur -> bicubic down -> AWGN -> 8-bit. hr: B x 3 x H x W in 0..1 (H, W divisible by scale)."""
    lr = bicubic_downsample(blur(hr, params.kernels), scale)
    if bool((params.noise_sigma > 0).any()):
        lr = add_gaussian_noise(lr, params.noise_sigma, generator)
    return quantize(lr)


# ---------------------------------------------------------------------------------------------
# Real-ESRGAN-style second-order degradations (Wang et al., ICCVW 2021), with its default ranges

@dataclass
class StageSettings:
    kernel_sigma: tuple[float, float]
    resize_probs: tuple[float, float, float]       # up, down, keep
    resize_range: tuple[float, float]
    gaussian_sigma: tuple[float, float]            # 0..255 scale
    poisson_scale: tuple[float, float]
    blur_prob: float = 1.0
    kernel_types: tuple[str, ...] = ("iso", "aniso", "generalized_iso", "generalized_aniso",
                                     "plateau_iso", "plateau_aniso")
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    beta_generalized: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    gaussian_noise_prob: float = 0.5
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)


FIRST_STAGE = StageSettings(kernel_sigma=(0.2, 3.0), resize_probs=(0.2, 0.7, 0.1),
                            resize_range=(0.15, 1.5), gaussian_sigma=(1.0, 30.0),
                            poisson_scale=(0.05, 3.0))
SECOND_STAGE = StageSettings(kernel_sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3),
                             resize_range=(0.3, 1.2), gaussian_sigma=(1.0, 25.0),
                             poisson_scale=(0.05, 2.5), blur_prob=0.8)
FINAL_SINC_PROB = 0.8
RESIZE_MODES = ("area", "bilinear", "bicubic")


def _draw(low: float, high: float, generator: torch.Generator) -> float:
    return float(_uniform(1, low, high, generator))


def _chance(p: float, generator: torch.Generator) -> bool:
    return float(torch.rand(1, generator=generator)) < p


def random_kernel(stage: StageSettings, generator: torch.Generator) -> torch.Tensor:
    """One 21 x 21 blur kernel of a random type and odd size 7..21."""
    size = 2 * int(torch.randint(3, 11, (1,), generator=generator)) + 1
    if _chance(stage.sinc_prob, generator):
        low = math.pi / 3 if size < 13 else math.pi / 5
        return pad_kernels(sinc_kernels(torch.tensor([_draw(low, math.pi, generator)]), size))
    kind = stage.kernel_types[int(torch.multinomial(torch.tensor(stage.kernel_probs), 1, generator=generator))]
    sx = _draw(*stage.kernel_sigma, generator)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = _draw(*stage.kernel_sigma, generator), _draw(0, math.pi, generator)
    args = [torch.tensor([v]) for v in (sx, sy, theta)]
    if kind.startswith("generalized"):
        kernel = generalized_gaussian_kernels(*args, torch.tensor([_draw(*stage.beta_generalized, generator)]), size)
    elif kind.startswith("plateau"):
        kernel = plateau_kernels(*args, torch.tensor([_draw(*stage.beta_plateau, generator)]), size)
    else:
        kernel = anisotropic_gaussian_kernels(*args, size)
    return pad_kernels(kernel)


def _random_resize(image: torch.Tensor, stage: StageSettings, generator: torch.Generator) -> torch.Tensor:
    kind = int(torch.multinomial(torch.tensor(stage.resize_probs), 1, generator=generator))
    factor = (_draw(1.0, stage.resize_range[1], generator) if kind == 0 else
              _draw(stage.resize_range[0], 1.0, generator) if kind == 1 else 1.0)
    mode = RESIZE_MODES[int(torch.randint(0, 3, (1,), generator=generator))]
    h, w = image.shape[-2:]
    size = (max(int(h * factor), 1), max(int(w * factor), 1))
    return _resize(image, size, mode)


def _resize(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "area":
        return F.interpolate(image, size=size, mode="area")
    return F.interpolate(image, size=size, mode=mode, align_corners=False)


def _random_noise(image: torch.Tensor, stage: StageSettings, generator: torch.Generator) -> torch.Tensor:
    gray = torch.tensor([_chance(stage.gray_noise_prob, generator)])
    if _chance(stage.gaussian_noise_prob, generator):
        sigma = torch.tensor([_draw(*stage.gaussian_sigma, generator) / 255])
        return add_gaussian_noise(image, sigma, generator, gray)
    return add_poisson_noise(image, torch.tensor([_draw(*stage.poisson_scale, generator)]), generator, gray)


def _random_jpeg(image: torch.Tensor, stage: StageSettings, generator: torch.Generator) -> torch.Tensor:
    quality = int(torch.randint(stage.jpeg_range[0], stage.jpeg_range[1] + 1, (1,), generator=generator))
    return jpeg(image.clamp(0, 1), np.array([quality]))


def realesrgan_degrade(hr: torch.Tensor, scale: int, generator: torch.Generator,
                       first: StageSettings = FIRST_STAGE, second: StageSettings = SECOND_STAGE,
                       final_sinc_prob: float = FINAL_SINC_PROB) -> torch.Tensor:
    """B x 3 x H x W HR -> B x 3 x H/scale x W/scale LR through the second-order chain; each sample
    draws its own kernels, resizes, noise and JPEG qualities."""
    out = []
    for image in hr:
        x = image[None]
        h, w = x.shape[-2:]
        x = blur(x, random_kernel(first, generator))
        x = _random_resize(x, first, generator)
        x = _random_noise(x, first, generator)
        x = _random_jpeg(x, first, generator)
        if _chance(second.blur_prob, generator):
            x = blur(x, random_kernel(second, generator))
        factor = _draw(*second.resize_range, generator)
        mode = RESIZE_MODES[int(torch.randint(0, 3, (1,), generator=generator))]
        x = _resize(x, (max(int(h / scale * factor), 1), max(int(w / scale * factor), 1)), mode)
        x = _random_noise(x, second, generator)
        target = (h // scale, w // scale)
        mode = RESIZE_MODES[int(torch.randint(0, 3, (1,), generator=generator))]
        sinc = (sinc_kernels(torch.tensor([_draw(math.pi / 3, math.pi, generator)]), 2 * int(
            torch.randint(3, 11, (1,), generator=generator)) + 1)
            if _chance(final_sinc_prob, generator) else None)
        if _chance(0.5, generator):
            x = _resize(x, target, mode)
            x = blur(x, sinc) if sinc is not None else x
            x = _random_jpeg(x, second, generator)
        else:
            x = _random_jpeg(x, second, generator)
            x = _resize(x, target, mode)
            x = blur(x, sinc) if sinc is not None else x
        out.append(quantize(x)[0])
    return torch.stack(out)
