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
from core.train.run import (TrainingRun, gradient_step, load_deepened, log_start, mixed_precision, resume,
                            train_loop)
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
    run = TrainingRun.start(args)
    model = arch.ARCH.build(args.config)
    sr_params = list(model.sr_net.parameters())
    # A training-only linear read-out of the task vector: (blur width, noise level)
    degradation_head = torch.nn.Linear(model.sr_net.modulations.modulations[0].in_features, 2)
    condition_params = list(model.condition_net.parameters()) + list(degradation_head.parameters())
    optimizers = [torch.optim.Adam(sr_params, lr=args.lr), torch.optim.Adam(condition_params, lr=args.lr)]
    pool = pool or PhotoPool.from_files(default_training_files(), min_size=args.region)
    parts = {"model": model, "degradation_head": degradation_head, "sr_optimizer": optimizers[0],
             "condition_optimizer": optimizers[1]}
    if not resume(run, args, parts, optional=("degradation_head",)) and args.init is not None:
        trained = load_file(str(args.init / f"cmdsr_{args.config}.safetensors"))
        if args.new_encoders:
            model.load_state_dict(trained)
            replace_condition_net(model, make_tasks(pool, args, run.rng, run.generator)[0])
            run.log(f"BaseNet initialised from {args.init}; new ConditionNet, modulations folded into their biases")
        else:
            added = load_deepened(model, trained, model.sr_net.backbone, "sr_net.backbone.", "conv2",
                                  modulations_of_block)
            run.log(f"initialised from {args.init}", added_blocks=len(added))
    validation = validation or ValidationSet(["iso2.0", "iso2.6+n15"], size=384)
    log_start(run, args, model, validation.bicubic, images=len(pool.images))

    def step() -> dict[str, torch.Tensor]:
        support_a, support_b, query_lr, query_hr, targets = make_tasks(pool, args, run.rng, run.generator)
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
            contrast = losses["contrast"] = task_contrastive_loss(task_a, task_b.float(), run.generator)
            loss = loss + args.contrast_weight * contrast
            losses["task_spread"] = task_a.std(dim=0).mean()
        losses["grad_norm"] = gradient_step(loss, optimizers, sr_params + condition_params, args.clip_grad)
        return losses

    return train_loop(run, args, step, optimizers, lambda: validate(run, validation, model), parts, "cmdsr", model)


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
