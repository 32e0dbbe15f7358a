"""CMDSR recipe, as in the official training, shrunk to a CPU budget.

A batch is `tasks` tasks. A task is one HR region of one photo with one degradation (isotropic
Gaussian blur sigma 0.2..4, bicubic down, AWGN sigma 0..75 drawn as 75 u^2, 8-bit), from which two support sets
of 20 LR patches (32x32) and `queries` query patches are cut. Every step trains the BaseNet, the
modulation layers and the ConditionNet with L1 on the queries, conditioned on support set A.
Every `condition_every` steps the ConditionNet also takes the task-contrastive loss (the two
support sets of a task are the positive pair, support sets of other tasks the negatives).

Deviation from the released schedule (ConditionNet updated alone every 10 steps with
contrastive + 0.1 x L1): in a CPU-length run that schedule left the task vector collapsed (the
contrastive loss sat at 2 ln 2, i.e. every task looked the same, and the net fell back to one
average, over-smoothing restoration). Letting L1 reach the ConditionNet every step is what makes
the task vector carry the degradation within a short budget; the contrastive term keeps its
alternating place. `task_spread` in the log (std of the task vectors across tasks) shows collapse.

Noise sigma is 75 u^2 (u uniform) rather than uniform: the same 0..75 range, but the mild noise of
real photos is drawn more often (P(sigma <= 15) = 0.45 instead of 0.2), so a small net does not spend
most of its capacity on noise that photos seldom have.

With `--init RUN_DIR` the model starts from a finished run's weights (a warm restart with a new budget).
The run may have had fewer blocks: the added ones start as identities (conv2 zeroed), with fresh
modulation layers (scales near 1). With `--new-encoders` as well, the BaseNet is kept and a new
ConditionNet is trained (see `replace_condition_net`), for a run whose support set had no effect.
`--degradation-weight` adds a read-out of (blur width, noise level) from the task vector, a
supervised signal the paper does not use, so that the vector encodes the degradation early.

The contrastive distance is the per-channel |f(X) - f(X')| of the released code
(`F.pairwise_distance` on T x 128 x 1 x 1 tensors), averaged over tasks and channels:
L = mean(softplus(d_pos^2) + softplus(-d_neg^2)).
"""

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from core import degradations as deg
from core.archs import cmdsr as arch
from core.support_set import PATCH_SIZE, sample_support_patches, stack_support
from core.train.data import PhotoPool, default_training_files
from core.train.run import (TrainingRun, clip_gradients, cosine_lr, load_deepened, mixed_precision,
                            seed_everything, set_lr)
from core.train.validation import SCALE, ValidationSet


def task_contrastive_loss(task_a, task_b, generator: torch.Generator):
    """task_a, task_b: T x D task vectors of two support sets per task."""
    t = task_a.shape[0]
    shift = int(torch.randint(1, t, (1,), generator=generator)) if t > 1 else 0
    negatives = torch.roll(task_b, shifts=shift, dims=0)   # a derangement of the tasks
    d_pos = (task_a - task_b).abs()
    d_neg = (task_a - negatives).abs()
    return (F.softplus(d_pos ** 2) + F.softplus(-(d_neg ** 2))).mean()


def random_patches(images: torch.Tensor, count: int, size: int, generator: torch.Generator):
    """images: T x 3 x H x W -> (T x count x 3 x size x size, the top-left corners)."""
    t, _, h, w = images.shape
    ys = torch.randint(0, h - size + 1, (t, count), generator=generator)
    xs = torch.randint(0, w - size + 1, (t, count), generator=generator)
    patches = torch.stack([torch.stack([images[i, :, y:y + size, x:x + size]
                                        for y, x in zip(ys[i].tolist(), xs[i].tolist())])
                           for i in range(t)])
    return patches, ys, xs


NOISE_MAX = 75.0


def sample_task_degradations(tasks: int, generator: torch.Generator) -> deg.ClassicBatch:
    blur = deg.sample_isotropic(tasks, generator, sigma=(0.2, 4.0))
    noise = NOISE_MAX * torch.rand(tasks, generator=generator) ** 2 / 255
    return deg.ClassicBatch(blur.kernels, noise)


def make_tasks(pool, args, rng, generator):
    """Support sets A and B (T x S*3 x 32 x 32), query LR (T*Q x 3 x p x p) and HR."""
    region = args.region
    hr = pool.batch(args.tasks, region, rng)
    params = sample_task_degradations(args.tasks, generator)
    lr = deg.classic_degrade(hr, params, SCALE, generator)
    s = args.support_size
    support, _, _ = random_patches(lr, 2 * s, PATCH_SIZE, generator)
    t = args.tasks
    support_a = support[:, :s].reshape(t, s * 3, PATCH_SIZE, PATCH_SIZE)
    support_b = support[:, s:].reshape(t, s * 3, PATCH_SIZE, PATCH_SIZE)
    query_lr, ys, xs = random_patches(lr, args.queries, args.patch, generator)
    p = args.patch * SCALE
    query_hr = torch.stack([torch.stack([hr[i, :, y * SCALE:y * SCALE + p, x * SCALE:x * SCALE + p]
                                         for y, x in zip(ys[i].tolist(), xs[i].tolist())])
                            for i in range(t)])
    targets = deg.degradation_targets(params, NOISE_MAX)
    return support_a, support_b, query_lr.flatten(0, 1), query_hr.flatten(0, 1), targets


def modulations_of_block(block: int) -> tuple[str, str]:
    """State-dict prefixes of the two modulation layers that scale block `block`'s convs."""
    return (f"sr_net.modulations.modulations.{2 * block}.", f"sr_net.modulations.modulations.{2 * block + 1}.")


def replace_condition_net(model: arch.CMDSR, support: torch.Tensor):
    """A fresh ConditionNet for a model whose task vector ignored the support set. Each
    modulation's mean output over `support` moves into its bias and its weights start at zero,
    so the BaseNet first sees the scales it was trained with and learns to read the new vector."""
    with torch.no_grad():
        task = model.condition_net(support).mean(dim=0)
        for layer in model.sr_net.modulations.modulations:
            layer.bias.add_(layer.weight @ task)
            layer.weight.zero_()
        model.condition_net.reset_parameters()


def train(args, pool: PhotoPool | None = None, validation: ValidationSet | None = None):
    torch.set_num_threads(args.threads)
    run = TrainingRun(args.out, args.minutes, args.steps, args.checkpoint_minutes,
                      args.val_minutes, args.val_steps)
    rng, generator = seed_everything(args.seed)
    model = arch.ARCH.build(args.config)
    sr_params = list(model.sr_net.parameters())
    # A training-only linear read-out of the task vector: (blur width, noise level)
    degradation_head = torch.nn.Linear(model.sr_net.modulations.modulations[0].in_features, 2)
    condition_params = list(model.condition_net.parameters()) + list(degradation_head.parameters())
    sr_optimizer = torch.optim.Adam(sr_params, lr=args.lr)
    condition_optimizer = torch.optim.Adam(condition_params, lr=args.lr)
    pool = pool or PhotoPool.from_files(default_training_files(), min_size=args.region)
    state = run.load_checkpoint(rng, generator) if args.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        if "degradation_head" in state:
            degradation_head.load_state_dict(state["degradation_head"])
        sr_optimizer.load_state_dict(state["sr_optimizer"])
        condition_optimizer.load_state_dict(state["condition_optimizer"])
    elif args.init is not None and args.new_encoders:
        model.load_state_dict(load_file(str(args.init / f"cmdsr_{args.config}.safetensors")))
        replace_condition_net(model, make_tasks(pool, args, rng, generator)[0])
        run.log(f"BaseNet initialised from {args.init}; new ConditionNet, modulations folded into their biases")
    elif args.init is not None:
        added = load_deepened(model, load_file(str(args.init / f"cmdsr_{args.config}.safetensors")),
                              model.sr_net.backbone, "sr_net.backbone.", "conv2", modulations_of_block)
        run.log(f"initialised from {args.init}", added_blocks=len(added))
    validation = validation or ValidationSet(["iso2.0", "iso2.6+n15"], size=384)
    run.log("start", config=args.config, precision=args.precision, params=sum(p.numel() for p in model.parameters()),
            images=len(pool.images), **{f"bicubic_{k}": v for k, v in validation.bicubic.items()})

    while not run.finished() and not run.stop_requested:
        lr_now = cosine_lr(args.lr, run.progress(), run.step, args.warmup_steps)
        set_lr(sr_optimizer, lr_now)
        set_lr(condition_optimizer, lr_now)
        support_a, support_b, query_lr, query_hr, targets = make_tasks(pool, args, rng, generator)
        condition_step = (run.step + 1) % args.condition_every == 0
        model.train()
        losses = {}
        with mixed_precision(args.precision):
            task_a = model.condition_net(support_a)
            scales = model.sr_net.modulations(task_a).repeat_interleave(args.queries, dim=0)
            sr = model.sr_net(query_lr, scales)
            task_b = model.condition_net(support_b) if condition_step else None
        task_a = task_a.float()
        loss = losses["l1"] = F.l1_loss(sr.float(), query_hr)
        if args.degradation_weight:
            losses["degradation"] = F.mse_loss(degradation_head(task_a), targets)
            loss = loss + args.degradation_weight * losses["degradation"]
        if condition_step:
            contrast = losses["contrast"] = task_contrastive_loss(task_a, task_b.float(), generator)
            loss = loss + args.contrast_weight * contrast
            losses["task_spread"] = task_a.std(dim=0).mean()
        sr_optimizer.zero_grad(set_to_none=True)
        condition_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        losses["grad_norm"] = clip_gradients(sr_params + condition_params, args.clip_grad)
        sr_optimizer.step()
        condition_optimizer.step()
        run.tick()

        if run.step % args.log_every == 0:
            run.log("train", lr=lr_now, **{k: float(v.detach()) for k, v in losses.items()})
        if run.validation_due():
            validate(run, validation, model)
        if run.checkpoint_due():
            save(run, rng, generator, model, degradation_head, sr_optimizer, condition_optimizer)

    save(run, rng, generator, model, degradation_head, sr_optimizer, condition_optimizer)
    return run.finish(lambda: validate(run, validation, model), "cmdsr", args.config, model)


def save(run, rng, generator, model, degradation_head, sr_optimizer, condition_optimizer):
    run.save_checkpoint({"model": model.state_dict(), "degradation_head": degradation_head.state_dict(),
                         "sr_optimizer": sr_optimizer.state_dict(),
                         "condition_optimizer": condition_optimizer.state_dict()}, rng, generator)


def validate(run, validation, model):
    """Each validation LR image conditions the model on its own support set, drawn as at inference."""
    model.eval()

    def upscale(lr, hr):
        outputs = []
        for image in lr:
            patches = sample_support_patches(image.permute(1, 2, 0).numpy(), count=model.support_size)
            support = torch.from_numpy(stack_support(patches))
            outputs.append(model(image[None], support))
        return torch.cat(outputs)

    scores = validation.evaluate(upscale)
    run.log("val", **{f"psnr_{k}": v for k, v in scores.items()},
            **{f"gain_{k}": v - validation.bicubic[k] for k, v in scores.items()})
