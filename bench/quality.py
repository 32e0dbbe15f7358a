"""Quality benchmark of the bundled models on kodak24 with synthetic classic and real-world degradations.

    .venv/bin/python bench/quality.py [--models kdsr,cmdsr,...] [--limit N] [--peer-limit N] [--ensemble]

For every model (the bundled ones, bicubic, and the Real-ESRGAN x4plus peer when its weights are
present) and every setting below, each kodak24 image (500 x 500, the HR) is degraded with a fixed
seed, upscaled x4 through the engine (`core.engine.Engine`, default tiling) and scored with PSNR-Y
and SSIM-Y (4-pixel border crop). Each model runs in its own subprocess so its peak resident
memory (getrusage maxrss) and its time per input megapixel are its own. Prints Markdown tables.
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KODAK = ROOT.parent / "shared" / "data" / "val" / "kodak24"
SCALE = 4
PEERS = ("realesrgan",)
# setting -> description; the parameters are in `degrade`
SETTINGS = {
    "iso1.2": "isotropic Gaussian blur sigma 1.2 (21x21), bicubic x4 down",
    "iso2.0": "isotropic Gaussian blur sigma 2.0 (21x21), bicubic x4 down",
    "iso3.0": "isotropic Gaussian blur sigma 3.0 (21x21), bicubic x4 down",
    "aniso+n10": "anisotropic Gaussian blur (sigmas 0.6..4, any angle, seeded per image), x4 down, noise 10",
    "iso2.6+n15": "Gaussian blur sigma 2.6 (7x7, CMDSR's test setting), x4 down, noise 15",
    "realworld": "the second-order real-world chain (blur, resize, Gaussian/Poisson noise, JPEG, twice; "
                 "final sinc), one seeded draw per image (seeds no training run uses)",
}


def degrade(hr, setting: str, index: int):
    """1 x 3 x H x W HR tensor -> LR tensor, deterministic per (setting, image index)."""
    import torch

    from core import degradations as deg

    generator = torch.Generator().manual_seed(1000 * list(SETTINGS).index(setting) + index)
    if setting == "realworld":
        return deg.realesrgan_degrade(hr, SCALE, generator)
    if setting.startswith("iso") and "+" not in setting:
        params = deg.ClassicBatch(deg.isotropic_gaussian_kernels(torch.tensor([float(setting[3:])])),
                                  torch.tensor([0.0]))
    elif setting == "aniso+n10":
        sx, sy = (0.6 + 3.4 * torch.rand(1, generator=generator) for _ in range(2))
        theta = math.pi * torch.rand(1, generator=generator)
        params = deg.ClassicBatch(deg.anisotropic_gaussian_kernels(sx, sy, theta), torch.tensor([10 / 255]))
    elif setting == "iso2.6+n15":
        params = deg.ClassicBatch(deg.isotropic_gaussian_kernels(torch.tensor([2.6]), size=7),
                                  torch.tensor([15 / 255]))
    else:
        raise ValueError(f"unknown setting {setting}")
    return deg.classic_degrade(hr, params, SCALE, generator)


def kodak_images(limit: int | None):
    import numpy as np
    from PIL import Image

    files = sorted(KODAK.glob("*.png"))[:limit]
    for path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        h, w = (rgb.shape[0] // SCALE) * SCALE, (rgb.shape[1] // SCALE) * SCALE
        yield path.stem, rgb[:h, :w]


def worker(model: str, settings: list[str], limit: int | None, ensemble: bool = False) -> dict:
    """Runs in the subprocess: scores one model on every setting."""
    import numpy as np
    import torch

    from core.image_io import Image
    from core.engine import Engine, UpscaleRequest
    from core.metrics import psnr_y, ssim_y

    torch.set_num_threads(1)
    engine = Engine()
    engine.load(model)  # load outside the timed region
    scores = {s: {"psnr": [], "ssim": []} for s in settings}
    seconds, megapixels = 0.0, 0.0
    for index, (_name, hr) in enumerate(kodak_images(limit)):
        hr_t = torch.from_numpy(hr.transpose(2, 0, 1)[None].copy())
        for setting in settings:
            lr = degrade(hr_t, setting, index)[0].permute(1, 2, 0).numpy()
            started = time.perf_counter()
            sr = engine.upscale(Image(np.ascontiguousarray(lr), 8, None, None), UpscaleRequest(model=model, ensemble=ensemble))
            seconds += time.perf_counter() - started
            megapixels += lr.shape[0] * lr.shape[1] / 1e6
            scores[setting]["psnr"].append(psnr_y(sr.pixels, hr))
            scores[setting]["ssim"].append(ssim_y(sr.pixels, hr))
    config = engine.load(model).config
    return {"model": model, "config": config + (", self-ensemble" if ensemble else ""),
            "images": len(scores[settings[0]]["psnr"]),
            "scores": {s: {k: float(np.mean(v)) for k, v in d.items()} for s, d in scores.items()},
            "seconds_per_input_mp": seconds / megapixels,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def available_models(requested: list[str] | None) -> list[str]:
    from core import weights
    from core.registry import get_model

    if requested:
        return requested
    bundled = sorted({entry["model"] for entry in weights.read_manifest().values()})
    models = ["bicubic"] + bundled
    models += [m for m in PEERS if get_model(m).weights != "missing"]
    return models


def run_model(model: str, settings: list[str], limit: int | None, ensemble: bool = False) -> dict:
    command = [sys.executable, __file__, "--worker", model, "--settings", ",".join(settings)]
    if limit:
        command += ["--limit", str(limit)]
    if ensemble:
        command.append("--ensemble")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gain_table(results: list[dict], settings: list[str]) -> str:
    """PSNR-Y gain of each model over bicubic on the same images, per setting and on average."""
    baselines = {r["images"]: r for r in results if r["model"] == "bicubic"}
    lines = ["| gain over bicubic (dB) | " + " | ".join(settings) + " | mean |",
             "|---|" + "---|" * (len(settings) + 1)]
    for r in results:
        base = baselines.get(r["images"])
        if r["model"] == "bicubic" or base is None:
            continue
        gains = [r["scores"][s]["psnr"] - base["scores"][s]["psnr"] for s in settings]
        cells = [f"{g:+.2f}" for g in gains] + [f"{sum(gains) / len(gains):+.2f}"]
        lines.append(f"| {r['model']} ({r['config']}), {r['images']} images | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(results: list[dict], settings: list[str]) -> str:
    lines = ["| setting | " + " | ".join(f"{r['model']} ({r['config']})" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for s in settings:
        cells = [f"{r['scores'][s]['psnr']:.2f} / {r['scores'][s]['ssim']:.4f}" for r in results]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", gain_table(results, settings)]
    lines += ["", "| model | images | s per input MP | peak RSS (MB) |", "|---|---|---|---|"]
    lines += [f"| {r['model']} ({r['config']}) | {r['images']} | {r['seconds_per_input_mp']:.1f} | "
              f"{r['peak_rss_mb']:.0f} |" for r in results]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated model ids (default: bicubic, bundled, peers)")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--limit", type=int, help="only the first N kodak24 images")
    parser.add_argument("--peer-limit", type=int, default=4, help="images for the slow peers")
    parser.add_argument("--ensemble", action="store_true",
                        help="also score the bundled models with self-ensemble (8 orientations per tile)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--include", type=Path, action="append", default=[],
                        help="results written earlier with --json to show in the same tables")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    if args.worker:
        print(json.dumps(worker(args.worker, settings, args.limit, args.ensemble)))
        return
    results = [r for path in args.include for r in json.loads(path.read_text())]
    for model in available_models(args.models.split(",") if args.models else None):
        limit = args.limit
        if model in PEERS:
            limit = min(limit or args.peer_limit, args.peer_limit)
        print(f"running {model} ...", file=sys.stderr, flush=True)
        results.append(run_model(model, settings, limit))
        if args.ensemble and model not in PEERS and model != "bicubic":
            print(f"running {model} with self-ensemble ...", file=sys.stderr, flush=True)
            results.append(run_model(model, settings, args.limit, ensemble=True))
    print("PSNR-Y (dB) / SSIM-Y on kodak24 (x4, 4-px border crop):\n")
    print(tables(results, settings))
    print("\nSettings:\n" + "\n".join(f"- {k}: {v}" for k, v in SETTINGS.items() if k in settings))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
