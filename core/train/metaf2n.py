"""MetaF2N meta-training (Yin et al., ICCV 2023, the official train.py), shrunk to a CPU budget.

A task is one simulated photo: an aligned face (UTKFace, 128 px) and `--queries` natural patches
(the trunk's training photos) go through ONE draw of the real-world chain, as the official
DataGenerator degrades face and background of a task alike. Per task:
- inner step, as at test time: 16 random LR 16×16 face patches, their targets from the face
  restorer (core/train/face_restorer.py) applied to the degraded face when its weights exist,
  else the HR face; loss mean(W ⊙ |target − SR_θ(LR)|), W = MaskNet(bicubic(LR), target);
  θ' = θ − 0.01·∇θ (plain SGD, `--inner-steps` of them, default the paper's 1);
- outer loss on the natural patches with θ': L1 + 0.002·mean((W − 1)²)/2 (the paper's mask term;
  its LPIPS and GAN terms are left out: this is a PSNR-oriented model like the trunk).
The outer loss reaches MaskNet only through θ', so the inner gradient is taken with
`create_graph=True` and the outer backward differentiates through it (second-order MAML from
step 0, as the official SECOND_ORDER_GRAD_ITER=0); first-order MAML would give MaskNet nothing.
Adam (peak lr 3e-5, the paper's META_LR, cosine) on backbone and MaskNet together. fp32 only:
the double backward is not run under bf16 autocast.

Initialisation (`--init RUN_DIR`): a finished metaf2n run (`metaf2n_<config>.safetensors`), or the
shared real-world trunk (`rrdbnet_<config>.safetensors`, core.train.realworld) for the backbone with
MaskNet started near a constant 1 (the inner step then begins as the plain L1 step). For
`--config official` (the paper's Real-ESRGAN backbone) the init folder holds
`rrdbnet_official.safetensors`: the converted x4plus (`python -m core.ncnn_convert` writes it as
`realesrgan_official.safetensors` in the models folder; copy it under that name).

A long run, after `python -m core.train face_restorer --minutes 120 --out train_runs/face_restorer_lite`:
    python -m core.train metaf2n --init train_runs/realworld_lite --minutes 240 --threads 1 \
        --restorer train_runs/face_restorer_lite/face_restorer_lite.safetensors --out train_runs/metaf2n_lite
(about 3.3 s of one core per task, 13 s per step of 4 tasks, measured on this machine).

Validation: the ten held-back FFHQ faces, each paired with a kodak24 crop under one fixed chain:
PSNR-Y of the crop by bicubic, by θ, and by θ' adapted on that face with the product's own step
(core.face_adaptation.adapt), the gain of adapting, and the spread of MaskNet's weights.
"""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.func import functional_call
from torch.nn import functional as F

from core import degradations as deg
from core.archs import metaf2n as arch
from core.face_adaptation import INNER_LR, PATCH, PATCHES_PER_FACE, FacePairs, adapt, random_patches
from core.face_restore import LowResRestorer
from core.metrics import psnr_y
from core.train.data import PhotoPool, _image_files, default_training_files, kodak_validation_crops
from core.train.face_restorer import UTKFACE, FacePool, validation_faces
from core.train.run import clip_gradients, start_one_net, train_loop, warm_start
from core.train.validation import SCALE, to_numpy

MASK_WEIGHT = 0.002  # official config: keeps MaskNet's weights near 1


def degrade_task(images, generator: torch.Generator) -> list[torch.Tensor]:
    """HR images of one task (3×H×W each, any sizes) -> their 1×3×h×w LR versions under one
    draw of the real-world chain: one simulated photo."""
    plan = deg.sample_chain(generator, deg.FIRST_STAGE, deg.SECOND_STAGE, deg.FINAL_SINC_PROB)
    return [deg.apply_chain(image[None], plan, SCALE, generator) for image in images]


def face_target(restorer: torch.nn.Module | None, face_lr: torch.Tensor, face_hr: torch.Tensor) -> torch.Tensor:
    """What the inner step pulls the face towards: the restorer's output when there is one (as the
    paper's GPEN output), else the HR face."""
    if restorer is None:
        return face_hr
    with torch.no_grad():
        return LowResRestorer(restorer, SCALE)(face_lr).clamp(0, 1)


def inner_pairs(face_lr, target, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    patch = min(PATCH, face_lr.shape[-1])
    return random_patches(face_lr, target, PATCHES_PER_FACE, patch, SCALE, rng)


def meta_loss(model: arch.MetaF2N, pairs: tuple[torch.Tensor, torch.Tensor], query_lr: torch.Tensor,
              query_hr: torch.Tensor, inner_steps: int = 1, inner_lr: float = INNER_LR) -> dict:
    """The outer loss of one task, differentiable into backbone and MaskNet (second order)."""
    lq, target = pairs
    params: dict[str, torch.Tensor] = dict(model.backbone.named_parameters())
    weight = model.loss_weight(lq, target)
    for _ in range(inner_steps):
        inner = (weight * (target - functional_call(model.backbone, params, (lq,))).abs()).mean()
        grads = torch.autograd.grad(inner, tuple(params.values()), create_graph=True)
        params = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads)}
    l1 = F.l1_loss(functional_call(model.backbone, params, (query_lr,)), query_hr)
    mask = ((weight - 1) ** 2).mean() / 2
    return {"total": l1 + MASK_WEIGHT * mask, "l1": l1, "inner": inner, "mask": mask,
            "mask_std": weight.detach().std()}


def initialise(model: arch.MetaF2N, run_dir: Path, config: str) -> str:
    """A finished metaf2n run, or the trunk for the backbone and MaskNet near a constant 1."""
    own = Path(run_dir) / f"metaf2n_{config}.safetensors"
    if own.is_file():
        model.load_state_dict(load_file(str(own)))
        return "a finished metaf2n run"
    source = warm_start(model.backbone, run_dir, "rrdbnet", config, ())
    last = getattr(model.mask_net, f"conv{model.mask_net.num_conv}")
    with torch.no_grad():
        last.weight.mul_(0.01)
        last.bias.fill_(1.0)
    return source


class MetaValidation:
    """Fixed tasks: face i (aligned, 128 px) and kodak crop i under one seeded chain."""

    def __init__(self, faces: torch.Tensor, photos: torch.Tensor, restorer, seed: int = 2023):
        generator = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.tasks = []
        for i in range(min(len(faces), len(photos))):
            face_lr, photo_lr = degrade_task([faces[i], photos[i]], generator)
            lq, target = inner_pairs(face_lr, face_target(restorer, face_lr, faces[i:i + 1]), rng)
            self.tasks.append((FacePairs(lq, target, 1), photo_lr, photos[i:i + 1]))
        self.bicubic = float(np.mean([self._psnr(F.interpolate(lr, scale_factor=SCALE, mode="bicubic",
                                                                align_corners=False), hr)
                                      for _, lr, hr in self.tasks]))

    @staticmethod
    def _psnr(sr, hr):
        return psnr_y(to_numpy(sr)[0], to_numpy(hr)[0])

    def evaluate(self, model: arch.MetaF2N) -> dict[str, float]:
        model.eval()
        before, after, spread = [], [], []
        for pairs, lr, hr in self.tasks:
            adapted, _ = adapt(model, pairs)
            with torch.no_grad():
                before.append(self._psnr(model(lr), hr))
                after.append(self._psnr(functional_call(model.backbone, adapted, (lr,)), hr))
                spread.append(float(model.loss_weight(pairs.lr, pairs.hr).std()))
        return {"psnr_unadapted": float(np.mean(before)), "psnr_adapted": float(np.mean(after)),
                "gain_adapt": float(np.mean(after) - np.mean(before)),
                "gain_bicubic": float(np.mean(after) - self.bicubic), "mask_std": float(np.mean(spread))}


def load_restorer(path: Path | None):
    """The face restorer for the targets: `path`, else the installed one, else None (HR targets)."""
    from core import face_restore
    from core.archs import build
    from core.weights import load_state_dict, load_strict

    if path is not None:
        module = build(face_restore.ARCH_ID, face_restore.CONFIG)
        load_strict(module, load_state_dict(path), name=Path(path).name)
        return module.eval()
    return face_restore.load().eval() if face_restore.available() else None


def train(args, faces: FacePool | None = None, photos: PhotoPool | None = None,
          validation: MetaValidation | None = None):
    run, model, optimizer, resumed = start_one_net(args, arch.ARCH.build)
    if not resumed:
        if args.init is not None:
            run.log(f"initialised from {initialise(model, args.init, args.config)} in {args.init}")
        else:
            run.log("no --init: the backbone starts untrained (meta-training expects the real-world trunk)")
    restorer = load_restorer(args.restorer)
    faces = faces or FacePool(_image_files(UTKFACE, recursive=False))
    photos = photos or PhotoPool.from_files(default_training_files(), min_size=args.patch * SCALE)
    validation = validation or MetaValidation(validation_faces(), kodak_validation_crops(size=128), restorer)
    run.log("start", config=args.config, params=sum(p.numel() for p in model.parameters()),
            targets="face restorer" if restorer is not None else "HR faces", faces=len(faces.images),
            photos=len(photos.images), inner_steps=args.inner_steps, bicubic=validation.bicubic)

    def step() -> dict[str, float]:
        """`--tasks` tasks, their outer gradients averaged into one step."""
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}
        for _ in range(args.tasks):
            face_hr = faces.batch(1, args.patch * SCALE, run.rng)
            query_hr = photos.batch(args.queries, args.patch * SCALE, run.rng)
            face_lr, *query_lr = degrade_task([*face_hr, *query_hr], run.generator)
            pairs = inner_pairs(face_lr, face_target(restorer, face_lr, face_hr), run.rng)
            losses = meta_loss(model, pairs, torch.cat(query_lr), query_hr, args.inner_steps)
            (losses["total"] / args.tasks).backward()
            for key, value in losses.items():
                logged[key] = logged.get(key, 0.0) + float(value.detach()) / args.tasks
        logged["mask_grad"] = float(clip_gradients(model.mask_net.parameters(), None))
        logged["grad_norm"] = float(clip_gradients(model.parameters(), args.clip_grad))
        optimizer.step()
        return logged

    return train_loop(run, args, step, [optimizer], lambda: run.log("val", **validation.evaluate(model)),
                      {"model": model, "optimizer": optimizer}, "metaf2n", model)
