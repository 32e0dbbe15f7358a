"""MetaF2N's face path on real photos (uses ../shared, so it is a benchmark, not a test).

    python bench/metaf2n_faces.py detect            both detectors on the whole photos with faces
    python bench/metaf2n_faces.py adapt [N]         the inner step on N degraded photos, official size

`adapt` measures what one inner step (face pairs from the LR photo, lr 0.01) does to the
Real-ESRGAN x4plus backbone (converted from the ncnn wheel) with a uniform loss weight: the
MetaF2N backbone before meta-training, with no MaskNet. It reports PSNR-Y against the HR photo on
the whole image and on the face boxes, before and after the step, and the step's time. It says
nothing about a meta-trained MetaF2N; it shows the cost and the direction of the raw step.
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import faces  # noqa: E402
from core.archs.metaf2n import MetaF2N  # noqa: E402
from core.degradations import classic_degrade, isotropic_gaussian_kernels  # noqa: E402
from core.degradations import ClassicBatch  # noqa: E402
from core.face_adaptation import adapt, build_pairs, face_targets, stored_parameters  # noqa: E402
from core.metrics import psnr_y  # noqa: E402

SHARED = ROOT.parent / "shared"
PHOTOS = sorted(p for d in ("faces/codeformer_inputs/whole_imgs", "faces/diffbir_bfr/whole_img",
                            "faces/gfpgan_inputs/whole_imgs", "faces/gpen_examples/imgs",
                            "faces/gpen_examples/selfie")
                for p in (SHARED / "data" / d).glob("*") if p.is_file())
RETINAFACE_DIR = SHARED / "weights"


def load_rgb(path, longest=None):
    image = Image.open(path).convert("RGB")
    if longest and max(image.size) > longest:
        f = longest / max(image.size)
        image = image.resize((round(image.width * f), round(image.height * f)), Image.BOX)
    return np.asarray(image, dtype=np.float32) / 255.0


def detect_all():
    for path in PHOTOS:
        rgb = load_rgb(path)
        row = [f"{path.parent.name}/{path.name}"[:44].ljust(44), f"{rgb.shape[1]}x{rgb.shape[0]}".rjust(9)]
        for models_dir in (Path("/nonexistent"), RETINAFACE_DIR):
            start = time.perf_counter()
            found = faces.detect(rgb, models_dir=models_dir)
            ms = 1000 * (time.perf_counter() - start)
            sizes = [faces.native_face_size(f.landmarks) for f in found.faces]
            row.append(f"{found.detector}: {len(found.faces):2d} faces {ms:5.0f} ms, "
                       f"min score {min([f.score for f in found.faces], default=0):.2f}, "
                       f"aligned sizes {sorted(sizes)[:3]}..{max(sizes, default=0)}")
        print(" | ".join(row), flush=True)


def uniform_weight_model(state):
    """MetaF2N official with the given backbone and a MaskNet that outputs 1 everywhere."""
    model = MetaF2N()
    model.backbone.load_state_dict(state)
    with torch.no_grad():
        for p in model.mask_net.parameters():
            p.zero_()
        model.mask_net.conv8.bias.fill_(1.0)
    return model.eval()


def psnr_on_boxes(sr, hr, boxes, scale):
    values = []
    for x, y, w, h in boxes:
        x0, y0 = max(0, int(round(x * scale))), max(0, int(round(y * scale)))
        x1, y1 = min(hr.shape[1], int(round((x + w) * scale))), min(hr.shape[0], int(round((y + h) * scale)))
        if x1 > x0 and y1 > y0:
            values.append(psnr_y(sr[y0:y1, x0:x1], hr[y0:y1, x0:x1], border=0))
    return float(np.mean(values)) if values else float("nan")


def adapt_some(count):
    from core.ncnn_convert import ncnn_to_rrdbnet_state, wheel_model_files

    torch.set_num_threads(1)
    model = uniform_weight_model(ncnn_to_rrdbnet_state(*wheel_model_files()))
    gen = torch.Generator().manual_seed(0)
    selfies = [p for p in PHOTOS if p.parent.name == "selfie"] + [p for p in PHOTOS if p.parent.name != "selfie"]
    for path in selfies[:count]:
        hr = load_rgb(path, longest=640)
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        hr_t = torch.from_numpy(hr.transpose(2, 0, 1).copy())[None]
        degradation = ClassicBatch(isotropic_gaussian_kernels(torch.tensor([1.2])), torch.tensor([5 / 255]))
        lr = classic_degrade(hr_t, degradation, 4, gen)[0].numpy().transpose(1, 2, 0)
        found = faces.detect(lr, models_dir=RETINAFACE_DIR)
        pairs = build_pairs(face_targets(lr, found.faces))
        if pairs is None:
            print(f"{path.name}: {len(found.faces)} faces, none usable", flush=True)
            continue
        start = time.perf_counter()
        adapted, loss = adapt(model, pairs)
        step = time.perf_counter() - start
        x = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None]
        with torch.inference_mode():
            outs = [torch.func.functional_call(model.backbone, p, (x,))[0].clamp(0, 1).numpy().transpose(1, 2, 0)
                    for p in (stored_parameters(model), adapted)]
        boxes = [f.box for f in found.faces]
        print(f"{path.name}: LR {lr.shape[1]}x{lr.shape[0]}, {len(found.faces)} faces ({found.detector}), "
              f"{pairs.faces} used, {len(pairs.lr)} patches of {pairs.lr.shape[-1]} px, step {step:.1f} s, "
              f"loss {loss:.4f}; PSNR-Y whole {psnr_y(outs[0], hr):.2f} -> {psnr_y(outs[1], hr):.2f} dB, "
              f"faces {psnr_on_boxes(outs[0], hr, boxes, 4):.2f} -> {psnr_on_boxes(outs[1], hr, boxes, 4):.2f} dB",
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "adapt":
        adapt_some(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    else:
        detect_all()
