"""Validation during training: a few kodak24 crops with fixed degradations, PSNR-Y vs bicubic.
A setting is a classic one (fixed blur and noise for every crop) or `realworld`: each crop through
the second-order chain with its own draw from a fixed seed (not a training seed)."""

import math

import numpy as np
import torch

from core import degradations as deg
from core.metrics import psnr_y
from core.train.data import kodak_validation_crops

SCALE = 4
REAL_WORLD = "realworld"


def classic_settings() -> dict[str, deg.ClassicBatch]:
    """Fixed classic degradations (one per setting, applied to every crop)."""
    return {
        "iso2.0": deg.ClassicBatch(deg.isotropic_gaussian_kernels(torch.tensor([2.0])), torch.tensor([0.0])),
        "aniso+n10": deg.ClassicBatch(
            deg.anisotropic_gaussian_kernels(torch.tensor([2.5]), torch.tensor([1.0]),
                                             torch.tensor([math.pi / 4])), torch.tensor([10 / 255])),
        "iso2.6+n15": deg.ClassicBatch(deg.isotropic_gaussian_kernels(torch.tensor([2.6]), size=7),
                                       torch.tensor([15 / 255])),
    }


def to_numpy(images: torch.Tensor) -> list[np.ndarray]:
    return [im.clamp(0, 1).permute(1, 2, 0).numpy() for im in images]


class ValidationSet:
    """HR crops and their fixed LR versions for each setting; bicubic PSNR computed once."""

    def __init__(self, settings: list[str], seed: int = 2023, size: int = 256,
                 hr: torch.Tensor | None = None):
        """`hr`: N x 3 x H x W images to validate on (default: kodak24 centre crops of `size`)."""
        self.hr = kodak_validation_crops(size=size) if hr is None else hr
        classic = classic_settings()
        self.lr = {}
        for name in settings:
            generator = torch.Generator().manual_seed(seed)
            if name == REAL_WORLD:
                self.lr[name] = deg.realesrgan_degrade(self.hr, SCALE, generator)
                continue
            n = self.hr.shape[0]
            batch = deg.ClassicBatch(classic[name].kernels.expand(n, -1, -1), classic[name].noise_sigma.expand(n))
            self.lr[name] = deg.classic_degrade(self.hr, batch, SCALE, generator)
        hr_np = to_numpy(self.hr)
        self.bicubic = {}
        for name, lr in self.lr.items():
            up = torch.nn.functional.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
            self.bicubic[name] = float(np.mean([psnr_y(a, b) for a, b in zip(to_numpy(up), hr_np)]))
        self.hr_np = hr_np

    @torch.no_grad()
    def evaluate(self, upscale) -> dict[str, float]:
        """upscale(lr_batch, hr_batch) -> sr_batch; returns mean PSNR-Y per setting."""
        return {name: float(np.mean([psnr_y(a, b) for a, b in
                                     zip(to_numpy(upscale(lr, self.hr)), self.hr_np)]))
                for name, lr in self.lr.items()}


def log_validation(run, validation: ValidationSet, model: torch.nn.Module) -> None:
    """Scores a blind single-net model (whatever it estimates, it estimates per image) and logs
    PSNR-Y and the gain over bicubic per setting."""
    model.eval()
    scores = validation.evaluate(lambda lr, hr: model(lr))
    run.log("val", **{f"psnr_{k}": v for k, v in scores.items()},
            **{f"gain_{k}": v - validation.bicubic[k] for k, v in scores.items()})
