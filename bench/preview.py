"""Live preview latency through the engine process, as the panel asks for it.

    .venv/bin/python bench/preview.py [--model kdsr] [--layer 768x512] [--crop 40,256] [--repeats 5]
                                      [--threads 1] [--backend auto] [--precision auto]

Starts `python -m core serve` the way the plug-in does (plugin/engine_process.py), then for each
crop side sends the panel's preview request (ui/request.py `preview_request`: the whole layer, the
crop as `region`, untiled) once to warm the model and `--repeats` times more, and prints the median
wall time from submit to the result's pixels. The status is asked every 5 ms here, so the time is
the engine's; the panel's own status poll (ui/job_follower.py, POLL_MS) adds up to one interval on
top. The layer is a gradient with texture, made here (no data files needed). The panel sends no
runtime, so the engine runs `auto` (the measured choice for this CPU); `--backend`/`--precision`
time another path against it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def layer_image(width: int, height: int):
    """An 8-bit RGB RawImage with edges and texture (the network's time does not depend on it)."""
    import numpy as np

    from protocol.raw_image import RawImage

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 7.0) * np.cos(y / 5.0)], axis=-1)
    pixels = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
    return RawImage(width, height, 3, "u8", pixels.tobytes())


def preview_seconds(client, image, request: dict) -> float:
    """Submit to result, asking the status every 5 ms."""
    from protocol.client import run_job

    started = time.perf_counter()
    run_job(client, image, request, interval=0.005)
    return time.perf_counter() - started


def measure(client, image, model: str, crop: int, repeats: int, backend: str = "auto",
            precision: str = "auto") -> dict:
    from protocol.host import Rect
    from ui.request import RequestState, preview_request

    models = {m["id"]: m for m in client.models()}
    box = Rect((image.width - crop) // 2, (image.height - crop) // 2, crop, crop)
    request = preview_request(RequestState(model=models[model], layer_size=(image.width, image.height)), box)
    request.update(backend=backend, precision=precision)
    first = preview_seconds(client, image, request)
    times = [preview_seconds(client, image, request) for _ in range(repeats)]
    return {"model": model, "runtime": f"{backend}:{precision}", "crop": crop,
            "layer": f"{image.width}x{image.height}", "first_s": round(first, 3),
            "warm_median_s": round(statistics.median(times), 3), "warm_min_s": round(min(times), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="kdsr")
    parser.add_argument("--layer", default="768x512", help="WIDTHxHEIGHT of the layer sent")
    parser.add_argument("--crop", default="40,256", help="preview crop sides in layer pixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)
    from plugin.engine_process import EngineProcess

    width, height = (int(v) for v in args.layer.split("x"))
    image = layer_image(width, height)
    process = EngineProcess(sys.executable, str(ROOT), threads=args.threads)
    client = process.start()
    try:
        for crop in (int(c) for c in args.crop.split(",")):
            print(json.dumps(measure(client, image, args.model, crop, args.repeats, args.backend, args.precision)),
                  flush=True)
    finally:
        process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
