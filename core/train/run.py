"""What every recipe shares: the budget (minutes or steps), cosine learning rates per phase,
checkpoints with optimizer and RNG state, the log file, a clean stop on SIGTERM/SIGINT, and the
training loop itself (`train_loop`): a recipe builds its nets, optimizers and data, says what one
step is, and leaves the schedule, logging, validation and checkpoints to the loop."""

import contextlib
import json
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import weights
from protocol.files import atomic_write


class TrainingRun:
    """Tracks progress through a budget and owns the run folder.

    Progress is a fraction 0..1 of the budget (wall-clock seconds of training, or steps when a
    step budget is given); recipes split it into phases, e.g. teacher 0..0.3, student 0.3..1."""

    def __init__(self, out_dir: Path, minutes: float | None, steps: int | None,
                 checkpoint_minutes: float = 5.0, val_minutes: float = 5.0, val_steps: int | None = None,
                 seed: int = 0):
        if minutes is None and steps is None:
            raise ValueError("give a budget: --minutes or --steps")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.budget_seconds = minutes * 60.0 if minutes is not None else None
        self.budget_steps = steps
        self.checkpoint_seconds = checkpoint_minutes * 60.0
        self.val_seconds = val_minutes * 60.0
        self.val_steps = val_steps
        self.step = 0
        self.elapsed = 0.0            # training seconds accumulated over all sessions of the run
        self._session_start = time.monotonic()
        self._elapsed_at_session_start = 0.0
        self._last_checkpoint = 0.0
        self._last_val = 0.0
        self.stop_requested = False
        self.resumed_average: dict | None = None  # the weight average a checkpoint held, if any
        self._log = open(self.out_dir / "log.txt", "a", buffering=1)  # noqa: SIM115 - kept open, close() closes it
        self._previous_handlers = {sig: signal.signal(sig, self._request_stop)
                                   for sig in (signal.SIGTERM, signal.SIGINT)}
        # the recipe's random draws: numpy for crops, the torch generator for degradations;
        # seeded here, before the recipe builds (and so initialises) its nets
        self.rng, self.generator = seed_everything(seed)

    @classmethod
    def start(cls, args) -> "TrainingRun":
        """The run the command line (`core.train.__main__`) describes, on `args.threads` threads."""
        torch.set_num_threads(args.threads)
        return cls(args.out, args.minutes, args.steps, args.checkpoint_minutes, args.val_minutes,
                   args.val_steps, args.seed)

    def _request_stop(self, signum, frame):
        self.stop_requested = True

    def close(self):
        """Restores the signal handlers and closes the log."""
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._log.close()

    def log(self, message: str, **values):
        parts = [f"step {self.step}", f"t {self.elapsed:.0f}s", message]
        parts += [f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()]
        line = " | ".join(parts)
        print(line, flush=True)
        self._log.write(line + "\n")

    def tick(self):
        """Call once per finished optimizer step."""
        self.step += 1
        self.elapsed = self._elapsed_at_session_start + time.monotonic() - self._session_start

    def progress(self) -> float:
        if self.budget_steps is not None:
            return min(self.step / self.budget_steps, 1.0)
        return min(self.elapsed / self.budget_seconds, 1.0)

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def checkpoint_due(self) -> bool:
        return self.elapsed - self._last_checkpoint >= self.checkpoint_seconds

    def validation_due(self) -> bool:
        if self.val_steps is not None:
            return self.step % self.val_steps == 0
        if self.elapsed - self._last_val >= self.val_seconds:
            self._last_val = self.elapsed
            return True
        return False

    # --- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self, state: dict, average: dict | None = None):
        """`state`: the recipe's nets and optimizers; `average`: the weight average (`--ema`)."""
        payload = {
            "state": state,
            "step": self.step,
            "elapsed": self.elapsed,
            "last_val": self._last_val,
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "torch_generator": self.generator.get_state(),
            "torch_global": torch.get_rng_state(),
            "python_random": json.dumps(random.getstate()),
        }
        if average is not None:
            payload["ema"] = average
        with atomic_write(self.checkpoint_path) as tmp:
            torch.save(payload, tmp)
        self._last_checkpoint = self.elapsed
        self.log("checkpoint saved")

    def load_checkpoint(self) -> dict | None:
        """Restores counters and RNG states; returns the recipe's state (or None if no checkpoint)."""
        if not self.checkpoint_path.exists():
            return None
        payload = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self.step = payload["step"]
        self.elapsed = self._elapsed_at_session_start = payload["elapsed"]
        self._session_start = time.monotonic()
        self._last_checkpoint = self.elapsed
        self._last_val = payload["last_val"]
        self.rng.bit_generator.state = json.loads(payload["numpy_rng"])
        self.generator.set_state(payload["torch_generator"])
        torch.set_rng_state(payload["torch_global"])
        state = json.loads(payload["python_random"])
        random.setstate((state[0], tuple(state[1]), state[2]))
        self.resumed_average = payload.get("ema")
        self.log("resumed from checkpoint")
        return payload["state"]

    def finish(self, validate, arch: str, config: str, module: torch.nn.Module):
        """End of the loop: at the end of the budget, a last validation and the weights file
        `<arch>_<config>.safetensors`; otherwise a note that `--resume` continues. Closes the run."""
        if self.finished():
            validate()
            self.save_weights(f"{arch}_{config}.safetensors", module)
            self.log("finished")
        else:
            self.log("stopped before the end of the budget; continue with --resume")
        self.close()
        return self

    def save_weights(self, name: str, module: torch.nn.Module):
        weights.save_state_dict(module.state_dict(), self.out_dir / name)
        self.log(f"weights written to {self.out_dir / name}")


Parts = Mapping[str, torch.nn.Module | torch.optim.Optimizer]
"""Nets and optimizers by their key in a checkpoint's state."""


def resume(run: TrainingRun, args, parts: Parts, optional: tuple[str, ...] = ()) -> bool:
    """With `--resume` and a checkpoint in the run folder, loads `parts` from it (`optional` ones
    may be missing, in a checkpoint written before they existed). Whether it resumed."""
    state = run.load_checkpoint() if args.resume else None
    if state is None:
        return False
    for key, part in parts.items():
        if key in state or key not in optional:
            part.load_state_dict(state[key])
    return True


def start_one_net(args, build: Callable[[str], Any]) -> tuple[TrainingRun, Any, torch.optim.Adam, bool]:
    """The start of a recipe that trains one net (checkpoint keys `model` and `optimizer`): the
    run, the net `build(args.config)`, its Adam (betas 0.9, 0.99) and whether both were resumed."""
    run = TrainingRun.start(args)
    model = build(args.config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    return run, model, optimizer, resume(run, args, {"model": model, "optimizer": optimizer})


def log_start(run: TrainingRun, args, model: torch.nn.Module, bicubic: dict[str, float], **counts):
    """The run's first line: configuration, precision, the size of `model`, the data (`counts`)
    and the validation's bicubic PSNR per setting, the floor its scores are read against."""
    run.log("start", config=args.config, precision=args.precision, params=sum(p.numel() for p in model.parameters()),
            **counts, **{f"bicubic_{k}": v for k, v in bicubic.items()})


def gradient_step(loss: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer], params,
                  max_norm: float | None) -> torch.Tensor:
    """Backpropagates `loss` and steps `optimizers`, the gradients of `params` clipped to
    `max_norm`; returns their norm before clipping."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_gradients(params, max_norm)
    for optimizer in optimizers:
        optimizer.step()
    return grad_norm


class WeightAverage:
    """An exponential moving average of a net's weights (`--ema DECAY`; Real-ESRGAN keeps one at
    0.999). At a high learning rate the weights jitter from step to step: the average scores
    higher, so it is what validation measures and what the run's weights file holds."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        self.state = state or {key: value.detach().clone() for key, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.state[key].mul_(self.decay).add_(value, alpha=1 - self.decay)
            else:
                self.state[key].copy_(value)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """`model` holds the average inside the block, its own weights again after it."""
        own = {key: value.detach().clone() for key, value in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(own)


def train_loop(run: TrainingRun, args, step: Callable[[], dict[str, Any]], optimizers: Sequence[torch.optim.Optimizer],
               validate: Callable[[], object], checkpoint: Parts | Callable[[], dict], weights_id: str,
               model: torch.nn.Module, schedule: Callable[[], tuple[str, float]] | None = None,
               last_validation: Callable[[], object] | None = None) -> TrainingRun:
    """Steps until the budget is spent or a stop is requested, then saves and finishes the run.

    Before each `step()` (one optimizer step; returns the values to log, tensors or floats) the
    learning rate of `optimizers` is set on the cosine at `schedule()`'s fraction, which also
    names the step in the log (default: one cosine over the whole budget, named `train`). Every
    `--log-every` steps a line of those values, `validate()` when due, a checkpoint of
    `checkpoint` (nets and optimizers, or a function returning the recipe's state) when due and
    at the end. At the end of the budget, `last_validation()` (default `validate`) and the
    weights `<weights_id>_<config>.safetensors` of `model`. With `--ema DECAY` > 0 a
    `WeightAverage` of `model` is kept (in the checkpoint too; a run resumed without one starts
    it from the weights), and validation and the weights file use it."""
    decay = getattr(args, "ema", 0.0)
    average = WeightAverage(model, decay, run.resumed_average) if decay > 0 else None

    def averaged():
        return average.applied(model) if average is not None else contextlib.nullcontext()

    def save():
        state = checkpoint() if callable(checkpoint) else {key: part.state_dict() for key, part in checkpoint.items()}
        run.save_checkpoint(state, average.state if average is not None else None)

    while not run.finished() and not run.stop_requested:
        name, fraction = schedule() if schedule is not None else ("train", run.progress())
        lr = cosine_lr(args.lr, fraction, run.step, args.warmup_steps)
        for optimizer in optimizers:
            set_lr(optimizer, lr)
        values = step()
        run.tick()
        if average is not None:
            average.update(model)

        if run.step % args.log_every == 0:
            run.log(name, lr=lr, **{key: float(value.detach() if isinstance(value, torch.Tensor) else value)
                                    for key, value in values.items()})
        if run.validation_due():
            with averaged():
                validate()
        if run.checkpoint_due():
            save()

    save()
    with averaged():
        return run.finish(last_validation or validate, weights_id, args.config, model)


def load_deepened(module: torch.nn.Module, state: dict[str, torch.Tensor], blocks: torch.nn.Module,
                  prefix: str, last_conv: str, parts_elsewhere=lambda block: ()) -> list[int]:
    """Loads weights trained with fewer residual blocks into a deeper configuration (a warm
    restart that grows the net). The blocks the state lacks start as identities, their branch's
    last conv zeroed, so the deeper net first computes exactly what the trained one did.

    `prefix` names the blocks in the state dict (`<prefix><i>.`); `parts_elsewhere(i)` gives the
    key prefixes of block i's parts that live outside it, which may be absent for an added block.
    Returns the added blocks."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    trained = {int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)}
    added = [i for i in range(len(blocks)) if i not in trained]
    allowed = tuple(p for i in added for p in (f"{prefix}{i}.", *parts_elsewhere(i)))
    stray = [key for key in missing if not key.startswith(allowed)]
    if unexpected or stray or not trained:
        raise ValueError(f"weights do not fit this configuration: lacking {stray[:3]}, "
                         f"unexpected {unexpected[:3]}")
    for i in added:
        conv = getattr(blocks[i], last_conv)
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    return added


def warm_start(model: torch.nn.Module, run_dir: Path, model_id: str, config: str,
               added_parts: tuple[str, ...]) -> str:
    """Loads a finished run of this model (`<model_id>_<config>.safetensors`) strictly, or else
    the shared real-world trunk (`rrdbnet_<config>.safetensors`, core.train.realworld), which
    must fill every part of the model but `added_parts` (key prefixes). Says which it loaded."""
    from safetensors.torch import load_file

    own = Path(run_dir) / f"{model_id}_{config}.safetensors"
    if own.is_file():
        model.load_state_dict(load_file(str(own)))
        return f"a finished {model_id} run"
    missing, unexpected = model.load_state_dict(load_file(str(Path(run_dir) / f"rrdbnet_{config}.safetensors")),
                                                strict=False)
    stray = [key for key in missing if not key.startswith(added_parts)]
    if unexpected or stray:
        raise ValueError(f"the trunk in {run_dir} does not fit {model_id} {config}: lacking {stray[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return "the shared real-world trunk"


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 / AMX); where it does,
    mixed precision trains ~1.8x faster with the same fp32 master weights."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def mixed_precision(precision: str):
    """Context for a training forward pass: bfloat16 autocast for `bf16`, plain fp32 otherwise.
    Losses are computed outside it, in fp32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def cosine_lr(base: float, fraction: float, step: int = 0, warmup_steps: int = 0,
              floor: float = 0.02) -> float:
    """Cosine decay from `base` to `floor * base` as `fraction` goes 0..1, ramped up linearly over
    the first `warmup_steps` steps: a fresh Adam moves every weight by about lr per step whatever
    its gradient, which knocks a warm-started net back before its moment estimates settle."""
    fraction = min(max(fraction, 0.0), 1.0)
    ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return float(ramp * base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * fraction))))


def clip_gradients(params, max_norm: float | None) -> torch.Tensor:
    """The global L2 norm of the gradients, which the recipes log (a run drifting towards
    collapse shows there), after scaling them down to `max_norm` when it is given."""
    return torch.nn.utils.clip_grad_norm_(list(params), max_norm or float("inf"))


def set_lr(optimizer: torch.optim.Optimizer, lr: float):
    for group in optimizer.param_groups:
        group["lr"] = lr


def seed_everything(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    return np.random.default_rng(seed), generator
