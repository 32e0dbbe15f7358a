"""Bundle a finished run's weights with the product:

    python -m core.train.export train_runs/kdsr_lite/kdsr_lite.safetensors kdsr lite

copies the file to resources/weights/<model>_<config>.safetensors after checking that it loads
strictly into the architecture, and records its sha256 (and model card name) in manifest.json,
keeping the other entries. The run's model card, `<model>_<config>.md` beside the weights, is
copied too. `face_restorer lite` bundles the face restorer (not an upscaler: the "restore faces"
option and MetaF2N's face targets use it)."""

import argparse
import json
import shutil
from pathlib import Path

from core import face_restore, weights
from core.archs import build
from core.registry import upscaler_class
from protocol.files import atomic_write


def export(source: Path, model: str, config: str, bundle_dir: Path = weights.BUNDLED_DIR) -> Path:
    arch = face_restore.ARCH_ID if model == face_restore.MODEL else upscaler_class(model).arch
    module = build(arch, config)
    weights.load_strict(module, weights.load_state_dict(source), name=source.name)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    target = bundle_dir / weights.canonical_name(model, config)
    with atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)
    card = source.with_name(f"{model}_{config}.md")
    if card.is_file():
        with atomic_write(bundle_dir / card.name) as tmp:
            shutil.copyfile(card, tmp)
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"files": {}}
    manifest["files"][target.name] = {"sha256": weights.sha256_file(target), "model": model,
                                      "config": config, "card": f"{model}_{config}.md"}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.train.export", description=__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("model")
    parser.add_argument("config")
    args = parser.parse_args(argv)
    target = export(args.weights, args.model, args.config)
    print(f"{target} ({weights.sha256_file(target)})")
    card = target.with_suffix(".md")
    if not card.is_file():
        print(f"no model card yet: write {card} (data, degradation, steps, measured gain over bicubic)")


if __name__ == "__main__":
    main()
