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

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from core.archs import rrdbnet as arch
from core.train.data import PhotoPool, default_training_files, real_world_batches
from core.train.run import (TrainingRun, clip_gradients, cosine_lr, mixed_precision,
                            seed_everything, set_lr)
from core.train.validation import REAL_WORLD, SCALE, ValidationSet, log_validation

ARCH_ID = "rrdbnet"


def train(args, pool: PhotoPool | None = None, validation: ValidationSet | None = None):
    torch.set_num_threads(args.threads)
    run = TrainingRun(args.out, args.minutes, args.steps, args.checkpoint_minutes,
                      args.val_minutes, args.val_steps)
    rng, generator = seed_everything(args.seed)
    model = arch.ARCH.build(args.config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    state = run.load_checkpoint(rng, generator) if args.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    elif args.init is not None:
        model.load_state_dict(load_file(str(args.init / f"{ARCH_ID}_{args.config}.safetensors")))
        run.log(f"initialised from {args.init}")
    pool = pool or PhotoPool.from_files(default_training_files(), min_size=args.patch * SCALE)
    validation = validation or ValidationSet([REAL_WORLD, "iso2.0"], size=256)
    batches = real_world_batches(pool, args.batch, args.patch, SCALE, args.seed, run.step, args.loader_workers)
    run.log("start", config=args.config, precision=args.precision, params=sum(p.numel() for p in model.parameters()),
            images=len(pool.images), **{f"bicubic_{k}": v for k, v in validation.bicubic.items()})

    while not run.finished() and not run.stop_requested:
        lr_now = cosine_lr(args.lr, run.progress(), run.step, args.warmup_steps)
        set_lr(optimizer, lr_now)
        lr, hr = next(batches)
        model.train()
        with mixed_precision(args.precision):
            sr = model(lr)
        loss = F.l1_loss(sr.float(), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(model.parameters(), args.clip_grad)
        optimizer.step()
        run.tick()

        if run.step % args.log_every == 0:
            run.log("train", lr=lr_now, l1=float(loss.detach()), grad_norm=float(grad_norm))
        if run.validation_due():
            log_validation(run, validation, model)
        if run.checkpoint_due():
            save(run, rng, generator, model, optimizer)

    save(run, rng, generator, model, optimizer)
    return run.finish(lambda: log_validation(run, validation, model), ARCH_ID, args.config, model)


def save(run, rng, generator, model, optimizer):
    run.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, rng, generator)
