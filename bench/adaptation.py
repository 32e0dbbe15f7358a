"""How much the adaptive models adapt: PSNR-Y when conditioned on their own input, and when the
conditioning (KDSR's implicit degradation vector, CMDSR's support set) comes from the same photo
under another degradation.

    .venv/bin/python bench/adaptation.py [--models kdsr,cmdsr] [--limit N] [--weights FILE ...]

A model that really reads the degradation loses PSNR with the wrong conditioning; one whose
conditioning is ignored scores the same in every column (it acts as a plain blind net).
`--weights` scores a training run's safetensors instead of the bundled file (the configuration is
detected from its keys and shapes). Prints Markdown tables.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import degrade, kodak_images  # noqa: E402

from core import weights  # noqa: E402
from core.archs import build  # noqa: E402
from core.metrics import psnr_y  # noqa: E402
from core.registry import upscaler_class  # noqa: E402
from core.support_set import sample_support_patches, stack_support  # noqa: E402

SETTINGS = ["iso1.2", "iso3.0", "iso2.6+n15"]


def load_file(path: Path):
    """(arch id, module in eval mode) of a training run's weights file, its configuration detected.
    A run's file holds this project's own names and scales: no official-checkpoint mapping (for
    CMDSR that mapping rescales every SR-net weight, which left the net computing bicubic)."""
    state = weights.load_state_dict(path)
    arch_id, config = weights.detect(state, path.name)
    module = build(arch_id, config)
    weights.load_strict(module, state, name=path.name)
    return arch_id, module.eval()


def load_bundled(model: str):
    """(arch id, module) as the product loads the bundled lite weights (sha256 checked)."""
    arch_id = upscaler_class(model).arch
    return arch_id, weights.load_model(model, arch_id, "lite").module


def conditioning(arch_id: str, module, lr: torch.Tensor):
    """What the model adapts to, computed from an LR image (1 x 3 x h x w)."""
    if arch_id == "kdsr":
        return module.estimate(lr)[0]
    patches = sample_support_patches(lr[0].permute(1, 2, 0).numpy(), count=module.support_size)
    return module.modulation_scales(torch.from_numpy(stack_support(patches)))


def upscale(arch_id: str, module, lr: torch.Tensor, condition) -> np.ndarray:
    sr = module.upscale(lr, condition) if arch_id == "kdsr" else module.sr_net(lr, condition)
    return sr.clamp(0, 1)[0].permute(1, 2, 0).numpy()


def score(arch_id: str, module, limit: int) -> dict:
    """(input setting, conditioning setting) -> mean PSNR-Y."""
    scores = {}
    with torch.no_grad():
        for index, (_, hr) in enumerate(kodak_images(limit)):
            hr_t = torch.from_numpy(hr.transpose(2, 0, 1)[None].copy())
            lrs = {s: degrade(hr_t, s, index) for s in SETTINGS}
            conditions = {s: conditioning(arch_id, module, lrs[s]) for s in SETTINGS}
            for source in SETTINGS:
                for cond in SETTINGS:
                    sr = upscale(arch_id, module, lrs[source], conditions[cond])
                    scores.setdefault((source, cond), []).append(psnr_y(sr, hr))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def table(name: str, scores: dict) -> str:
    lines = [f"### {name}: PSNR-Y (dB), rows the input, columns whose conditioning it gets", "",
             "| input | " + " | ".join(SETTINGS) + " | own minus others |",
             "|---|" + "---|" * (len(SETTINGS) + 1)]
    for source in SETTINGS:
        own = scores[(source, source)]
        others = np.mean([scores[(source, c)] for c in SETTINGS if c != source])
        cells = [f"{scores[(source, c)]:.3f}" for c in SETTINGS]
        lines.append(f"| {source} | " + " | ".join(cells) + f" | {own - others:+.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="kdsr,cmdsr")
    parser.add_argument("--limit", type=int, default=8, help="first N kodak24 images")
    parser.add_argument("--weights", type=Path, nargs="*", default=[],
                        help="safetensors files to score instead of the bundled ones")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.weights:
        runs = [(path.name, *load_file(path)) for path in args.weights]
    else:
        runs = [(f"{m} lite (bundled)", *load_bundled(m)) for m in args.models.split(",")]
    for name, arch_id, module in runs:
        print(table(name, score(arch_id, module, args.limit)), "\n", flush=True)


if __name__ == "__main__":
    main()
