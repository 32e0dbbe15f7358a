#!/usr/bin/env python3
"""Blind Upscale for GIMP 3: the image procedure `plug-in-blind-upscale`.

GIMP runs this file as its own process with GIMP's Python, which has no torch: the pixels go to the
engine process (`python -m core serve` from the project's venv, or a remote engine) through the
same standard-library client the Krita plug-in uses (protocol/, plugin/engine_process.py). The
engine's mode, URL and token come from the panel's settings file (protocol/settings_file.py).

The image is changed only once the engine's result is in hand: an engine failure leaves it as it
was. Then, in one undo group, the image is enlarged and the result is added as a new layer above
the source layer; the user's layers are never overwritten.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def _shared_code_root() -> Path:
    """Where protocol/ lives: beside this file once packaged (build.py package), else the
    repository root of a source checkout (plugin/gimp/blind-upscale/ -> ../../..)."""
    for candidate in (PLUGIN_DIR, PLUGIN_DIR.parents[2]):
        if (candidate / "protocol" / "client.py").is_file():
            return candidate
    return PLUGIN_DIR


sys.path.insert(0, str(_shared_code_root()))

import gi  # noqa: E402  (GIMP's own Python: gi and the typelibs come with GIMP)

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import GLib, GObject, Gegl, Gimp  # noqa: E402

from plugin.engine_process import EngineProcess, SupervisedClient, engine_python  # noqa: E402
from protocol.client import EngineClient, default_model, run_job  # noqa: E402
from protocol.errors import EngineError  # noqa: E402
from protocol.host import Rect, Selection  # noqa: E402
from protocol.raw_image import LinearRawImage, RawImage  # noqa: E402
from protocol.settings_file import read_settings  # noqa: E402
from ui.request import RequestState, build_request, result_area, result_layer_name  # noqa: E402

PROCEDURE = "plug-in-blind-upscale"
REMOTE_TIMEOUT = 180.0  # seconds for one request to a remote engine
SELECTION_ROLES = (
    ("area", "Area to upscale", "Upscale only the selection's bounding box"),
    ("support", "Degradation sample", "Upscale the whole layer; the selection is a sample of its "
                                      "degradation (methods that adapt to one: CMDSR)"),
    ("face", "Face", "Upscale the whole layer; the selection is a face the method learns from "
                     "(MetaF2N)"),
)
# GIMP precision sample type -> (babl sample type, RawImage dtype). 32-bit integer and double
# layers travel as float: the engine reads u8, u16, f16 and f32.
SAMPLES = {"u8": ("u8", "u8"), "u16": ("u16", "u16"), "half": ("half", "f16"),
           "float": ("float", "f32"), "u32": ("float", "f32"), "double": ("float", "f32")}


class UnsupportedLayer(Exception):
    """The layer cannot be upscaled; the message says what to do."""


@dataclass(frozen=True)
class Options:
    """The procedure's arguments."""

    model: str = "auto"
    scale: int = 4
    selection_role: str = "area"
    blur: float = -1.0
    noise: float = -1.0
    tile: int = 256

    @classmethod
    def from_config(cls, config) -> Options:
        return cls(config.get_property("model"), config.get_property("scale"),
                   config.get_property("selection-role"), config.get_property("blur"),
                   config.get_property("noise"), config.get_property("tile"))


@dataclass(frozen=True)
class PixelFormat:
    """How a layer's pixels travel: the babl format GEGL reads and writes them in (the layer's own
    sample type and transfer curve), and the matching RawImage layout."""

    babl: str
    channels: int
    dtype: str
    linear: bool

    @classmethod
    def of(cls, image, drawable) -> PixelFormat:
        # value_nick is e.g. "u8-non-linear", "float-linear", "u16-perceptual"
        sample, _, curve = image.get_precision().value_nick.partition("-")
        if sample not in SAMPLES:
            raise UnsupportedLayer(f"Blind Upscale cannot read {sample} layers.")
        babl_type, dtype = SAMPLES[sample]
        linear = curve == "linear"
        if drawable.is_rgb():
            colour, channels = ("RGB" if linear else "R'G'B'"), 3
        elif drawable.is_gray():
            colour, channels = ("Y" if linear else "Y'"), 1
        else:
            raise UnsupportedLayer("Blind Upscale works on RGB and gray layers; convert this indexed "
                                   "image with Image > Mode > RGB first.")
        if drawable.has_alpha():
            colour, channels = colour + "A", channels + 1
        return cls(f"{colour} {babl_type}", channels, dtype, linear)

    def raw(self, width: int, height: int, data: bytes) -> RawImage:
        kind = LinearRawImage if self.linear else RawImage
        return kind(width, height, self.channels, self.dtype, bytes(data))


def _offsets(drawable) -> tuple[int, int]:
    *_, x, y = drawable.get_offsets()  # (x, y), or (ok, x, y) in some bindings
    return int(x), int(y)


def _rectangle(rect: Rect):
    return Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height)


def read_pixels(drawable, fmt: PixelFormat, rect: Rect) -> RawImage:
    data = drawable.get_buffer().get(_rectangle(rect), 1.0, fmt.babl, Gegl.AbyssPolicy.NONE)
    return fmt.raw(rect.width, rect.height, data)


def layer_selection(image, drawable) -> Selection | None:
    """The selection's bounding box in the layer's pixels, or None when nothing is selected."""
    _, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    if not non_empty:
        return None
    ox, oy = _offsets(drawable)
    bounds = Rect(x1 - ox, y1 - oy, x2 - x1, y2 - y1).intersected(
        Rect(0, 0, drawable.get_width(), drawable.get_height()))
    if bounds is None:
        raise UnsupportedLayer("The selection lies outside the active layer; select inside it, or "
                               "select nothing to upscale the whole layer.")
    return Selection(bounds)


def selection_is_partial(image, rect: Rect) -> bool:
    """True when the selection does not fully cover `rect` (image pixels): a soft or shaped
    selection, which then becomes the result layer's mask."""
    data = image.get_selection().get_buffer().get(_rectangle(rect), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
    return data.count(255) != len(data)


def connect(settings: dict):
    """The engine client the settings name, and what to call when done with it."""
    if settings.get("engine_mode") == "remote":
        # A cold engine lists its models in tens of seconds on a busy CPU; the plug-in has
        # nothing else to do meanwhile, so it waits longer than the panel's client does.
        client = EngineClient(str(settings.get("engine_url", "")), str(settings.get("engine_token", "")),
                              timeout=REMOTE_TIMEOUT)
        return client, None
    found = engine_python(os.environ.get("BLIND_UPSCALE_PYTHON"), PLUGIN_DIR)
    if found is None:
        raise EngineError("The engine's python is unknown: set BLIND_UPSCALE_PYTHON to the project's "
                          ".venv/bin/python, install the plug-in with build.py package, or choose a "
                          "remote engine in the panel's settings.")
    python, root = found
    log = Path(Gimp.directory()) / "blind-upscale-engine.log"
    client = SupervisedClient(EngineProcess(python, root, log_path=str(log)))
    return client, client.close


def chosen_model(models: list[dict], wanted: str, settings: dict) -> dict:
    """The model entry for `wanted`: an id, or "auto" (the panel's saved method, else the best
    model with weights)."""
    if wanted == "auto":
        wanted = str(settings.get("model") or default_model(models))
    for model in models:
        if model["id"] == wanted:
            return model
    offered = ", ".join(model["id"] for model in models)
    raise EngineError(f"The engine has no model {wanted!r}; it offers {offered}, or auto.")


def add_result(image, drawable, fmt: PixelFormat, result: RawImage, source: Rect, scale: int,
               name: str, masked: bool):
    """Enlarge the image and add `result` (the upscaled `source` of the layer) above the layer,
    as one undo step. `masked`: the selection, enlarged with the image, becomes the layer's mask."""
    ox, oy = _offsets(drawable)
    image.undo_group_start()
    try:
        Gimp.context_push()
        Gimp.context_set_interpolation(Gimp.InterpolationType.CUBIC)
        image.scale(image.get_width() * scale, image.get_height() * scale)
        Gimp.context_pop()
        layer = Gimp.Layer.new(image, name, result.width, result.height, drawable.type(), 100.0,
                               Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        layer.set_offsets((ox + source.x) * scale, (oy + source.y) * scale)
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, result.width, result.height), fmt.babl, result.data)
        buffer.flush()
        layer.update(0, 0, result.width, result.height)
        if masked:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        image.set_selected_layers([layer])
    finally:
        image.undo_group_end()
    return layer


def upscale(image, drawable, options: Options, progress=None, cancelled=None) -> str:
    """The whole run; returns the new layer's name. Raises EngineError or UnsupportedLayer before
    the image is changed."""
    fmt = PixelFormat.of(image, drawable)
    settings = read_settings()
    client, close = connect(settings)
    try:
        model = chosen_model(client.models(), options.model, settings)
        dials = {name: (None if value < 0 else value)
                 for name, value in (("blur", options.blur), ("noise", options.noise))}
        state = RequestState(model=model, layer_size=(drawable.get_width(), drawable.get_height()),
                             scale=options.scale, device=str(settings.get("device", "auto")),
                             tile=options.tile, config=(settings.get("configs") or {}).get(model["id"]),
                             dials=dials, selection=layer_selection(image, drawable),
                             selection_use=options.selection_role)
        request = build_request(state)
        source, _ = result_area(state)
        pixels = read_pixels(drawable, fmt, Rect(0, 0, *state.layer_size))
        result = run_job(client, pixels, request, progress, cancelled)
    finally:
        if close is not None:
            close()
    width, height = source.width * options.scale, source.height * options.scale
    if (result.width, result.height, result.channels, result.dtype) != (width, height, fmt.channels, fmt.dtype):
        raise EngineError(f"The engine returned {result.width}x{result.height}x{result.channels} "
                          f"{result.dtype}, expected {width}x{height}x{fmt.channels} {fmt.dtype}.")
    ox, oy = _offsets(drawable)
    in_image = Rect(ox + source.x, oy + source.y, source.width, source.height)
    masked = "region" in request and selection_is_partial(image, in_image)
    name = result_layer_name(options.scale, model)
    add_result(image, drawable, fmt, result, source, options.scale, name, masked)
    return name


def _report_progress(fraction: float, stage: str) -> None:
    Gimp.progress_set_text(f"Blind Upscale: {stage}" if stage else "Blind Upscale")
    Gimp.progress_update(fraction)


def run(procedure, run_mode, image, drawables, config, _data):
    if len(drawables) != 1:
        return _failure(procedure, "Select exactly one layer to upscale.")
    Gimp.progress_init("Blind Upscale")
    try:
        upscale(image, drawables[0], Options.from_config(config), _report_progress)
    except (EngineError, UnsupportedLayer) as exc:
        return _failure(procedure, str(exc))
    finally:
        Gimp.progress_end()
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _failure(procedure, message: str):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


class BlindUpscale(Gimp.PlugIn):
    def do_set_i18n(self, _name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("Blind _Upscale…")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Super-resolve the layer (or the selection) with a blind super-resolution model",
            "Enlarges the image and adds the upscaled layer on top, as one undo step. The pixels go "
            "to the Blind Upscale engine named in the panel's settings.", name)
        procedure.set_attribution("Blind Upscale", "Blind Upscale", "2026")
        read_write = GObject.ParamFlags.READWRITE
        procedure.add_string_argument("model", "_Model", "A model id (bicubic, kdsr, cmdsr, mmrealsr, "
                                      "ccl, metaf2n, realesrgan, user:<name>) or auto", "auto", read_write)
        procedure.add_int_argument("scale", "_Scale", "Enlargement factor", 1, 8, 4, read_write)
        roles = Gimp.Choice.new()
        for index, (nick, label, help_text) in enumerate(SELECTION_ROLES):
            roles.add(nick, index, label, help_text)
        procedure.add_choice_argument("selection-role", "Use the selection as",
                                      "What the selection is for", roles, "area", read_write)
        procedure.add_double_argument("blur", "_Blur", "Blur dial 0..1; -1 = the model's own estimate",
                                      -1.0, 1.0, -1.0, read_write)
        procedure.add_double_argument("noise", "_Noise", "Noise dial 0..1; -1 = the model's own estimate",
                                      -1.0, 1.0, -1.0, read_write)
        procedure.add_int_argument("tile", "_Tile", "Tile size in pixels (0 = the whole image at once)",
                                   0, 8192, 256, read_write)
        return procedure


if __name__ == "__main__":
    Gimp.main(BlindUpscale.__gtype__, sys.argv)
