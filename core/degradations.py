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
from dataclasses import dataclass, replace

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


def sample_isotropic(batch: int, generator: torch.Generator, sigma: tuple[float, float] = (0.2, 4.0),
                     noise: tuple[float, float] = (0.0, 0.0),
                     size: int = MAX_KERNEL_SIZE) -> ClassicBatch:
    s = _uniform(batch, *sigma, generator)
    return ClassicBatch(isotropic_gaussian_kernels(s, size), _uniform(batch, *noise, generator) / 255)


def sample_anisotropic(batch: int, generator: torch.Generator, sigma: tuple[float, float] = (0.2, 4.0),
                       noise: tuple[float, float] = (0.0, 25.0),
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
# Real-ESRGAN-style second-order degradations (Wang et al., ICCVW 2021), with its default ranges.
# A chain is first drawn as a `ChainPlan` (every parameter, no pixels), then applied; MM-RealSR's
# coupled synthesis derives its "more blur", "more noise" and strongest variants from one plan.

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


@dataclass
class KernelPlan:
    """One blur kernel by its parameters, so a variant can widen it: `kind` is a Real-ESRGAN
    kernel type or "sinc" (then `cutoff` in radians; a lower cutoff blurs more)."""
    kind: str
    size: int
    sigma_x: float = 0.0
    sigma_y: float = 0.0
    theta: float = 0.0
    beta: float = 1.0
    cutoff: float = math.pi

    def kernel(self) -> torch.Tensor:
        """size x size, zero-padded to MAX_KERNEL_SIZE."""
        if self.kind == "sinc":
            return pad_kernels(sinc_kernels(torch.tensor([self.cutoff]), self.size))[0]
        sx, sy, theta = (torch.tensor([v]) for v in (self.sigma_x, self.sigma_y, self.theta))
        if self.kind.startswith("generalized"):
            kernel = generalized_gaussian_kernels(sx, sy, theta, torch.tensor([self.beta]), self.size)
        elif self.kind.startswith("plateau"):
            kernel = plateau_kernels(sx, sy, theta, torch.tensor([self.beta]), self.size)
        else:
            kernel = anisotropic_gaussian_kernels(sx, sy, theta, self.size)
        return pad_kernels(kernel)[0]


@dataclass
class NoisePlan:
    gaussian: bool
    level: float        # Gaussian sigma (0..255 scale) or Poisson scale
    gray: bool


@dataclass
class StagePlan:
    kernel: KernelPlan | None
    resize: float       # stage 1: factor of the input size; stage 2: of the final LR size
    resize_mode: str
    noise: NoisePlan
    jpeg_quality: int | None    # None: no JPEG (see `without_jpeg`)


@dataclass
class ChainPlan:
    first: StagePlan
    second: StagePlan
    final_sinc: KernelPlan | None
    final_mode: str
    resize_before_jpeg: bool


def _draw(low: float, high: float, generator: torch.Generator) -> float:
    return float(_uniform(1, low, high, generator))


def _chance(p: float, generator: torch.Generator) -> bool:
    return float(torch.rand(1, generator=generator)) < p


def _odd_size(generator: torch.Generator) -> int:
    return 2 * int(torch.randint(3, 11, (1,), generator=generator)) + 1


def _mode(generator: torch.Generator) -> str:
    return RESIZE_MODES[int(torch.randint(0, 3, (1,), generator=generator))]


def _isotropic(kind: str) -> bool:
    """Real-ESRGAN's kernel types: "iso", "generalized_iso", "plateau_iso" vs the "*aniso" ones."""
    return kind.endswith("iso") and not kind.endswith("aniso")


def sample_kernel(stage: StageSettings, generator: torch.Generator) -> KernelPlan:
    """A kernel of a random type and odd size 7..21."""
    size = _odd_size(generator)
    if _chance(stage.sinc_prob, generator):
        return KernelPlan("sinc", size, cutoff=_draw(_sinc_floor(size), math.pi, generator))
    kind = stage.kernel_types[int(torch.multinomial(torch.tensor(stage.kernel_probs), 1, generator=generator))]
    sx = _draw(*stage.kernel_sigma, generator)
    if _isotropic(kind):
        sy, theta = sx, 0.0
    else:
        sy, theta = _draw(*stage.kernel_sigma, generator), _draw(0, math.pi, generator)
    beta = (_draw(*stage.beta_generalized, generator) if kind.startswith("generalized") else
            _draw(*stage.beta_plateau, generator) if kind.startswith("plateau") else 1.0)
    return KernelPlan(kind, size, sx, sy, theta, beta)


def _sinc_floor(size: int) -> float:
    """The lowest sinc cutoff for a kernel size (Real-ESRGAN: pi/3 below 13 taps, else pi/5)."""
    return math.pi / 3 if size < 13 else math.pi / 5


def sample_noise(stage: StageSettings, generator: torch.Generator) -> NoisePlan:
    gray = _chance(stage.gray_noise_prob, generator)
    if _chance(stage.gaussian_noise_prob, generator):
        return NoisePlan(True, _draw(*stage.gaussian_sigma, generator), gray)
    return NoisePlan(False, _draw(*stage.poisson_scale, generator), gray)


def _sample_stage(stage: StageSettings, generator: torch.Generator, first: bool) -> StagePlan:
    kernel = sample_kernel(stage, generator) if _chance(stage.blur_prob, generator) else None
    if first:
        kind = int(torch.multinomial(torch.tensor(stage.resize_probs), 1, generator=generator))
        factor = (_draw(1.0, stage.resize_range[1], generator) if kind == 0 else
                  _draw(stage.resize_range[0], 1.0, generator) if kind == 1 else 1.0)
    else:
        factor = _draw(*stage.resize_range, generator)
    mode = _mode(generator)
    noise = sample_noise(stage, generator)
    quality = int(torch.randint(stage.jpeg_range[0], stage.jpeg_range[1] + 1, (1,), generator=generator))
    return StagePlan(kernel, factor, mode, noise, quality)


def sample_chain(generator: torch.Generator, first: StageSettings = FIRST_STAGE,
                 second: StageSettings = SECOND_STAGE, final_sinc_prob: float = FINAL_SINC_PROB) -> ChainPlan:
    """Every parameter of one second-order degradation."""
    first_plan = _sample_stage(first, generator, first=True)
    second_plan = _sample_stage(second, generator, first=False)
    size = _odd_size(generator)
    sinc = (KernelPlan("sinc", size, cutoff=_draw(math.pi / 3, math.pi, generator))
            if _chance(final_sinc_prob, generator) else None)
    return ChainPlan(first_plan, second_plan, sinc, _mode(generator), _chance(0.5, generator))


def _resize(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "area":
        return F.interpolate(image, size=size, mode="area")
    return F.interpolate(image, size=size, mode=mode, align_corners=False)


def _apply_noise(image: torch.Tensor, noise: NoisePlan, generator: torch.Generator) -> torch.Tensor:
    gray = torch.tensor([noise.gray])
    if noise.gaussian:
        return add_gaussian_noise(image, torch.tensor([noise.level / 255]), generator, gray)
    return add_poisson_noise(image, torch.tensor([noise.level]), generator, gray)


def _blur(image: torch.Tensor, kernel: KernelPlan | None) -> torch.Tensor:
    return image if kernel is None else blur(image, kernel.kernel()[None])


def _jpeg(image: torch.Tensor, quality: int | None) -> torch.Tensor:
    image = image.clamp(0, 1)
    return image if quality is None else jpeg(image, np.array([quality]))


def apply_chain(hr: torch.Tensor, plan: ChainPlan, scale: int, generator: torch.Generator) -> torch.Tensor:
    """1 x 3 x H x W HR -> 1 x 3 x H/scale x W/scale LR, 8-bit; `generator` draws the noise."""
    h, w = hr.shape[-2:]
    x = _blur(hr, plan.first.kernel)
    x = _resize(x, (max(int(h * plan.first.resize), 1), max(int(w * plan.first.resize), 1)),
                plan.first.resize_mode)
    x = _jpeg(_apply_noise(x, plan.first.noise, generator), plan.first.jpeg_quality)
    x = _blur(x, plan.second.kernel)
    factor = plan.second.resize
    x = _resize(x, (max(int(h / scale * factor), 1), max(int(w / scale * factor), 1)), plan.second.resize_mode)
    x = _apply_noise(x, plan.second.noise, generator)
    target = (h // scale, w // scale)
    quality = plan.second.jpeg_quality
    if plan.resize_before_jpeg:
        x = _jpeg(_blur(_resize(x, target, plan.final_mode), plan.final_sinc), quality)
    else:
        x = _blur(_resize(_jpeg(x, quality), target, plan.final_mode), plan.final_sinc)
    return quantize(x)


def realesrgan_degrade(hr: torch.Tensor, scale: int, generator: torch.Generator,
                       first: StageSettings = FIRST_STAGE, second: StageSettings = SECOND_STAGE,
                       final_sinc_prob: float = FINAL_SINC_PROB) -> torch.Tensor:
    """B x 3 x H x W HR -> B x 3 x H/scale x W/scale LR through the second-order chain; each sample
    draws its own kernels, resizes, noise and JPEG qualities."""
    return torch.cat([apply_chain(image[None], sample_chain(generator, first, second, final_sinc_prob), scale, generator)
                      for image in hr])


# ---------------------------------------------------------------------------------------------
# MM-RealSR's coupled synthesis (Mou et al., ECCV 2022): from one drawn chain, a version with
# more blur (the same noise and JPEG) and one with more noise and harsher JPEG (the same blur), so
# that a ranking loss can teach the degradation estimator which is which; plus the strongest
# chain (score 1) and the clean image (score 0) as the two anchors of each score.

def _widen(kernel: KernelPlan | None, stage: StageSettings, generator: torch.Generator) -> KernelPlan:
    """The same kind of kernel, wider: each sigma drawn between itself + 0.1 and the range end
    (a sinc: a cutoff between the size's floor and its own); no blur becomes a Gaussian."""
    low, high = stage.kernel_sigma
    if kernel is None:
        sigma = _draw(low + 0.1, high, generator)
        return KernelPlan("iso", MAX_KERNEL_SIZE, sigma, sigma)
    if kernel.kind == "sinc":
        return replace(kernel, cutoff=_draw(_sinc_floor(kernel.size), kernel.cutoff, generator))
    wider = [_draw(min(s + 0.1, high), high, generator) for s in (kernel.sigma_x, kernel.sigma_y)]
    if _isotropic(kernel.kind):
        wider[1] = wider[0]
    return replace(kernel, size=max(kernel.size, MAX_KERNEL_SIZE - 6), sigma_x=wider[0], sigma_y=wider[1])


def _strongest_kernel(kernel: KernelPlan | None, stage: StageSettings) -> KernelPlan:
    high = stage.kernel_sigma[1]
    if kernel is not None and kernel.kind == "sinc":
        return replace(kernel, cutoff=_sinc_floor(kernel.size))
    kind = kernel.kind if kernel is not None else "iso"
    return KernelPlan(kind, MAX_KERNEL_SIZE, high, high, kernel.theta if kernel else 0.0,
                      kernel.beta if kernel else 1.0)


def _noisier(noise: NoisePlan, generator: torch.Generator) -> NoisePlan:
    extra = _draw(1.0, 21.0, generator) if noise.gaussian else _draw(0.05, 2.05, generator)
    return replace(noise, level=noise.level + extra)


def more_blur(plan: ChainPlan, generator: torch.Generator, first: StageSettings = FIRST_STAGE,
              second: StageSettings = SECOND_STAGE) -> ChainPlan:
    """Wider kernels in both stages and a stronger first-stage downscale; noise and JPEG unchanged."""
    shrink = _draw(first.resize_range[0], plan.first.resize, generator)
    return replace(plan, first=replace(plan.first, kernel=_widen(plan.first.kernel, first, generator),
                                       resize=min(plan.first.resize, shrink)),
                   second=replace(plan.second, kernel=_widen(plan.second.kernel, second, generator)))


def more_noise(plan: ChainPlan, generator: torch.Generator) -> ChainPlan:
    """Stronger noise in one stage (the first or the second, at even odds), in the other too one
    time in five, and both JPEG qualities 5..60 lower (not below 30; a chain without JPEG stays
    without); blur and resizes unchanged."""
    in_first = _chance(0.5, generator)
    both = _chance(0.2, generator)
    stages = {}
    for name, chosen in (("first", in_first), ("second", not in_first)):
        stage = getattr(plan, name)
        noise = _noisier(stage.noise, generator) if chosen or both else stage.noise
        quality = None if stage.jpeg_quality is None else max(30, stage.jpeg_quality - int(_draw(5, 60, generator)))
        stages[name] = replace(stage, noise=noise, jpeg_quality=quality)
    return replace(plan, **stages)


def strongest(plan: ChainPlan, first: StageSettings = FIRST_STAGE,
              second: StageSettings = SECOND_STAGE) -> ChainPlan:
    """The anchor of score 1: the widest kernels of the plan's kinds, the strongest downscale,
    the strongest noise of the plan's kinds, JPEG quality 30."""
    def stage_at_max(stage: StagePlan, settings: StageSettings, resize: float) -> StagePlan:
        level = settings.gaussian_sigma[1] if stage.noise.gaussian else settings.poisson_scale[1]
        return replace(stage, kernel=_strongest_kernel(stage.kernel, settings), resize=resize,
                       noise=replace(stage.noise, level=level), jpeg_quality=settings.jpeg_range[0])
    return replace(plan, first=stage_at_max(plan.first, first, first.resize_range[0]),
                   second=stage_at_max(plan.second, second, second.resize_range[0]))


def _kernel_level(kernel: KernelPlan | None, stage: StageSettings) -> float:
    """0 (no blur) .. 1 (the stage's widest kernel of its kind): the mean sigma within the stage's
    range, or for a sinc how far its cutoff lies from pi toward the size's floor."""
    if kernel is None:
        return 0.0
    if kernel.kind == "sinc":
        return (math.pi - kernel.cutoff) / (math.pi - _sinc_floor(kernel.size))
    low, high = stage.kernel_sigma
    return min(max(((kernel.sigma_x + kernel.sigma_y) / 2 - low) / (high - low), 0.0), 1.0)


def _noise_levels(stage: StagePlan, settings: StageSettings) -> tuple[float, float]:
    """The stage's noise and JPEG levels, 0 (weakest of the stage's range) .. 1 (strongest)."""
    low, high = settings.gaussian_sigma if stage.noise.gaussian else settings.poisson_scale
    worst, best = settings.jpeg_range
    quality = best if stage.jpeg_quality is None else stage.jpeg_quality
    return (min(max((stage.noise.level - low) / (high - low), 0.0), 1.0),
            min(max((best - quality) / (best - worst), 0.0), 1.0))


def chain_strengths(plan: ChainPlan, first: StageSettings = FIRST_STAGE,
                    second: StageSettings = SECOND_STAGE) -> tuple[float, float]:
    """(blur, noise) of a chain in 0..1: blur is the mean kernel level of the two stages, noise
    the mean of both stages' noise and JPEG levels. `strongest(plan)` has (1, 1); the clean image
    (0, 0); `more_blur` raises the first, `more_noise` the second."""
    blur = (_kernel_level(plan.first.kernel, first) + _kernel_level(plan.second.kernel, second)) / 2
    noise = (sum(_noise_levels(plan.first, first)) + sum(_noise_levels(plan.second, second))) / 4
    return blur, noise


def without_jpeg(plan: ChainPlan) -> ChainPlan:
    """The same chain with neither JPEG step: sensor noise as a raw or PNG photo keeps it."""
    return replace(plan, first=replace(plan.first, jpeg_quality=None),
                   second=replace(plan.second, jpeg_quality=None))


NO_JPEG_SHARE = 0.25
"""Of MM-RealSR's coupled draws, the share whose chain has no JPEG. The second-order chain always
ends in JPEG, so a DE-Net trained on it alone read noise through JPEG's traces and scored plain
white noise *lower* as it rose (bench/dials.py: 0.68 clean, 0.04 at sigma 30)."""

COUPLED_NAMES = ("origin", "more_blur", "more_noise", "strongest", "clean")
"""The order of `coupled_degrade`'s five LR versions; the last two are the anchors (scores 1, 0)."""


def coupled_degrade(hr: torch.Tensor, scale: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B x 3 x H x W HR -> (5 x B x 3 x H/scale x W/scale LR, 5 x B x 2 (blur, noise) strengths
    of `chain_strengths`), in the order of `COUPLED_NAMES`; the clean anchor is the HR downscaled
    bilinearly, 8-bit, strengths (0, 0). `NO_JPEG_SHARE` of the draws are chains without JPEG
    (all their versions but the strongest anchor)."""
    versions: list[list[torch.Tensor]] = [[] for _ in COUPLED_NAMES]
    strengths = torch.zeros(len(COUPLED_NAMES), hr.shape[0], 2)
    for index, image in enumerate(hr):
        x = image[None]
        plan = sample_chain(generator)
        if _chance(NO_JPEG_SHARE, generator):
            plan = without_jpeg(plan)
        plans = (plan, more_blur(plan, generator), more_noise(plan, generator), strongest(plan))
        for version, (out, variant) in enumerate(zip(versions, plans)):
            out.append(apply_chain(x, variant, scale, generator))
            strengths[version, index] = torch.tensor(chain_strengths(variant))
        versions[-1].append(quantize(_resize(x, (x.shape[-2] // scale, x.shape[-1] // scale), "bilinear")))
    return torch.stack([torch.cat(v) for v in versions]), strengths
