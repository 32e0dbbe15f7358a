"""A run's resume state (`checkpoint.pt`: weights, optimizer moments, step, RNG states) as files
to commit, so a schedule that spans sessions survives a new machine (train_runs/ does not):

    python -m core.train.resume_files pack train_runs/realworld_official resources/training/realworld_official
    python -m core.train.resume_files unpack resources/training/realworld_official train_runs/realworld_official

then `python -m core.train ... --resume --out train_runs/realworld_official` continues the schedule.

Tensors go to `resume.safetensors` (no pickle), everything else to `resume.json`. Adam's moments
are kept in bfloat16, a third of a full-size checkpoint's bytes: they are running averages that
the next steps overwrite, while the weights stay float32 (a fine-tuning step is far below
bfloat16's resolution of a weight).
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from protocol.files import atomic_write

TENSORS, SKELETON = "resume.safetensors", "resume.json"
MOMENTS = ("exp_avg", "exp_avg_sq")


def _flatten(value, path: str, tensors: dict[str, torch.Tensor]):
    """The JSON skeleton of `value`; its tensors are moved into `tensors` under their path."""
    if isinstance(value, torch.Tensor):
        stored = value.detach().contiguous().clone()
        if path.rsplit(".", 1)[-1] in MOMENTS and stored.dtype == torch.float32:
            stored = stored.to(torch.bfloat16)
        tensors[path] = stored
        return {"tensor": path, "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, dict):
        return {"dict": [[key, _flatten(item, f"{path}.{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_flatten(item, f"{path}.{i}", tensors) for i, item in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"{path}: cannot store a {type(value).__name__} in resume files")


def _unflatten(node, tensors: dict[str, torch.Tensor]):
    if "tensor" in node:
        return tensors[node["tensor"]].to(getattr(torch, node["dtype"]))
    if "dict" in node:
        return {key: _unflatten(item, tensors) for key, item in node["dict"]}
    if "list" in node:
        return [_unflatten(item, tensors) for item in node["list"]]
    if "tuple" in node:
        return tuple(_unflatten(item, tensors) for item in node["tuple"])
    return node["value"]


def pack(run_dir: Path, dest: Path) -> list[Path]:
    """Writes the two resume files of `run_dir`'s checkpoint into `dest`."""
    payload = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(payload, "checkpoint", tensors)
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    with atomic_write(dest / SKELETON) as tmp:
        Path(tmp).write_text(json.dumps(skeleton))
    return [dest / TENSORS, dest / SKELETON]


def unpack(source: Path, run_dir: Path) -> Path:
    """Rebuilds `run_dir/checkpoint.pt` from the resume files in `source`."""
    skeleton = json.loads((Path(source) / SKELETON).read_text())
    payload = _unflatten(skeleton, load_file(str(Path(source) / TENSORS)))
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "checkpoint.pt"
    with atomic_write(target) as tmp:
        torch.save(payload, tmp)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.train.resume_files", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="checkpoint.pt of RUN_DIR -> resume files in DEST")
    packing.add_argument("run_dir", type=Path)
    packing.add_argument("dest", type=Path)
    unpacking = commands.add_parser("unpack", help="resume files in SOURCE -> RUN_DIR/checkpoint.pt")
    unpacking.add_argument("source", type=Path)
    unpacking.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        for path in pack(args.run_dir, args.dest):
            print(path)
    else:
        print(unpack(args.source, args.run_dir))


if __name__ == "__main__":
    main()
