"""A contact sheet to judge real photos by eye: the same crop of six real low-resolution photos
(`../shared/data/real_lr/realsrset20_bsrgan`, no ground truth) upscaled x4 by bicubic, every
bundled model and the Real-ESRGAN peer, side by side.

    .venv/bin/python bench/contact_sheet.py [--models bicubic,kdsr,...] [--out docs/contact_sheet.png]

Rows are photos, columns models; each cell is the x4 result of a 56 x 56 LR crop (224 x 224 px),
nearest-free: what the engine returns, unscaled. PSNR cannot be measured here (no HR exists),
so this sheet is what shows whether output looks cleaner than bicubic on real degradations.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL_LR = ROOT.parent / "shared" / "data" / "real_lr" / "realsrset20_bsrgan"
# photo -> LR crop centre as fractions of width and height (faces, text, texture, edges)
CROPS = {
    "building.png": (0.5, 0.45),
    "dog.png": (0.5, 0.4),
    "dped_crop00061.png": (0.5, 0.5),
    "foreman.png": (0.45, 0.35),
    "oldphoto2.png": (0.5, 0.35),
    "tiger.png": (0.45, 0.4),
}
CROP = 56
SCALE = 4
LABEL_HEIGHT = 18


def crop_box(width: int, height: int, centre: tuple[float, float]) -> tuple[int, int, int, int]:
    side_w, side_h = min(CROP, width), min(CROP, height)
    x = min(max(int(centre[0] * width) - side_w // 2, 0), width - side_w)
    y = min(max(int(centre[1] * height) - side_h // 2, 0), height - side_h)
    return x, y, side_w, side_h


def upscale_crops(models: list[str]) -> dict[str, list[np.ndarray]]:
    """model -> one uint8 H x W x 3 cell per photo; the model sees the whole photo (its global
    estimate), only the crop is tiled."""
    from core.image_io import load_image
    from core.engine import Engine, UpscaleRequest

    engine = Engine()
    cells = {}
    for model in models:
        print(f"upscaling with {model} ...", file=sys.stderr, flush=True)
        cells[model] = []
        for name, centre in CROPS.items():
            image = load_image(REAL_LR / name)
            box = crop_box(image.width, image.height, centre)
            result = engine.upscale(image, UpscaleRequest(model=model, region=box))
            rgb = result.pixels[..., :3] if result.pixels.shape[2] >= 3 else np.repeat(result.pixels[..., :1], 3, 2)
            cells[model].append((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return cells


def sheet(cells: dict[str, list[np.ndarray]]) -> PILImage.Image:
    side = CROP * SCALE
    models = list(cells)
    canvas = PILImage.new("RGB", (side * len(models), LABEL_HEIGHT + side * len(CROPS)), "white")
    draw = ImageDraw.Draw(canvas)
    for col, model in enumerate(models):
        draw.text((col * side + 4, 3), model, fill="black")
        for row, cell in enumerate(cells[model]):
            canvas.paste(PILImage.fromarray(cell), (col * side, LABEL_HEIGHT + row * side))
    return canvas


def default_models() -> list[str]:
    from core import weights
    from core.registry import get_model

    bundled = sorted({entry["model"] for entry in weights.read_manifest().values()})
    peers = [m for m in ("realesrgan",) if get_model(m).weights != "missing"]
    return ["bicubic", *bundled, *peers]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated model ids (default: bicubic, bundled, peers)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "contact_sheet.png")
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else default_models()
    sheet(upscale_crops(models)).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
