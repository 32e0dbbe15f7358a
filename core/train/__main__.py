"""python -m core.train kdsr|cmdsr|realworld|mmrealsr|ccl|face_restorer|metaf2n [--config lite] [--minutes N | --steps N] [--out DIR] [--resume | --init RUN_DIR]"""

import argparse
from pathlib import Path

from core.train import ccl, cmdsr, face_restorer, kdsr, metaf2n, mmrealsr, realworld
from core.train.run import bf16_supported

RECIPES = {"kdsr": kdsr, "cmdsr": cmdsr, "realworld": realworld, "mmrealsr": mmrealsr, "ccl": ccl,
           "face_restorer": face_restorer, "metaf2n": metaf2n}
DEFAULTS = {
    "kdsr": {"batch": 16, "patch": 32, "lr": 4e-4},
    "cmdsr": {"patch": 32, "lr": 4e-4},
    "realworld": {"batch": 8, "patch": 32, "lr": 2e-4},
    "mmrealsr": {"batch": 2, "patch": 32, "lr": 2e-4},
    "ccl": {"batch": 8, "patch": 32, "lr": 1e-4},
    "face_restorer": {"batch": 8, "patch": 32, "lr": 2e-4},
    "metaf2n": {"patch": 32, "lr": 3e-5},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--config", default="lite", help="architecture configuration (default: lite)")
    parser.add_argument("--minutes", type=float, help="training budget in wall-clock minutes")
    parser.add_argument("--steps", type=int, help="training budget in optimizer steps")
    parser.add_argument("--out", type=Path, help="run folder (default: train_runs/<recipe>_<config>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("--init", type=Path,
                        help="start from a finished run folder's weights (a warm restart with a new budget); "
                             "realworld: also a weights file, e.g. the models folder's realesrgan_official.safetensors")
    parser.add_argument("--new-encoders", action="store_true",
                        help="with --init: keep the run's SR net, train new encoders (KDSR: all phases; CMDSR: a new ConditionNet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="forward-pass precision (auto: bf16 where the CPU has native bf16, else fp32)")
    parser.add_argument("--lr", type=float, help="peak learning rate (cosine decay)")
    parser.add_argument("--warmup-steps", type=int, default=0,
                        help="ramp the learning rate up linearly over the first N steps (for a warm "
                             "restart with --init: a fresh optimizer otherwise knocks the net back)")
    parser.add_argument("--batch", type=int, help="KDSR, realworld, ccl: patches per step; mmrealsr: HR patches per step (5 LR versions each)")
    parser.add_argument("--patch", type=int, help="LR patch size (HR = 4x)")
    parser.add_argument("--tasks", type=int, default=4, help="CMDSR, MetaF2N: tasks per step")
    parser.add_argument("--queries", type=int, default=4, help="CMDSR, MetaF2N: query patches per task")
    parser.add_argument("--inner-steps", type=int, default=1,
                        help="MetaF2N: SGD steps of the inner loop (the paper: 1)")
    parser.add_argument("--restorer", type=Path,
                        help="MetaF2N: face restorer weights for the inner targets (default: the installed "
                             "face_restorer_lite, else the HR faces)")
    parser.add_argument("--support-size", type=int, default=20, help="CMDSR: patches per support set")
    parser.add_argument("--region", type=int, default=320, help="CMDSR: HR side of a task's region")
    parser.add_argument("--condition-every", type=int, default=4,
                        help="CMDSR: update the ConditionNet every N steps")
    parser.add_argument("--contrast-weight", type=float, default=0.1,
                        help="CMDSR: weight of the task-contrastive loss against L1")
    parser.add_argument("--degradation-weight", type=float, default=0.0,
                        help="weight of a loss that reads blur width and noise level off the degradation vector "
                             "(CMDSR: the task vector; KDSR: the teacher's IDR)")
    parser.add_argument("--clip-grad", type=float,
                        help="scale the gradients down to this global L2 norm (a guard against "
                             "a run collapsing; the norm is logged either way)")
    parser.add_argument("--loader-workers", type=int, default=1,
                        help="realworld, mmrealsr, ccl: processes that run the degradation chain (0: in the training process)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="keep an exponential moving average of the weights (e.g. 0.999, as Real-ESRGAN); "
                             "validation and the weights file use it (default 0: none)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--val-minutes", type=float, default=5.0)
    parser.add_argument("--val-steps", type=int, help="validate every N steps instead of by time")
    parser.add_argument("--log-every", type=int, default=40)
    args = parser.parse_args(argv)
    if args.minutes is None and args.steps is None:
        parser.error("give a budget: --minutes N or --steps N")
    if args.inner_steps < 1:
        parser.error("--inner-steps must be at least 1")
    for key, value in DEFAULTS[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.precision == "auto":
        args.precision = "bf16" if bf16_supported() else "fp32"
    if args.out is None:
        args.out = Path("train_runs") / f"{args.recipe}_{args.config}"
    return args


def main(argv=None):
    args = parse_args(argv)
    RECIPES[args.recipe].train(args)


if __name__ == "__main__":
    main()
