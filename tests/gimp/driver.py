"""Runs inside gimp-console-3.0 (python-fu-eval) in the Debian 13 chroot: each case of the job file
opens an image, sets up the selection, calls plug-in-blind-upscale non-interactively and records
what GIMP then holds (status, error, image size, layers, the new layer's pixels) for
tests/test_gimp_integration.py to check on the host side.

The job file ($BLIND_UPSCALE_GIMP_JOB) is JSON: {"settings_path", "results", "cases": [{"name",
"image", "precision" (optional, a Gimp.Precision name), "select": ["rectangle"|"ellipse", x, y, w, h]
(optional), "settings" (the engine settings written before the run), "args", "format" (the babl
format the new layer is dumped in), "run_mode" (optional, a Gimp.RunMode name)}]}.
"""
import json
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402


def layer_info(layer):
    *_, x, y = layer.get_offsets()
    return {"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()],
            "offsets": [x, y], "has_mask": layer.get_mask() is not None}


def run_case(pdb, case, settings_path, out_dir):
    with open(settings_path, "w", encoding="utf-8") as handle:
        json.dump(case["settings"], handle)
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(case["image"]))
    if case.get("precision"):
        image.convert_precision(getattr(Gimp.Precision, case["precision"]))
    image.clean_all()
    source = image.get_layers()[0]
    if case.get("select"):
        shape, x, y, w, h = case["select"]
        if shape == "rectangle":
            image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
        else:
            image.select_ellipse(Gimp.ChannelOps.REPLACE, x, y, w, h)
    procedure = pdb.lookup_procedure("plug-in-blind-upscale")
    config = procedure.create_config()
    config.set_property("run-mode", getattr(Gimp.RunMode, case.get("run_mode", "NONINTERACTIVE")))
    config.set_property("image", image)
    config.set_core_object_array("drawables", [source])
    for name, value in case["args"].items():
        config.set_property(name, value)
    result = procedure.run(config)
    status = result.index(0)
    record = {"status": status.value_nick, "error": pdb.get_last_error(),
              "image_size": [image.get_width(), image.get_height()],
              "precision": image.get_precision().value_nick, "dirty": image.is_dirty(),
              "layers": [layer_info(layer) for layer in image.get_layers()]}
    top = image.get_layers()[0]
    if status == Gimp.PDBStatusType.SUCCESS and top != source:
        rect = Gegl.Rectangle.new(0, 0, top.get_width(), top.get_height())
        pixels = os.path.join(out_dir, case["name"] + ".raw")
        with open(pixels, "wb") as handle:
            handle.write(top.get_buffer().get(rect, 1.0, case["format"], Gegl.AbyssPolicy.NONE))
        record["pixels"] = pixels
    image.delete()
    return record


def main():
    with open(os.environ["BLIND_UPSCALE_GIMP_JOB"], encoding="utf-8") as handle:
        job = json.load(handle)
    pdb = Gimp.get_pdb()
    results = {}
    for case in job["cases"]:
        try:
            results[case["name"]] = run_case(pdb, case, job["settings_path"], os.path.dirname(job["results"]))
        except Exception as exc:  # the test shows it; the next case still runs
            results[case["name"]] = {"status": "driver-error", "error": f"{type(exc).__name__}: {exc}"}
        with open(job["results"], "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


main()
