"""The inference weights of a run's latest checkpoint, to score a run while it trains:

    python -m core.train.snapshot train_runs/kdsr_lite_fresh

writes `<run>/snapshot_step<N>.safetensors` (KDSR: the student; the other recipes: the model; the
weight average instead when the run keeps one, `--ema`), which
`bench/adaptation.py --weights` and `python -m core.train.export` take like a finished run's file."""

import argparse
from pathlib import Path

import torch

from core import weights

INFERENCE_PARTS = ("student", "model")
"""Checkpoint state keys of the net the product runs (KDSR; the other recipes)."""


def snapshot(run_dir: Path) -> Path:
    payload = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    part = next((key for key in INFERENCE_PARTS if key in payload["state"]), None)
    if part is None:
        raise ValueError(f"{run_dir}: the checkpoint holds none of {', '.join(INFERENCE_PARTS)}")
    target = Path(run_dir) / f"snapshot_step{payload['step']}.safetensors"
    # a run with --ema averages the net it finishes with (KDSR: the student, the last part trained)
    weights.save_state_dict(payload.get("ema") or payload["state"][part], target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.train.snapshot", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    print(snapshot(parser.parse_args(argv).run_dir))


if __name__ == "__main__":
    main()
