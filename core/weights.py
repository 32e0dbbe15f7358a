"""The weights store: the bundled files in resources/weights/ (checked against manifest.json) and
the user's models folder, where official checkpoints are recognised by their keys and shapes.

Loading never runs pickled code: safetensors, or `torch.load(weights_only=True)`. Loading is
strict: a file that does not fit the architecture is refused with an error naming the keys that
are missing, unexpected or of the wrong shape.
"""

import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from functools import lru_cache, cache
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as load_safetensors, save_file as save_safetensors

from protocol.files import atomic_write

from .archs import ARCHS, get_arch, meta_device
from .errors import WeightsError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "resources" / "weights"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
# Containers official and community checkpoints wrap their state dict in, in order of
# preference (BasicSR keeps the EMA weights beside the raw ones; the others are spandrel's list).
CONTAINER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")
MAX_LISTED_KEYS = 5

def models_dir() -> Path:
    """The user's models folder: $BLIND_UPSCALE_MODELS, else <app data>/blind-upscale/models."""
    if os.environ.get("BLIND_UPSCALE_MODELS"):
        return Path(os.environ["BLIND_UPSCALE_MODELS"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "blind-upscale" / "models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime)."""
    info = path.stat()
    return _cached_sha256(str(path), info.st_size, info.st_mtime_ns)


# ---------------------------------------------------------------- reading checkpoints

def _torch_load(path: Path, mmap: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as err:
        # Legacy (non-zip) files cannot be memory-mapped; read them normally.
        if mmap and "mmap" in str(err):
            return torch.load(path, map_location="cpu", weights_only=True)
        raise


def load_state_dict(path, mmap: bool = False) -> dict:
    """The tensors of a checkpoint file (safetensors or a PyTorch file), unwrapped from a
    container (`CONTAINER_KEYS`) and from DataParallel's `module.` or BasicSR's `netG.` prefix.
    `mmap=True` maps PyTorch zip files instead of reading them (cheap key/shape inspection)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    state: object
    if path.suffix == ".safetensors":
        try:
            state = load_safetensors(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"{path.name} is not a readable safetensors file ({err})") from err
    else:
        try:
            state = _torch_load(path, mmap)
        except Exception as err:  # torch raises many types for bad files; all mean "unreadable"
            if "Unsupported global" in str(err):
                raise WeightsError(
                    f"{path.name} was refused: it contains pickled objects other than tensors, "
                    "which could run code; use a plain state dict or a safetensors file") from err
            detail = (str(err).splitlines() or ["the file is empty" if path.stat().st_size == 0 else "no detail"])[0]
            detail = detail.split(". ")[0]  # torch adds paragraphs of advice after the first sentence
            raise WeightsError(f"{path.name} is not a readable PyTorch checkpoint "
                               f"({type(err).__name__}: {detail[:200]})") from err
    for key in CONTAINER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path.name} holds no state dict")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path.name} holds no tensors")
    for prefix in ("module.", "netG."):  # DataParallel's prefix, BasicSR's generator prefix
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def save_state_dict(state: dict, path) -> None:
    """Writes a safetensors file atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        save_safetensors({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))


# ---------------------------------------------------------------- matching keys and shapes

def native_state_dict(arch_id: str, state: dict) -> dict:
    """Applies the arch's official-name mapping, if it has one."""
    rename = get_arch(arch_id).native_state_dict
    return rename(state) if rename else state


def _list(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f" and {len(keys) - MAX_LISTED_KEYS} more" if len(keys) > MAX_LISTED_KEYS else "")


def mismatch(expected: dict, state: dict) -> str:
    """'' if `state` has exactly the keys and shapes of `expected` (key -> shape), else a sentence
    naming the missing, unexpected and shape-mismatched keys."""
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    wrong = [f"{k} {tuple(state[k].shape)} instead of {tuple(expected[k])}"
             for k in sorted(expected.keys() & state.keys())
             if tuple(state[k].shape) != tuple(expected[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_list(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_list(unexpected)})")
    if wrong:
        parts.append(f"{len(wrong)} keys with the wrong shape ({_list(wrong)})")
    return "; ".join(parts)


def load_strict(module: torch.nn.Module, state: dict, key_map=None, name: str = "the weights") -> None:
    """Loads `state` (after `key_map(state)`, if given) into `module`, refusing any mismatch."""
    if key_map is not None:
        state = key_map(state)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problem = mismatch(expected, state)
    if problem:
        raise WeightsError(f"{name} do not fit {type(module).__name__}: {problem}")
    module.load_state_dict(state, strict=True)


@cache
def _archs_digest() -> str:
    """A digest of the architecture code: stored signatures of other code are never read."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.joinpath("archs").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@cache
def signature(arch_id: str, config: str) -> dict:
    """key -> shape of an arch configuration, built on the meta device (no memory, no init) and
    kept in the models folder's cache: recognising a user's checkpoint compares it with every
    configuration, and building them all took 2-9 s of every command's model load."""
    stored = models_dir() / "cache" / f"signatures-{_archs_digest()}" / f"{arch_id}-{config}.json"
    try:
        return {k: tuple(v) for k, v in json.loads(stored.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):  # not stored yet (or damaged): build it
        pass
    with meta_device():
        module = get_arch(arch_id).build(config)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    try:
        stored.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(stored) as tmp:
            tmp.write_text(json.dumps(shapes), encoding="utf-8")
    except OSError:  # a read-only models folder: built again by the next process
        pass
    return shapes


def detect(state: dict, name: str = "the weights") -> tuple[str, str]:
    """(arch_id, config) whose keys and shapes `state` has exactly (spandrel-style detection).
    Raises WeightsError naming the nearest configuration and how it differs."""
    best: tuple[float, str, str, str] | None = None
    for arch_id in ARCHS:
        native = native_state_dict(arch_id, state)
        for config in ARCHS[arch_id].configs:
            expected = signature(arch_id, config)
            problem = mismatch(expected, native)
            if not problem:
                return arch_id, config
            shared = sum(1 for k in expected.keys() & native.keys()
                         if tuple(native[k].shape) == expected[k])
            score = shared / max(len(expected), len(native))
            if best is None or score > best[0]:
                best = (score, arch_id, config, problem)
    assert best is not None  # every arch has at least one configuration
    _, arch_id, config, problem = best
    raise WeightsError(f"{name} match no known architecture; nearest is {arch_id}:{config}, "
                       f"which differs by {problem}")


# ---------------------------------------------------------------- the two places weights live

def read_manifest() -> dict:
    """The bundled weights' manifest: file name -> {sha256, model, config, card}."""
    path = BUNDLED_DIR / "manifest.json"
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"the bundled weights' manifest {path} is damaged ({type(err).__name__}); "
                           "reinstall the plug-in") from err
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        raise WeightsError(f"the bundled weights' manifest {path} is damaged (unexpected layout); "
                           "reinstall the plug-in")
    return files


def bundled_file(model: str, config: str):
    """Path of the bundled weights of a model configuration, or None."""
    for filename, entry in read_manifest().items():
        if entry.get("model") == model and entry.get("config") == config:
            path = BUNDLED_DIR / filename
            return path if path.is_file() else None
    return None


def stored_runtime(model: str, config: str) -> tuple[str, str] | None:
    """The (backend, precision) bench/speed.py measured fastest for a bundled configuration on
    this class of CPU within the quality bound: manifest entry "runtime" -> CPU class ->
    {"backend", "precision", ...}; None when nothing was measured for it."""
    from .runtimes import cpu_class

    for entry in read_manifest().values():
        if entry.get("model") == model and entry.get("config") == config:
            choice = entry.get("runtime", {}).get(cpu_class())
            if isinstance(choice, dict) and {"backend", "precision"} <= choice.keys():
                return str(choice["backend"]), str(choice["precision"])
    return None


def read_shapes(path) -> dict:
    """key -> tensor with the right shape (meta tensors for safetensors), read without loading
    the data: enough to recognise a checkpoint."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return load_state_dict(path, mmap=True)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: torch.empty(f.get_slice(k).get_shape(), device="meta")
                    for k in f.keys()}  # noqa: SIM118 - safe_open has keys() but no __iter__
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path.name} is not a readable safetensors file ({err})") from err


@dataclass(frozen=True)
class FolderFile:
    """One checkpoint file of the user's models folder, as the scan found it."""

    path: Path
    size: int
    mtime_ns: int
    kind: tuple[str, str] | None
    """(arch_id, config) when it is one of our architectures, else None."""
    problem: str = ""
    """Why the file cannot be read at all (refused pickle, truncated, empty), else ''."""


@lru_cache(maxsize=256)
def _identify(path: str, size: int, mtime_ns: int) -> FolderFile:
    """What a user file is: one of our architectures, another readable state dict, or unreadable."""
    try:
        shapes = read_shapes(path)
    except WeightsError as err:
        return FolderFile(Path(path), size, mtime_ns, None, str(err))
    try:
        return FolderFile(Path(path), size, mtime_ns, detect(shapes, Path(path).name))
    except WeightsError:
        return FolderFile(Path(path), size, mtime_ns, None)


def scan_models_folder() -> list[FolderFile]:
    """Every checkpoint file of the user's models folder, sorted by name; a file that cannot be
    read is listed with its problem and never stops the scan."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            continue
        if path.is_dir():
            continue
        try:
            info = path.stat()
        except OSError as err:  # a dangling link, a file removed meanwhile
            found.append(FolderFile(path, 0, 0, None, f"{path.name} cannot be read ({err.strerror or err})"))
            continue
        if not stat.S_ISREG(info.st_mode):  # a pipe or device would block the reader
            found.append(FolderFile(path, info.st_size, info.st_mtime_ns, None,
                                    f"{path.name} is not a regular file"))
            continue
        found.append(_identify(str(path), info.st_size, info.st_mtime_ns))
    return found


def user_checkpoints() -> dict[tuple[str, str], list[Path]]:
    """(arch_id, config) -> [paths] of the checkpoints of our architectures in the models folder."""
    found: dict[tuple[str, str], list[Path]] = {}
    for entry in scan_models_folder():
        if entry.kind:
            found.setdefault(entry.kind, []).append(entry.path)
    return found


def canonical_name(model: str, config: str) -> str:
    """The file name the project writes (and prefers) for a model configuration."""
    return f"{model}_{config}.safetensors"


def user_file(model: str, arch_id: str, config: str):
    """The user's checkpoint for a model configuration: the canonically named file if it exists,
    else the first recognised checkpoint of the model's arch and configuration, else None."""
    canonical = models_dir() / canonical_name(model, config)
    if canonical.is_file():
        return canonical
    candidates = user_checkpoints().get((arch_id, config), [])
    return candidates[0] if candidates else None


def weights_status(model: str, arch_id: str, config: str) -> str:
    """"bundled" | "user" | "missing"."""
    if bundled_file(model, config):
        return "bundled"
    if user_file(model, arch_id, config):
        return "user"
    return "missing"


def missing_weights_message(model: str, config: str, how_to_get: str = "") -> str:
    """What to put where when a configuration has no weights (`how_to_get`: the official file)."""
    hint = f" ({how_to_get})" if how_to_get else ""
    return (f"no weights for {model}:{config}: put {canonical_name(model, config)} or the "
            f"official checkpoint{hint} in {models_dir()}")


@dataclass
class LoadedWeights:
    module: torch.nn.Module  # in eval mode, on the CPU
    sha256: str
    path: Path
    source: str              # "bundled" | "user"


def load_model(model: str, arch_id: str, config: str, how_to_get: str = "") -> LoadedWeights:
    """The network (of architecture `arch_id`) of a model with its weights: bundled (sha256
    checked against the manifest) or the user's. Missing weights raise a WeightsError naming what
    to put where (`how_to_get`)."""
    path = bundled_file(model, config)
    source = "bundled"
    if path is not None:
        sha = file_sha256(path)
        if sha != read_manifest()[path.name]["sha256"]:
            raise WeightsError(f"bundled weights {path.name} are damaged (sha256 differs from "
                               "the manifest); reinstall the plug-in")
    else:
        path, source = user_file(model, arch_id, config), "user"
        if path is None:
            raise WeightsError(missing_weights_message(model, config, how_to_get))
        sha = file_sha256(path)
    module = get_arch(arch_id).build(config)
    # Bundled and canonically named files are the project's own (native names); any other file
    # is an official checkpoint and goes through the arch's official-name mapping.
    official = source == "user" and path.name != canonical_name(model, config)
    load_strict(module, load_state_dict(path),
                key_map=(lambda s: native_state_dict(arch_id, s)) if official else None,
                name=path.name)
    return LoadedWeights(module.eval(), sha, path, source)

