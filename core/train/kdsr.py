"""KDSR recipe, as in the paper's classic setting, shrunk to a CPU budget.

Phases (fractions of the budget):
- teacher (0 .. 0.30): KD-IDE_T sees LR + pixel-unshuffled HR; L1 only;
- student warm-up (0.30 .. 0.38): student G copied from the teacher's G, E_st trained alone with
  the KD loss (KL between softmax(D'/tau) of teacher and student, tau 0.15), as the official
  aniso+noise recipe does before adding L1;
- student (0.38 .. 1): the whole student with L1 + KD; the teacher is frozen.
With `--init RUN_DIR` (a finished run) the teacher and student start from that run's weights and the
whole budget is the student phase: a warm restart of the learning rate that continues training. The
run may have had fewer IDR-DCRB blocks: the added ones start as identities (a grown net). A folder
with the student's weights but no `teacher.safetensors` (e.g. a copy of the bundled file) continues
the student with L1 alone (phase `student_l1`): without a teacher there is no KD target. With
`--new-encoders` as well, only the run's SR net is kept (for teacher and student) and all three
phases train fresh encoders: for a run whose IDR never came to depend on the input.
`idr_spread` in the log (std of the IDR across the batch) shows whether it does.
`--degradation-weight` adds, in the teacher phase, a linear read-out of (blur width, noise level)
from the teacher's IDR (a supervised signal the paper does not use; the student inherits it through
the KD loss): in a fresh run without it the student's IDR changed PSNR by under 0.02 dB.
Degradations are classic and drawn per sample: half the batch isotropic Gaussian (sigma 0.2..4,
no noise), half anisotropic (sigma 0.2..4 each axis, any angle) with AWGN sigma 0..25.
"""

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from core import degradations as deg
from core.archs import kdsr as arch
from core.train.data import PhotoPool, default_training_files
from core.train.run import (TrainingRun, gradient_step, load_deepened, log_start, mixed_precision,
                            train_loop)
from core.train.validation import SCALE, ValidationSet

Phases = tuple[tuple[str, float, float], ...]
"""(name, start, end) with start and end fractions of the run."""

PHASES: Phases = (("teacher", 0.0, 0.30), ("student_kd", 0.30, 0.38), ("student", 0.38, 1.0))
CONTINUE_PHASES: Phases = (("student", 0.0, 1.0),)
STUDENT_ONLY_PHASES: Phases = (("student_l1", 0.0, 1.0),)
TAU = 0.15
NOISE_MAX = 25.0


def phase_at(progress: float, phases: Phases = PHASES) -> tuple[str, float]:
    """(phase name, fraction through that phase)."""
    for name, start, end in phases:
        if progress < end:
            return name, (progress - start) / (end - start)
    return phases[-1][0], 1.0


def kd_loss(student_vec, teacher_vec):
    return F.kl_div(F.log_softmax(student_vec / TAU, dim=1), F.softmax(teacher_vec / TAU, dim=1),
                    reduction="batchmean")


def sample_degradations(batch: int, generator: torch.Generator) -> deg.ClassicBatch:
    half = batch // 2
    iso = deg.sample_isotropic(half, generator, sigma=(0.2, 4.0))
    aniso = deg.sample_anisotropic(batch - half, generator, sigma=(0.2, 4.0), noise=(0.0, 25.0))
    return deg.ClassicBatch(torch.cat([iso.kernels, aniso.kernels]),
                            torch.cat([iso.noise_sigma, aniso.noise_sigma]))


def train(args, pool: PhotoPool | None = None, validation: ValidationSet | None = None):
    run = TrainingRun.start(args)
    teacher, student = arch.build_teacher(args.config), arch.ARCH.build(args.config)
    # A training-only linear read-out of the teacher's IDR: (blur width, noise level)
    head = torch.nn.Linear(teacher.E.compress[0].out_features, 2) if args.degradation_weight else None
    optimizers: list[torch.optim.Optimizer] = []  # the current phase's one; the loop sets its learning rate
    phase = None
    phases: Phases = PHASES
    state = run.load_checkpoint() if args.resume else None
    if state is not None:
        teacher.load_state_dict(state["teacher"])
        student.load_state_dict(state["student"])
        if head is not None and "degradation_head" in state:
            head.load_state_dict(state["degradation_head"])
        phase = state["phase"]
        phases = tuple((name, start, end) for name, start, end in state.get("phases", PHASES))
        optimizers.append(make_optimizer(phase, teacher, student, args.lr, head))
        optimizers[0].load_state_dict(state["optimizer"])
    elif args.init is not None and args.new_encoders:
        trained = {k[2:]: v for k, v in load_file(str(args.init / f"kdsr_{args.config}.safetensors")).items()
                   if k.startswith("G.")}
        for net in (teacher, student):
            load_deepened(net.G, trained, net.G.body[0].body, "body.0.body.", "conv1")
        run.log(f"SR net initialised from {args.init}; new encoders, all phases")
    elif args.init is not None:
        nets = [(student, f"kdsr_{args.config}.safetensors")]
        has_teacher = (args.init / "teacher.safetensors").is_file()
        if has_teacher:
            nets.append((teacher, "teacher.safetensors"))
        added = [load_deepened(net, load_file(str(args.init / name)), net.G.body[0].body,
                               "G.body.0.body.", "conv1") for net, name in nets]
        phases = CONTINUE_PHASES if has_teacher else STUDENT_ONLY_PHASES
        run.log(f"initialised from {args.init}" + ("" if has_teacher else " (no teacher there: L1 only)"),
                added_blocks=len(added[0]))
        if has_teacher:  # the frozen teacher goes with the run, so that it can seed the next continuation
            run.save_weights("teacher.safetensors", teacher)
    pool = pool or PhotoPool.from_files(default_training_files(), min_size=args.patch * SCALE)
    validation = validation or ValidationSet(["iso2.0", "aniso+n10"])
    log_start(run, args, student, validation.bicubic, images=len(pool.images))

    def enter_phase() -> tuple[str, float]:
        """The phase at this point of the budget and the fraction through it. A new phase gets a
        fresh optimizer; leaving the teacher phase keeps the teacher and starts the student's G from it."""
        nonlocal phase
        name, fraction = phase_at(run.progress(), phases)
        if name != phase:
            if phase == "teacher":
                run.save_weights("teacher.safetensors", teacher)
                student.G.load_state_dict(teacher.G.state_dict())
            phase = name
            optimizers[:] = [make_optimizer(phase, teacher, student, args.lr, head)]
            run.log(f"phase {phase}")
        return name, fraction

    def step() -> dict[str, torch.Tensor]:
        hr = pool.batch(args.batch, args.patch * SCALE, run.rng)
        params = sample_degradations(args.batch, run.generator)
        lr = deg.classic_degrade(hr, params, SCALE, run.generator)
        losses = {}
        if phase == "teacher":
            teacher.train()
            with mixed_precision(args.precision):
                idr, _ = teacher.estimate(lr, hr)
                sr = teacher.G(lr, idr)
            loss = losses["l1"] = F.l1_loss(sr.float(), hr)
            losses["idr_spread"] = idr.detach().float().std(dim=0).mean()
            if head is not None:
                targets = deg.degradation_targets(params, NOISE_MAX)
                losses["degradation"] = F.mse_loss(head(idr.float()), targets)
                loss = loss + args.degradation_weight * losses["degradation"]
        else:
            teacher.eval()
            student.train()
            with mixed_precision(args.precision):
                teacher_vec = None
                if phase != "student_l1":
                    with torch.no_grad():
                        _, teacher_vec = teacher.estimate(lr, hr)
                idr, student_vec = student.estimate(lr)
                sr = student.upscale(lr, idr) if phase != "student_kd" else None
            losses["idr_spread"] = idr.detach().float().std(dim=0).mean()
            if teacher_vec is not None:
                loss = losses["kd"] = kd_loss(student_vec.float(), teacher_vec.float())
                if sr is not None:
                    losses["l1"] = F.l1_loss(sr.float(), hr)
                    loss = loss + losses["l1"]
            else:  # student_l1: no teacher, so an SR loss
                assert sr is not None
                loss = losses["l1"] = F.l1_loss(sr.float(), hr)
        losses["grad_norm"] = gradient_step(loss, optimizers, [p for group in optimizers[0].param_groups
                                                               for p in group["params"]], args.clip_grad)
        return losses

    def checkpoint() -> dict:
        state = {"phases": [list(p) for p in phases], "phase": phase,
                 "teacher": teacher.state_dict(), "student": student.state_dict(),
                 "optimizer": optimizers[0].state_dict()}
        if head is not None:
            state["degradation_head"] = head.state_dict()
        return state

    return train_loop(run, args, step, optimizers, lambda: validate(run, validation, phase, teacher, student),
                      checkpoint, "kdsr", student, schedule=enter_phase)


def make_optimizer(phase, teacher, student, lr, head=None):
    params = {"teacher": teacher.parameters(), "student_kd": student.E_st.parameters(),
              "student": student.parameters(), "student_l1": student.parameters()}[phase]
    params = [p for p in params if p.requires_grad]
    if phase == "teacher" and head is not None:
        params += list(head.parameters())
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))


def validate(run, validation, phase, teacher, student):
    teacher.eval()
    student.eval()
    if phase == "teacher":
        scores = validation.evaluate(lambda lr, hr: teacher(lr, hr))
        run.log("val teacher (sees HR)", **{f"psnr_{k}": v for k, v in scores.items()})
    else:
        scores = validation.evaluate(lambda lr, hr: torch.cat([student(x[None]) for x in lr]))
        run.log("val student", **{f"psnr_{k}": v for k, v in scores.items()},
                **{f"gain_{k}": v - validation.bicubic[k] for k, v in scores.items()})
