"""RealSR-CCL recipe: criteria-contrastive learning over the masked dual-branch head, shrunk to
a CPU budget, PSNR first.

The paper's equations could not be read here; the loss follows the authors' own training code
as far as it is public (their compiled `SRGAN_al` model in RWSR-EDL, same generator): one
criterion per view of the head (`CCLNet.views`): L1 on branch 2's view (weight 0.01), a
perceptual criterion on the result (weight 1), a relativistic adversarial criterion (RaGAN) on
branch 1's view (weight 5e-3), then the criteria-contrastive terms, which act on the criteria's
loss values, not on features:
- alignment 0.01 x (L1 criterion - perceptual criterion)^2 (the positive pair);
- uniformity 1e-3 x lunif(a, [RaGAN of result, view 1, view 2]), lunif(a, n) = -log sum_k
  exp(-2 (a + n_k)^2), with a = 0.01 x L1 of the result (the anchor and its negatives).
Deviations, for a CPU and no downloads: the perceptual criterion is an L1 between Sobel gradient
maps (VGG19's ImageNet weights cannot be downloaded here); the discriminator is a small
PatchGAN-style net trained from scratch, as in the original; and a base L1 of the result (weight
1) keeps the model PSNR-oriented, the floor the product is measured on.

`--init RUN_DIR` starts from the shared real-world trunk (`rrdbnet_<config>.safetensors`, see
`core.train.realworld`) with the head's output convs zeroed (the head then returns the trunk's
image), or continues a finished CCL run (`ccl_<config>.safetensors`).
"""

import torch
from torch import nn
from torch.nn import functional as F

from core.archs import ccl as arch
from core.train.data import PhotoPool
from core.train.realworld import trunk_data
from core.train.run import (TrainingRun, gradient_step, log_start, mixed_precision, resume, train_loop,
                            warm_start)
from core.train.validation import ValidationSet, log_validation

PIXEL_WEIGHT = 0.01       # L1 criterion on branch 2's view (and the anchor's scale)
PERCEPTUAL_WEIGHT = 1.0
ADVERSARIAL_WEIGHT = 5e-3
ALIGN_WEIGHT = 0.01
UNIFORM_WEIGHT = 1e-3
HEAD_PARTS = ("branch1.", "branch2.", "sm.", "tail_conv1.", "tail_conv2.")


class Discriminator(nn.Sequential):
    """PatchGAN-style critic: stride-2 convs with LeakyReLU, one logit per patch."""

    def __init__(self, feat: int = 32):
        layers, ch = [], 3
        for out in (feat, feat * 2, feat * 4):
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            ch = out
        super().__init__(*layers, nn.Conv2d(ch, 1, 3, 1, 1))


def sobel_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical Sobel responses of two images: an edge criterion."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    kernels = torch.stack([kx, kx.t()])[:, None].repeat(3, 1, 1, 1).to(a.dtype)
    grads = [F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=3) for x in (a, b)]
    return F.l1_loss(*grads)


def relativistic(real_logits: torch.Tensor, fake_logits: torch.Tensor, fake_is_real: bool) -> torch.Tensor:
    """RaGAN: each side judged relative to the other's mean logit. `fake_is_real` is the
    generator's side (it wants its images judged more real than the real ones)."""
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    target = float(fake_is_real)
    return (F.binary_cross_entropy_with_logits(real_rel, torch.full_like(real_rel, 1 - target))
            + F.binary_cross_entropy_with_logits(fake_rel, torch.full_like(fake_rel, target))) / 2


def uniformity(anchor: torch.Tensor, negatives: list[torch.Tensor], t: float = 2.0) -> torch.Tensor:
    return -torch.logsumexp(torch.stack([-t * (anchor + n) ** t for n in negatives]), dim=0)


def criteria_losses(model: arch.CCLNet, critic: Discriminator, lr: torch.Tensor, hr: torch.Tensor,
                    precision: str) -> dict:
    with mixed_precision(precision):
        views = [v.float() for v in model.views(lr)]
    out, view1, view2 = views
    real_logits = critic(hr).detach()
    gan = [relativistic(real_logits, critic(v), fake_is_real=True) for v in views]
    losses = {"l1": F.l1_loss(out, hr), "pixel": PIXEL_WEIGHT * F.l1_loss(view2, hr),
              "perceptual": PERCEPTUAL_WEIGHT * sobel_l1(out, hr), "adversarial": ADVERSARIAL_WEIGHT * gan[1]}
    losses["align"] = ALIGN_WEIGHT * (losses["pixel"] - losses["perceptual"]) ** 2
    losses["uniform"] = UNIFORM_WEIGHT * uniformity(PIXEL_WEIGHT * losses["l1"], [ADVERSARIAL_WEIGHT * g for g in gan])
    losses["total"] = torch.stack([losses[k] for k in ("l1", "pixel", "perceptual", "adversarial", "align", "uniform")]).sum()
    losses["fake"] = out.detach()
    return losses


def initialise(model: arch.CCLNet, run_dir, config: str) -> str:
    """A finished CCL run, or else the shared trunk with the head's output convs zeroed (with the
    head skip the net then returns the trunk's image)."""
    if not model.head_skip:
        raise ValueError(f"ccl {config} has no head skip: it cannot start from the shared trunk")
    source = warm_start(model, run_dir, "ccl", config, HEAD_PARTS)
    if source == "the shared real-world trunk":
        with torch.no_grad():
            for conv in (model.tail_conv1, model.tail_conv2):
                conv.weight.zero_()
                conv.bias.zero_()
    return source


def train(args, pool: PhotoPool | None = None, validation: ValidationSet | None = None):
    run = TrainingRun.start(args)
    model, critic = arch.ARCH.build(args.config), Discriminator()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999))
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(0.9, 0.999))
    parts = {"model": model, "critic": critic, "optimizer": optimizer, "critic_optimizer": critic_optimizer}
    if not resume(run, args, parts) and args.init is not None:
        run.log(f"initialised from {initialise(model, args.init, args.config)} in {args.init}")
    pool, validation, batches = trunk_data(run, args, pool, validation)
    log_start(run, args, model, validation.bicubic, images=len(pool.images))

    def step() -> dict[str, torch.Tensor]:
        """The generator's step, judged by a fixed critic, then the critic's step."""
        lr, hr = next(batches)
        model.train()
        critic.requires_grad_(False)
        losses = criteria_losses(model, critic, lr, hr, args.precision)
        losses["grad_norm"] = gradient_step(losses["total"], [optimizer], model.parameters(), args.clip_grad)
        critic.requires_grad_(True)
        critic_optimizer.zero_grad(set_to_none=True)
        losses["critic"] = relativistic(critic(hr), critic(losses.pop("fake")), fake_is_real=False)
        losses["critic"].backward()
        critic_optimizer.step()
        return losses

    return train_loop(run, args, step, [optimizer, critic_optimizer], lambda: log_validation(run, validation, model),
                      parts, "ccl", model)
