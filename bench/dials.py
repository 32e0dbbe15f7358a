"""Do MM-RealSR's dials mean what they say? Three checks through the engine, printed as tables.

    .venv/bin/python bench/dials.py [--weights FILE] [--limit N]

1. Estimates: kodak24 images (500 x 500 HR) downscaled x4 clean, then with more and more Gaussian
   blur, and separately more and more noise; DE-Net's mean blur (noise) score must rise with the
   blur (noise) level, and a clean image must score low on both.
2. Blur dial: one input upscaled with the blur dial at 0, 0.5 and 1 (noise left to DE-Net); the
   output's high-frequency energy (mean |Laplacian| of luma) must rise: a sharper result.
3. Noise dial: the same with the noise dial on a noisy input; the energy must fall: a smoother result.
`--weights` scores a training run's file (e.g. `python -m core.train.snapshot RUN`) instead of
the installed `mmrealsr` weights.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KODAK = ROOT.parent / "shared" / "data" / "val" / "kodak24"
SCALE = 4
BLUR_LEVELS = (0.0, 1.0, 2.0, 3.0)     # Gaussian sigma in HR pixels (0: none)
NOISE_LEVELS = (0.0, 5.0, 15.0, 30.0)  # noise sigma, 8-bit units
DIAL_VALUES = (0.0, 0.5, 1.0)


def degrade(hr: np.ndarray, blur: float, noise: float, seed: int) -> np.ndarray:
    """H x W x 3 HR in 0..1 -> the classic LR (blur, bicubic x4 down, noise, 8-bit)."""
    import torch

    from core import degradations as deg

    kernels = deg.isotropic_gaussian_kernels(torch.tensor([max(blur, 1e-3)]))
    params = deg.ClassicBatch(kernels, torch.tensor([noise / 255]))
    lr = deg.classic_degrade(torch.from_numpy(hr.transpose(2, 0, 1)[None].copy()), params, SCALE,
                             torch.Generator().manual_seed(seed))
    return np.ascontiguousarray(lr[0].permute(1, 2, 0).numpy())


def high_frequency(rgb: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of luma: falls as an image gets smoother."""
    luma = rgb[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    return float(np.abs(lap).mean())


def kodak(limit: int) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255
            for p in sorted(KODAK.glob("*.png"))[:limit]]


def measure(images: list[np.ndarray]) -> dict:
    from core.engine import Engine, UpscaleRequest
    from core.image_io import Image

    engine = Engine()
    upscaler = engine.load("mmrealsr")
    estimates = {"blur": {}, "noise": {}}
    for axis, levels in (("blur", BLUR_LEVELS), ("noise", NOISE_LEVELS)):
        for level in levels:
            scores = [upscaler.estimate_degradation(degrade(hr, level if axis == "blur" else 0.0,
                                                            level if axis == "noise" else 0.0, i))
                      for i, hr in enumerate(images)]
            estimates[axis][level] = {k: float(np.mean([s[k] for s in scores])) for k in ("blur", "noise")}
    dials = {}
    for axis, (blur, noise) in (("blur", (2.0, 0.0)), ("noise", (1.0, 15.0))):
        dials[axis] = {}
        for value in DIAL_VALUES:
            energies = []
            for i, hr in enumerate(images):
                lr = degrade(hr, blur, noise, i)
                request = UpscaleRequest(model="mmrealsr", **{axis: value})
                energies.append(high_frequency(engine.upscale(Image(lr, 8, None, None), request).pixels))
            dials[axis][value] = float(np.mean(energies))
    return {"estimates": estimates, "dials": dials}


def rising(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def tables(result: dict, images: int) -> str:
    est, dials = result["estimates"], result["dials"]
    lines = [f"DE-Net scores, mean of {images} kodak24 images (x4 down):", "",
             "| input | blur score | noise score |", "|---|---|---|"]
    for level, s in est["blur"].items():
        lines.append(f"| blur sigma {level:g} | {s['blur']:.3f} | {s['noise']:.3f} |")
    for level, s in est["noise"].items():
        if level:
            lines.append(f"| noise {level:g} | {s['blur']:.3f} | {s['noise']:.3f} |")
    lines += ["", "Output high-frequency energy (mean |Laplacian| of luma) by dial value:", "",
              "| dial (input) | " + " | ".join(f"{v:g}" for v in DIAL_VALUES) + " |",
              "|---|" + "---|" * len(DIAL_VALUES)]
    lines.append("| blur (sigma 2) | " + " | ".join(f"{dials['blur'][v]:.4f}" for v in DIAL_VALUES) + " |")
    lines.append("| noise (sigma 1 + noise 15) | " + " | ".join(f"{dials['noise'][v]:.4f}" for v in DIAL_VALUES) + " |")
    blur_scores = [s["blur"] for s in est["blur"].values()]
    noise_scores = [s["noise"] for s in est["noise"].values()]
    clean = est["blur"][0.0]
    checks = [
        ("blur score rises with blur", rising(blur_scores)),
        ("noise score rises with noise", rising(noise_scores)),
        ("a clean image scores low (both < 0.5)", clean["blur"] < 0.5 and clean["noise"] < 0.5),
        ("blur dial up: sharper output", rising([dials["blur"][v] for v in DIAL_VALUES])),
        ("noise dial up: smoother output", rising([-dials["noise"][v] for v in DIAL_VALUES])),
    ]
    lines += ["", "| check | holds |", "|---|---|"] + [f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in checks]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="an mmrealsr weights file to score instead of the installed one")
    parser.add_argument("--config", default="lite")
    parser.add_argument("--limit", type=int, default=8, help="kodak24 images (default 8)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        if args.weights:
            shutil.copyfile(args.weights, Path(folder) / f"mmrealsr_{args.config}.safetensors")
            os.environ["BLIND_UPSCALE_MODELS"] = folder
        images = kodak(args.limit)
        print(tables(measure(images), len(images)))


if __name__ == "__main__":
    main()
