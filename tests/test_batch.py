"""`python -m core batch`: folders, globs and lists, resumable, bad files reported, Ctrl-C clean,
and the same batch on a local Ray cluster giving the same files (issue 22)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import gradient_pixels
from core import cli
from core.batch import collect, run_batch, local_runner
from core.engine import UpscaleRequest
from core.image_io import Image, image_size, load_image, save_image

ROOT = Path(__file__).resolve().parents[1]
BICUBIC = ["--model", "bicubic"]


def make_inputs(folder: Path) -> dict[str, Path]:
    """Images of different sizes, channel counts and bit depths (one in a sub-folder), a corrupt
    PNG, and a text file a folder batch must ignore."""
    made = {
        "rgb8": save_image(Image(gradient_pixels(12, 10, 3), 8), folder / "rgb8.png"),
        "gray8": save_image(Image(gradient_pixels(9, 14, 1), 8), folder / "gray8.jpg"),
        "graya16": save_image(Image(gradient_pixels(11, 8, 2), 16), folder / "graya16.png"),
        "rgba16": save_image(Image(gradient_pixels(16, 13, 4), 16), folder / "sub" / "rgba16.tif"),
        "float32": save_image(Image(gradient_pixels(7, 9, 3) * 1.2, 32), folder / "sub" / "float32.tif"),
    }
    made["corrupt"] = folder / "corrupt.png"
    made["corrupt"].write_bytes(made["rgb8"].read_bytes()[:70])
    (folder / "notes.txt").write_text("not an image\n")
    return made


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batch-in")
    (folder / "sub").mkdir()
    make_inputs(folder)
    return folder


def batch(capsys, *args) -> tuple[int, list[dict], str]:
    """`python -m core batch ... --json` in this process: exit status, JSON lines, stderr."""
    status = cli.main(["batch", *map(str, args), "--json"])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def by_status(lines: list[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in lines[:-1]:
        found.setdefault(line["status"], []).append(Path(line["input"]).name)
    return {k: sorted(v) for k, v in found.items()}


GOOD = sorted(["float32.tif", "graya16.png", "gray8.jpg", "rgb8.png", "rgba16.tif"])


@pytest.fixture(scope="module")
def single_process(inputs, tmp_path_factory) -> Path:
    """The reference: the single-process batch's outputs."""
    out = tmp_path_factory.mktemp("batch-out")
    assert cli.main(["batch", str(inputs), str(out), *BICUBIC, "--recursive", "--json"]) == 1
    return out


def test_batch_writes_what_upscale_writes_and_reports_the_corrupt_file(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    status, lines, err = batch(capsys, inputs, out, *BICUBIC, "--recursive")
    assert status == 1  # one image failed
    assert by_status(lines) == {"done": GOOD, "failed": ["corrupt.png"]}
    failed = next(line for line in lines if line.get("status") == "failed")
    assert failed["input"] == str(inputs / "corrupt.png") and "corrupt.png is corrupt" in failed["error"]
    assert lines[-1]["summary"] | {"seconds": 0} == {"total": 6, "done": 5, "skipped": 0, "failed": 1,
                                                     "megapixels": pytest.approx(sum(
                                                         line["megapixels"] for line in lines[:-1])),
                                                     "seconds": 0, "stopped": False}
    # The same relative paths, and byte for byte the files `upscale` writes.
    for line in lines[:-1]:
        if line["status"] == "done":
            source, target = Path(line["input"]), Path(line["output"])
            assert target == out / source.relative_to(inputs)
            alone = tmp_path / f"alone{source.suffix}"
            assert cli.main(["upscale", str(source), str(alone), *BICUBIC]) == 0
            assert target.read_bytes() == alone.read_bytes(), source.name
            w, h = image_size(source)
            assert (line["width"], line["height"]) == (4 * w, 4 * h)
    assert not (out / "corrupt.png").exists() and not (out / "notes.txt").exists()
    assert not list(out.rglob("*.part"))


def test_second_run_skips_complete_outputs_and_redoes_a_wrong_one(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    batch(capsys, inputs, out, *BICUBIC, "--recursive")
    save_image(Image(gradient_pixels(5, 5, 3), 8), out / "rgb8.png")  # not what the request makes
    status, lines, _ = batch(capsys, inputs, out, *BICUBIC, "--recursive")
    assert status == 1
    assert by_status(lines) == {"done": ["rgb8.png"], "failed": ["corrupt.png"],
                                "skipped": [n for n in GOOD if n != "rgb8.png"]}
    assert image_size(out / "rgb8.png") == (40, 48)
    _, lines, _ = batch(capsys, inputs, out, *BICUBIC, "--recursive", "--overwrite")
    assert by_status(lines) == {"done": GOOD, "failed": ["corrupt.png"]}


def test_without_failures_the_exit_status_is_zero_and_the_summary_one_line(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["batch", str(inputs), str(out), *BICUBIC, "--pattern", "*.png"])
    captured = capsys.readouterr()
    # corrupt.png matches the pattern too: only sub-folders and other types are left out
    assert status == 1 and "failed: " + str(inputs / "corrupt.png") in captured.err
    assert captured.out.startswith("2 done, 0 skipped, 1 failed of 3 in ")
    assert cli.main(["batch", str(inputs / "sub"), str(out), *BICUBIC]) == 0
    assert capsys.readouterr().out.startswith("2 done, 0 skipped, 0 failed of 2 in ")


def test_glob_and_list_file_keep_paths_relative_to_their_folder(inputs, tmp_path):
    out = tmp_path / "out"
    found = collect(str(inputs / "**" / "*.tif"), out, recursive=True)
    assert [i.target for i in found] == [out / "sub" / "float32.tif", out / "sub" / "rgba16.tif"]
    listing = tmp_path / "images.txt"
    listing.write_text(f"# scans\n{inputs / 'rgb8.png'}\n\n{inputs / 'sub' / 'rgba16.tif'}\n")
    assert [i.target for i in collect(str(listing), out)] == [out / "rgb8.png", out / "sub" / "rgba16.tif"]
    relative = inputs / "relative.txt"
    relative.write_text("sub/float32.tif\nmissing.png\n")
    try:
        items = collect(str(relative), out)
    finally:
        relative.unlink()
    assert [i.target for i in items] == [out / "missing.png", out / "sub" / "float32.tif"]


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path, capsys):
    save_image(Image(gradient_pixels(6, 6, 3), 8), tmp_path / "a.png")
    assert cli.main(["batch", str(tmp_path), str(tmp_path / "big"), *BICUBIC, "--recursive"]) == 0
    capsys.readouterr()
    assert cli.main(["batch", str(tmp_path), str(tmp_path / "big"), *BICUBIC, "--recursive"]) == 0
    assert capsys.readouterr().out.startswith("0 done, 1 skipped, 0 failed of 1 ")


@pytest.mark.parametrize("args,fragment", [
    (["{tmp}/nothing-here"], "is not a folder, an image, a list of paths or a glob pattern"),
    (["{tmp}/empty"], "no images (.jpeg, .jpg, .png, .tif, .tiff, .webp) found in"),
    (["{tmp}/empty", "--cpus-per-worker", "2"], "--cpus-per-worker and --gpus-per-worker need --ray"),
    (["{tmp}/out", "--recursive"], "is inside OUT"),  # IN = OUT: the results would replace the originals
    (["{tmp}/out/sub"], "is inside OUT"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys, args, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "out" / "sub").mkdir(parents=True)
    original = save_image(Image(gradient_pixels(6, 6, 3), 8), tmp_path / "out" / "sub" / "a.png").read_bytes()
    args = [a.format(tmp=tmp_path) for a in args]
    assert cli.main(["batch", args[0], str(tmp_path / "out"), *BICUBIC, *args[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1, err
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["sub", "a.png"]
    assert (tmp_path / "out" / "sub" / "a.png").read_bytes() == original


def test_ctrl_c_stops_the_batch_and_leaves_no_partial_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    count = 200  # enough work (~10 s on a quiet machine) that a starved test process still interrupts it
    for k in range(count):
        save_image(Image(gradient_pixels(160, 160, 3), 8), folder / f"{k:03}.png")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "core", "batch", folder, out, *BICUBIC, "--tile", "32",
                                "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # as from a terminal: a child inherits an ignored SIGINT (an earlier test's
                               # library may have set it in this process), and then Ctrl-C would not reach it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = json.loads(process.stdout.readline())
        assert first["status"] == "done"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1
    summary = json.loads(stdout.splitlines()[-1])["summary"]
    assert summary["stopped"] and 1 <= summary["done"] < count
    assert "error: interrupted" in stderr
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == summary["done"]  # no temporary or half-written file
    assert all(image_size(out / name) == (640, 640) for name in written)


def test_stop_event_ends_a_local_batch_between_images(inputs, tmp_path):
    items = collect(str(inputs), tmp_path / "out", recursive=True)
    request = UpscaleRequest(model="bicubic")
    stop = threading.Event()

    def report(outcome):
        stop.set()

    summary = run_batch(items, 4, local_runner(request, None), report=report, stop=stop)
    assert summary.stopped and summary.done + summary.failed == 1


# ---------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU Ray on this machine for the module; shut down however the tests end. CI installs
    the cluster extra (build.py test), so there a missing Ray fails instead of skipping."""
    from core.cluster import start_local

    ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
    start_local(ray, num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_batch_gives_the_single_process_files_and_skips_on_the_second_run(
        ray_cluster, inputs, single_process, tmp_path, capsys):
    out = tmp_path / "out"
    status, lines, _ = batch(capsys, inputs, out, *BICUBIC, "--recursive", "--ray", "local")
    assert status == 1
    assert by_status(lines) == {"done": GOOD, "failed": ["corrupt.png"]}
    failed = next(line for line in lines if line.get("status") == "failed")
    assert "corrupt.png is corrupt" in failed["error"]
    for path in single_process.rglob("*"):
        if path.is_file():
            ours = out / path.relative_to(single_process)
            assert ours.read_bytes() == path.read_bytes(), path.name
            assert (load_image(ours).pixels == load_image(path).pixels).all()
    status, lines, _ = batch(capsys, inputs, out, *BICUBIC, "--recursive", "--ray", "local")
    assert by_status(lines) == {"skipped": GOOD, "failed": ["corrupt.png"]}


def test_ray_stop_cancels_the_running_tasks_within_a_bounded_time(ray_cluster, tmp_path):
    from core.cluster import ray_runner

    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(12):
        save_image(Image(gradient_pixels(200, 200, 3), 8), folder / f"{k:02}.png")
    items = collect(str(folder), tmp_path / "out")
    stop = threading.Event()
    stopped_at = []

    def report(outcome):
        if not stop.is_set():
            stop.set()
            stopped_at.append(time.monotonic())

    runner = ray_runner(UpscaleRequest(model="bicubic", tile=32), None, "local")
    summary = run_batch(items, 4, runner, report=report, stop=stop)
    assert summary.stopped and 1 <= summary.done < 12
    assert time.monotonic() - stopped_at[0] < 25
    assert not list((tmp_path / "out").glob(".*.part"))
    assert all(image_size(p) == (800, 800) for p in (tmp_path / "out").iterdir())


def test_ray_missing_is_one_line_that_says_how_to_install_it(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    assert cli.main(["batch", str(inputs), str(tmp_path / "out"), *BICUBIC, "--ray", "local"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python3 build.py cluster" in err
    assert not (tmp_path / "out").exists()
