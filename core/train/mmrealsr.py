"""MM-RealSR recipe (the paper's Net stage), shrunk to a CPU budget.

Each HR patch yields five LR versions through the coupled synthesis of
`core.degradations.coupled_degrade`: origin, more blur (same noise/JPEG), more noise and harsher
JPEG (same blur), the strongest chain (score 1) and the clean image (score 0); a quarter of the
draws have no JPEG (`core.degradations.NO_JPEG_SHARE`), so plain sensor noise is seen too. DE-Net scores every
version, with the official Net stage's terms: 0.01 x margin ranking (blur: more-blur above origin;
noise: more-noise above origin; margin 0.05) + an anchor term (MSE of the anchors' scores to 1 and
0). The SR net learns L1 on all five outputs. The log carries the score gaps (`gap_blur`,
`gap_noise`): the known failure is a gap stuck at zero, a score collapsed to a constant (official
issue #17).

Deviations: plain GT instead of USM-sharpened GT (this is a PSNR-oriented model), no EMA and no
pair queue; DE-Net reads each 32x32 LR patch, not a whole image. And the dials are taught by what
each version really is: in training the SR net is modulated by the chain's own (blur, noise)
strengths (`core.degradations.chain_strengths`: kernel, noise and JPEG levels within the chain's
ranges; the anchors are exactly 1 and 0 as in the paper), and DE-Net also regresses them (MSE,
weight 0.01), detached from the SR loss. Measured on the paper's coupling (SR modulated by DE-Net's
own scores) at our budget, the dials did not act: after 1,700 steps the blur dial moved the
output's high-frequency energy by 3 % between 0 and 1, and the noise score *fell* as Gaussian noise
rose (0.63 clean, 0.47 at noise 30); scores computed from the same 32x32 patch the SR net sees
carry nothing it cannot find itself, so it learns to ignore them. With the L1 gradient through
DE-Net, as in the paper, its noise sigmoid also saturated within 900 steps (noise gap 1e-18).

`--init RUN_DIR` starts from the shared real-world trunk (`rrdbnet_<config>.safetensors`, see
`core.train.realworld`), the modulations near identity and a fresh DE-Net, or continues a finished
MM-RealSR run (`mmrealsr_<config>.safetensors`). `--resume` continues this run's schedule.
"""

import torch
from torch.nn import functional as F

from core import degradations as deg
from core.archs import mmrealsr as arch
from core.train.data import PhotoPool
from core.train.realworld import trunk_data
from core.train.run import gradient_step, log_start, mixed_precision, start_one_net, train_loop, warm_start
from core.train.validation import ValidationSet, log_validation

RANKING_WEIGHT = 0.01
MARGIN = 0.05
ANCHOR_WEIGHT = 1e-3
STRENGTH_WEIGHT = 0.01
ORIGIN, MORE_BLUR, MORE_NOISE, STRONGEST, CLEAN = range(len(deg.COUPLED_NAMES))
BLUR, NOISE = arch.SCORES.index("blur"), arch.SCORES.index("noise")


def coupled_losses(model: arch.MMRealSRNet, lr: torch.Tensor, strengths: torch.Tensor, hr: torch.Tensor,
                   precision: str) -> dict:
    """lr: 5 x B x 3 x h x w and strengths: 5 x B x 2 (the order of COUPLED_NAMES), hr: B x 3 x H x W."""
    versions, batch = lr.shape[:2]
    flat = lr.flatten(0, 1)
    with mixed_precision(precision):
        scores = model.estimate(flat).float().view(versions, batch, 2)
        sr = model.upscale(flat, strengths.flatten(0, 1))
    losses = {"l1": F.l1_loss(sr.float(), hr.repeat(versions, 1, 1, 1))}
    below = -torch.ones(batch)
    losses["rank_blur"] = F.margin_ranking_loss(scores[ORIGIN, :, BLUR], scores[MORE_BLUR, :, BLUR], below, margin=MARGIN)
    losses["rank_noise"] = F.margin_ranking_loss(scores[ORIGIN, :, NOISE], scores[MORE_NOISE, :, NOISE], below,
                                                 margin=MARGIN)
    losses["anchor"] = F.mse_loss(scores[CLEAN], torch.zeros_like(scores[CLEAN])) + \
        F.mse_loss(scores[STRONGEST], torch.ones_like(scores[STRONGEST]))
    losses["strength"] = F.mse_loss(scores, strengths)
    losses["total"] = (losses["l1"] + RANKING_WEIGHT * (losses["rank_blur"] + losses["rank_noise"])
                       + ANCHOR_WEIGHT * losses["anchor"] + STRENGTH_WEIGHT * losses["strength"])
    scores = scores.detach()
    losses["gap_blur"] = (scores[MORE_BLUR, :, BLUR] - scores[ORIGIN, :, BLUR]).mean()
    losses["gap_noise"] = (scores[MORE_NOISE, :, NOISE] - scores[ORIGIN, :, NOISE]).mean()
    losses["clean"] = scores[CLEAN].mean()
    losses["strongest"] = scores[STRONGEST].mean()
    losses["score_error"] = (scores - strengths).abs().mean()
    return losses


def train(args, pool: PhotoPool | None = None, validation: ValidationSet | None = None):
    run, model, optimizer, resumed = start_one_net(args, arch.ARCH.build)
    if not resumed and args.init is not None:
        source = warm_start(model, args.init, "mmrealsr", args.config, ("am_list.", "de_net.", "dd_embed."))
        run.log(f"initialised from {source} in {args.init}")
    pool, validation, batches = trunk_data(run, args, pool, validation, deg.coupled_degrade)
    log_start(run, args, model, validation.bicubic, images=len(pool.images))

    def step() -> dict[str, torch.Tensor]:
        (lr, strengths), hr = next(batches)
        model.train()
        losses = coupled_losses(model, lr, strengths, hr, args.precision)
        losses["grad_norm"] = gradient_step(losses["total"], [optimizer], model.parameters(), args.clip_grad)
        return losses

    return train_loop(run, args, step, [optimizer], lambda: log_validation(run, validation, model),
                      {"model": model, "optimizer": optimizer}, "mmrealsr", model)
