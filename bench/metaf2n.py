"""Issue 19's benchmark: does MetaF2N's face adaptation help, and by how much?

    python bench/metaf2n.py --weights train_runs/metaf2n_lite/metaf2n_lite.safetensors [--config lite] \
        [--restorer train_runs/face_restorer_lite/face_restorer_lite.safetensors] [--limit N] [--threads 1]

Photos with faces: the whole selfies of ../shared/data/faces/gpen_examples (shrunk so the long
side is 480 px) and scenes composed here: a kodak24 photo (../shared/data/val) with one FFHQ face
of gpen_examples/ffhq-10 pasted in at 160 px. Each HR photo is degraded ×4 twice, with the
real-world chain (seeded) and with a milder blur σ 1.2 + noise 5/255 + JPEG 75. Methods, through
the engine as a user runs them: bicubic, metaf2n with `--faces none`, `--faces auto` and the
face box given by hand (a composed scene's paste box; for a selfie, the detector's box on the HR
photo, as a user would draw it). PSNR-Y on the whole image and on the face boxes (HR), and the
time of the adaptation step. The summary prints the issue's two targets: adaptation over
`--faces none` (≥ 0.2 dB whole image) and metaf2n over bicubic (≥ 1.0 dB).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import degradations as deg  # noqa: E402
from core.engine import Engine, UpscaleRequest  # noqa: E402
from core.faces import detect  # noqa: E402
from core.image_io import Image  # noqa: E402
from core.metrics import psnr_y  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SELFIES = SHARED / "faces" / "gpen_examples" / "selfie"
FFHQ = SHARED / "faces" / "gpen_examples" / "ffhq-10"
KODAK = SHARED / "val" / "kodak24"
SCALE = 4
FACE_SIDE = 160
METHODS = ("bicubic", "none", "auto", "hand")


def load(path: Path, longest: int | None = None) -> np.ndarray:
    with PILImage.open(path) as file:
        image = file.convert("RGB")
    if longest and max(image.size) > longest:
        f = longest / max(image.size)
        image = image.resize((round(image.width * f), round(image.height * f)), PILImage.Resampling.BOX)
    rgb = np.asarray(image, dtype=np.float32) / 255.0
    return rgb[: rgb.shape[0] // SCALE * SCALE, : rgb.shape[1] // SCALE * SCALE]


def photos(limit: int):
    """(name, HR photo, face boxes in HR pixels) for selfies and composed scenes, alternating."""
    selfies = sorted(SELFIES.glob("*"))
    faces = sorted(FFHQ.glob("*.png"))
    scenes = sorted(KODAK.glob("*.png"))
    rng = np.random.default_rng(19)
    made = []
    for i in range(max(len(selfies), len(faces))):
        if i < len(selfies):
            hr = load(selfies[i], 480)
            made.append((selfies[i].name, hr, [tuple(f.box) for f in detect(hr).faces[:4]]))
        if i < len(faces) and scenes:
            scene = load(scenes[(3 * i) % len(scenes)])
            face = load(faces[i], FACE_SIDE)
            y = int(rng.integers(0, scene.shape[0] - FACE_SIDE))
            x = int(rng.integers(0, scene.shape[1] - FACE_SIDE))
            scene = scene.copy()
            scene[y:y + FACE_SIDE, x:x + FACE_SIDE] = face
            made.append((f"kodak+{faces[i].stem}", scene, [(x, y, FACE_SIDE, FACE_SIDE)]))
    return made[:limit]


def degrade(hr: np.ndarray, kind: str, seed: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
    generator = torch.Generator().manual_seed(seed)
    if kind == "realworld":
        lr = deg.realesrgan_degrade(x, SCALE, generator)
    else:
        blur = deg.ClassicBatch(deg.isotropic_gaussian_kernels(torch.tensor([1.2])), torch.tensor([5 / 255]))
        lr = deg.jpeg(deg.classic_degrade(x, blur, SCALE, generator).clamp(0, 1), np.array([75]))
    return lr[0].clamp(0, 1).numpy().transpose(1, 2, 0)


def face_psnr(sr: np.ndarray, hr: np.ndarray, boxes) -> float:
    values = []
    for x, y, w, h in boxes:
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(hr.shape[1], int(x + w)), min(hr.shape[0], int(y + h))
        if x1 - x0 > 8 and y1 - y0 > 8:
            values.append(psnr_y(sr[y0:y1, x0:x1], hr[y0:y1, x0:x1], border=0))
    return float(np.mean(values)) if values else float("nan")


def lr_box(box, shape) -> list[int]:
    """An HR box as the user would draw it on the LR photo: in LR pixels, inside the image."""
    x0, y0 = max(0, int(box[0]) // SCALE), max(0, int(box[1]) // SCALE)
    x1 = min(shape[1], int(box[0] + box[2]) // SCALE)
    y1 = min(shape[0], int(box[1] + box[3]) // SCALE)
    return [x0, y0, max(1, x1 - x0), max(1, y1 - y0)]


def upscale(engine: Engine, lr: np.ndarray, method: str, boxes, config: str) -> tuple[np.ndarray, float]:
    """SR image and the seconds of the adaptation step (0 when none ran)."""
    if method == "bicubic":
        request = UpscaleRequest(model="bicubic")
    else:
        faces = [lr_box(box, lr.shape) for box in boxes] if method == "hand" else method
        request = UpscaleRequest(model="metaf2n", config=config, faces=faces or "none")
    marks: dict[str, float] = {}

    def progress(fraction, stage):
        if "adapting" in stage:
            marks.setdefault("start", time.perf_counter())
        elif stage.startswith("adapted"):
            marks["end"] = time.perf_counter()

    sr = engine.upscale(Image(lr), request, progress).pixels
    return sr, marks.get("end", 0.0) - marks.get("start", 0.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="meta-trained metaf2n_<config>.safetensors")
    parser.add_argument("--config", default="lite", choices=("lite", "official"))
    parser.add_argument("--restorer", type=Path, help="face_restorer_lite.safetensors (targets of the inner step)")
    parser.add_argument("--limit", type=int, default=15, help="photos to score")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as models:
        shutil.copyfile(args.weights, Path(models) / f"metaf2n_{args.config}.safetensors")
        if args.restorer:
            shutil.copyfile(args.restorer, Path(models) / "face_restorer_lite.safetensors")
        os.environ["BLIND_UPSCALE_MODELS"] = models  # a fresh install: YuNet, these weights only
        run(photos(args.limit), args.config)


def run(scored, config: str):
    engine = Engine()
    rows = []
    print(f"{'photo':28} {'degradation':10} " + " ".join(f"{m:>13}" for m in METHODS) + "  adapt s  (whole/face PSNR-Y dB)")
    for index, (name, hr, boxes) in enumerate(scored):
        for kind in ("realworld", "mild"):
            lr = degrade(hr, kind, seed=1000 + index)
            row, seconds = {}, 0.0
            for method in METHODS:
                sr, adapt_s = upscale(engine, lr, method, boxes, config)
                row[method] = (psnr_y(sr, hr), face_psnr(sr, hr, boxes))
                seconds = max(seconds, adapt_s)
            rows.append(row)
            print(f"{name[:28]:28} {kind:10} " + " ".join(f"{w:6.2f}/{f:6.2f}" for w, f in row.values())
                  + f"  {seconds:6.1f}", flush=True)
    if not rows:
        print("no photo found under ../shared/data")
        return
    mean = {m: (np.nanmean([r[m][0] for r in rows]), np.nanmean([r[m][1] for r in rows])) for m in METHODS}
    print("mean " + " ".join(f"{m} {w:.2f}/{f:.2f}" for m, (w, f) in mean.items()))
    print(f"adaptation over --faces none, whole image: auto {mean['auto'][0] - mean['none'][0]:+.2f} dB, "
          f"by hand {mean['hand'][0] - mean['none'][0]:+.2f} dB (target +0.20); "
          f"face region: auto {mean['auto'][1] - mean['none'][1]:+.2f} dB, by hand {mean['hand'][1] - mean['none'][1]:+.2f} dB")
    print(f"metaf2n (auto) over bicubic, whole image: {mean['auto'][0] - mean['bicubic'][0]:+.2f} dB (target +1.00)")


if __name__ == "__main__":
    main()
