"""Face restorer recipe: the small U-Net of core/archs/face_restorer.py, L1 on aligned faces.

Training faces: UTKFace's 8,350 aligned 200x200 crops (../shared/data/faces_train), shrunk to
128 px (box filter: it also removes their JPEG blocks), flipped at random, degraded ×4 with the
same second-order real-world chain as the shared trunk (`core.train.data.real_world_batches`);
the restorer sees the 32 px LR face bicubic-enlarged to 128 and predicts the 128 px face.
Validation: the ten FFHQ faces of ../shared/data/faces/gpen_examples/ffhq-10 (never trained on),
aligned to the same framing with YuNet's landmarks, degraded with fixed seeds (the real-world
chain and iso2.0); the log reports PSNR-Y and the gain over bicubic.

At the end of the budget the run writes `face_restorer_lite.safetensors` and its model card
`face_restorer_lite.md`, filled from the last validation. Copy both into the models folder (or
bundle them) for `--restore-faces` and MetaF2N's face targets.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.archs import face_restorer as arch
from core.face_restore import TEMPLATE, LowResRestorer
from core.faces import align_face, detect
from core.train.data import SHARED_DATA, _image_files, real_world_batches
from core.train.realworld import l1_step
from core.train.run import TrainingRun, log_start, start_one_net, train_loop, warm_start
from core.train.validation import REAL_WORLD, SCALE, ValidationSet

UTKFACE = SHARED_DATA / "faces_train" / "utkface" / "train"
VALIDATION_FACES = SHARED_DATA / "faces" / "gpen_examples" / "ffhq-10"
SETTINGS = [REAL_WORLD, "iso2.0"]


class FacePool:
    """Aligned training faces, read from disk when drawn (8,350 faces at 128 px would hold
    400 MB); `batch` has `core.train.data.PhotoPool`'s interface, so the real-world loader
    takes it as it is. No rotation: the restorer only ever sees upright aligned faces."""

    def __init__(self, files: list[Path]):
        if not files:
            raise ValueError(f"no training faces in {UTKFACE}")
        self.images = files

    def face(self, path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
        with Image.open(path) as file:
            image = np.asarray(file.convert("RGB").resize((size, size), Image.Resampling.BOX))
        return image[:, ::-1] if rng.random() < 0.5 else image

    def batch(self, count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        """count x 3 x size x size float32 in 0..1."""
        faces = np.stack([self.face(self.images[int(rng.integers(len(self.images)))], size, rng)
                          for _ in range(count)])
        return torch.from_numpy(faces.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def validation_faces(folder: Path = VALIDATION_FACES, size: int = arch.TRAINED_SIZE) -> torch.Tensor:
    """The largest face of each photo in `folder`, aligned to the restorer's framing at `size`."""
    faces = []
    for path in _image_files(folder, recursive=False):
        with Image.open(path) as file:
            rgb = np.asarray(file.convert("RGB"), dtype=np.float32) / 255.0
        found = detect(rgb).faces
        if found and found[0].landmarks is not None:
            faces.append(align_face(rgb, found[0].landmarks, size, TEMPLATE)[0])
    if not faces:
        raise ValueError(f"no face found in {folder} to validate on")
    return torch.from_numpy(np.stack(faces).transpose(0, 3, 1, 2).copy())


def train(args, pool: FacePool | None = None, validation: ValidationSet | None = None):
    run, model, optimizer, resumed = start_one_net(args, arch.ARCH.build)
    if not resumed and args.init is not None:
        run.log(f"initialised from {warm_start(model, args.init, arch.ARCH.id, args.config, ())} in {args.init}")
    pool = pool or FacePool(_image_files(UTKFACE, recursive=False))
    validation = validation or ValidationSet(SETTINGS, hr=validation_faces())
    from_lr = LowResRestorer(model, SCALE)
    batches = real_world_batches(pool, args.batch, args.patch, SCALE, args.seed, run.step, args.loader_workers)
    log_start(run, args, model, validation.bicubic, faces=len(pool.images), val_faces=validation.hr.shape[0])

    def validate() -> dict[str, float]:
        from_lr.eval()
        scores = validation.evaluate(lambda lr, hr: from_lr(lr))
        gains = {k: v - validation.bicubic[k] for k, v in scores.items()}
        run.log("val", **{f"psnr_{k}": v for k, v in scores.items()}, **{f"gain_{k}": v for k, v in gains.items()})
        return scores

    return train_loop(run, args, lambda: l1_step(from_lr, next(batches), optimizer, args), [optimizer], validate,
                      {"model": model, "optimizer": optimizer}, arch.ARCH.id, model,
                      last_validation=lambda: write_card(run, args, validation, validate()))


def write_card(run: TrainingRun, args, validation: ValidationSet, scores: dict[str, float]) -> Path:
    """`<run>/face_restorer_<config>.md`: the model card, with the numbers this run measured."""
    rows = "\n".join(f"| {name} | {validation.bicubic[name]:.2f} | {scores[name]:.2f} | "
                     f"{scores[name] - validation.bicubic[name]:+.2f} |" for name in scores)
    card = CARD.format(config=args.config, steps=run.step, minutes=run.elapsed / 60, batch=args.batch,
                       patch=args.patch, lr=args.lr, faces=validation.hr.shape[0], rows=rows,
                       params=sum(p.numel() for p in arch.ARCH.build(args.config).parameters()))
    path = run.out_dir / f"{arch.ARCH.id}_{args.config}.md"
    path.write_text(card)
    run.log(f"model card written to {path}")
    return path


CARD = """# Face restorer ({config})

A small U-Net ({params:,} parameters, core/archs/face_restorer.py) that restores an aligned face
from its ×4 degraded version. It exists because no face-restoration weights can be installed from a
package registry; it is the face prior of the "restore faces" option and of MetaF2N's face targets.

## Training
- Data: UTKFace aligned 200×200 crops (../shared/data/faces_train; non-commercial research use
  only), shrunk to {patch}×4 px, random horizontal flips.
- Degradation: the second-order real-world chain of core/degradations.py, ×4.
- Recipe: `python -m core.train face_restorer --config {config}`, L1, Adam (peak lr {lr:g}, cosine),
  batch {batch}, {steps:,} steps, {minutes:.0f} training minutes on one CPU thread.

## Measured gain over bicubic
PSNR-Y (dB) on {faces} held-back FFHQ faces (../shared/data/faces/gpen_examples/ffhq-10, never
trained on), aligned like the training faces, 128 px, degraded with fixed seeds:

| degradation | bicubic | restorer | gain |
|---|---|---|---|
{rows}

## Limits
Trained on 8,350 small, mostly frontal faces: profiles, occlusions, strong make-up and faces larger
than the training scale (restored at their own size) are outside what it has seen. It restores
towards the average face; it does not invent identity details, and it is PSNR-oriented (no GAN):
results are smooth rather than crisp.
"""
