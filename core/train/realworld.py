"""The shared real-world trunk: an RRDBNet trained with L1 (PSNR-oriented) on the second-order
real-world chain (blur incl. anisotropic/generalized/plateau/sinc kernels, random resize,
Gaussian/Poisson noise incl. gray noise, JPEG, twice, then a final sinc), as Real-ESRNet is
trained before Real-ESRGAN.

MM-RealSR, RealSR-CCL and MetaF2N all put their parts around this same trunk (BasicSR names:
`conv_first`, `body.N`, `conv_body`, `conv_up1/2`, `conv_hr`, `conv_last`), so the CPU hours are
spent once here and each method warm-starts from `rrdbnet_<config>.safetensors`.

Pairs come from one loader process (see `core.train.data.RealWorldPairs`). The budget is meant
to span sessions: `--resume` continues the cosine schedule from the checkpoint (weights, Adam
state, step, RNG states); `--init RUN_DIR` warm-starts a new schedule from a run's weights.
"""

from collections.abc import Iterator

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from core.archs import rrdbnet as arch
from core.degradations import realesrgan_degrade
from core.train.data import PhotoPool, default_training_files, real_world_batches
from core.train.run import TrainingRun, gradient_step, log_start, mixed_precision, start_one_net, train_loop
from core.train.validation import REAL_WORLD, SCALE, ValidationSet, log_validation

ARCH_ID = "rrdbnet"


def train(args, pool: PhotoPool | None = None, validation: ValidationSet | None = None):
    run, model, optimizer, resumed = start_one_net(args, arch.ARCH.build)
    if not resumed and args.init is not None:
        # a finished run's folder, or a weights file (the official configuration: Real-ESRGAN x4plus)
        source = args.init if args.init.is_file() else args.init / f"{ARCH_ID}_{args.config}.safetensors"
        model.load_state_dict(load_file(str(source)))
        run.log(f"initialised from {source}")
    pool, validation, batches = trunk_data(run, args, pool, validation)
    log_start(run, args, model, validation.bicubic, images=len(pool.images))
    return train_loop(run, args, lambda: l1_step(model, next(batches), optimizer, args), [optimizer],
                      lambda: log_validation(run, validation, model), {"model": model, "optimizer": optimizer},
                      ARCH_ID, model)


def trunk_data(run: TrainingRun, args, pool: PhotoPool | None, validation: ValidationSet | None,
               degrade=realesrgan_degrade) -> tuple[PhotoPool, ValidationSet, Iterator]:
    """The trunk's data, which the methods around it train on too: the training photos (or
    `pool`), the validation set (or `validation`) and the loader's (LR, HR) batches through
    `degrade`, drawn from the run's step on."""
    pool = pool or PhotoPool.from_files(default_training_files(), min_size=args.patch * SCALE)
    validation = validation or ValidationSet([REAL_WORLD, "iso2.0"], size=256)
    batches = real_world_batches(pool, args.batch, args.patch, SCALE, args.seed, run.step, args.loader_workers,
                                 degrade)
    return pool, validation, batches


def l1_step(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], optimizer: torch.optim.Optimizer,
            args) -> dict[str, torch.Tensor]:
    """One L1 step of `net` on an (LR, HR) batch."""
    lr, hr = batch
    net.train()
    with mixed_precision(args.precision):
        sr = net(lr)
    loss = F.l1_loss(sr.float(), hr)
    return {"l1": loss, "grad_norm": gradient_step(loss, [optimizer], net.parameters(), args.clip_grad)}
