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
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
from gi.repository import GdkPixbuf, GLib, GObject, Gegl, Gimp, GimpUi, Gtk  # noqa: E402

from plugin.engine_process import EngineProcess, SupervisedClient, engine_python  # noqa: E402
from protocol.client import EngineClient, default_model, run_job  # noqa: E402
from protocol.errors import EngineError, JobCancelled  # noqa: E402
from protocol.host import Rect, Selection  # noqa: E402
from protocol.raw_image import LinearRawImage, RawImage  # noqa: E402
from protocol.settings_file import read_settings  # noqa: E402
from ui.request import (RequestState, build_request, preview_crop, preview_request, restorer_missing,  # noqa: E402
                        result_area, result_layer_name, selection_use)

PROCEDURE = "plug-in-blind-upscale"
PREVIEW_SIDE, PREVIEW_ZOOM = 40, 4  # the preview's crop in layer pixels, shown this many times larger
DISPLAY_FORMAT = "R'G'B'A u8"  # what the preview reads and shows, whatever the layer's precision
ARGUMENTS = ("model", "scale", "selection-role", "blur", "noise", "tile", "restore-faces")  # Options' fields, in order
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
    restore_faces: bool = False

    @classmethod
    def from_config(cls, config) -> Options:
        return cls(*(config.get_property(name) for name in ARGUMENTS))

    def store(self, config) -> None:
        """Into the procedure's config, so GIMP remembers the dialog's choices for the next run."""
        for name, value in zip(ARGUMENTS, (self.model, self.scale, self.selection_role, self.blur,
                                           self.noise, self.tile, self.restore_faces)):
            config.set_property(name, value)


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


def request_state(image, drawable, options: Options, model: dict, settings: dict,
                  face_restorer: str = "") -> RequestState:
    """The panel's request state (ui/request.py) for this layer, selection and options;
    `face_restorer`: the engine's face restorer status (its health)."""
    dials = {name: (None if value < 0 else value) for name, value in (("blur", options.blur), ("noise", options.noise))}
    return RequestState(model=model, layer_size=(drawable.get_width(), drawable.get_height()),
                        scale=options.scale, device=str(settings.get("device", "auto")), tile=options.tile,
                        config=(settings.get("configs") or {}).get(model["id"]), dials=dials,
                        selection=layer_selection(image, drawable), selection_use=options.selection_role,
                        restore_faces=options.restore_faces, face_restorer=face_restorer)


def upscale(image, drawable, options: Options, client, settings: dict, progress=None, cancelled=None) -> str:
    """The whole run; returns the new layer's name. Raises EngineError (JobCancelled when
    `cancelled()` said so) or UnsupportedLayer before the image is changed."""
    fmt = PixelFormat.of(image, drawable)
    model = chosen_model(client.models(), options.model, settings)
    face_restorer = ""
    if options.restore_faces:
        face_restorer = str(client.health().get("face_restorer", ""))
        if restorer_missing(face_restorer):
            raise EngineError(restorer_missing(face_restorer))
    state = request_state(image, drawable, options, model, settings, face_restorer)
    request = build_request(state)
    source, _ = result_area(state)
    pixels = read_pixels(drawable, fmt, Rect(0, 0, *state.layer_size))
    result = run_job(client, pixels, request, progress, cancelled)
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


def _pump_events(limit: int = 200) -> None:
    """Let GTK draw and handle clicks while the plug-in waits on the engine. Bounded and
    non-blocking: some sources are always pending (a redrawing widget), so "until none is
    pending" may never end."""
    for _ in range(limit):
        if not Gtk.events_pending():
            return
        Gtk.main_iteration_do(False)


def _pixbuf(raw: RawImage):
    return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(raw.data), GdkPixbuf.Colorspace.RGB, True, 8,
                                           raw.width, raw.height, raw.width * 4)


class UpscaleDialog:
    """The interactive run: the dock panel's choices (method with its description, dials with Auto,
    what the selection is), a before/after preview of a crop, and a Cancel that stops the engine
    job while the run goes on (GTK events are handled between the job's status polls)."""

    def __init__(self, image, drawable, options: Options, client, settings: dict):
        GimpUi.init(PROCEDURE)
        self.image, self.drawable, self.client, self.settings = image, drawable, client, settings
        self.models = client.models()
        self.stopped = False
        self.dialog = GimpUi.Dialog(title="Blind Upscale", role=PROCEDURE)
        self.dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.ok = self.dialog.add_button("_OK", Gtk.ResponseType.OK)
        grid = Gtk.Grid(row_spacing=6, column_spacing=10, margin=12)
        self.dialog.get_content_area().add(grid)

        self.model = Gtk.ComboBoxText()
        for model in self.models:
            missing = " (no weights)" if model.get("weights") == "missing" else ""
            self.model.append(model["id"], f"{model.get('title') or model['id']}{missing}")
        try:
            self.model.set_active_id(chosen_model(self.models, options.model, settings)["id"])
        except EngineError:
            self.model.set_active_id(default_model(self.models))
        self.summary = Gtk.Label(wrap=True, xalign=0, max_width_chars=48)
        self.scale = Gtk.SpinButton.new_with_range(1, 8, 1)
        self.scale.set_value(options.scale)
        self.tile = Gtk.SpinButton.new_with_range(0, 8192, 16)
        self.tile.set_value(options.tile)
        self.role = Gtk.ComboBoxText()
        for nick, label, _ in SELECTION_ROLES:
            self.role.append(nick, label)
        self.role.set_active_id(options.selection_role)
        self.role_help = Gtk.Label(wrap=True, xalign=0, max_width_chars=48)
        # offered after any method once the engine has a face restorer; greyed with the reason otherwise
        self.face_restorer = str(client.health().get("face_restorer", ""))
        self.restore = Gtk.CheckButton(label="Restore faces after upscaling")
        self.restore.set_active(options.restore_faces and not restorer_missing(self.face_restorer))
        self.restore.set_sensitive(not restorer_missing(self.face_restorer))
        self.restore_help = Gtk.Label(label=restorer_missing(self.face_restorer), wrap=True, xalign=0,
                                      max_width_chars=48)
        rows = [("Method", self.model), ("", self.summary), ("Scale", self.scale),
                ("Tile size (0 = whole)", self.tile), ("Use the selection as", self.role), ("", self.role_help),
                ("Faces", self.restore), ("", self.restore_help)]
        self.dials = {}
        for name, value in (("blur", options.blur), ("noise", options.noise)):
            slider = Gtk.Scale.new_with_range(Gtk.Orientation.HORIZONTAL, 0.0, 1.0, 0.01)
            slider.set_hexpand(True)
            slider.set_value(max(0.0, value))
            auto = Gtk.CheckButton(label="Auto")
            auto.connect("toggled", lambda button, s=slider: s.set_sensitive(not button.get_active()))
            auto.set_active(value < 0)
            slider.set_sensitive(value >= 0)
            box = Gtk.Box(spacing=6)
            box.pack_start(slider, True, True, 0)
            box.pack_start(auto, False, False, 0)
            label = Gtk.Label(label=name.capitalize(), xalign=0)
            self.dials[name] = (label, box, slider, auto)
            rows.append((label, box))
        self.before, self.after = Gtk.Image(), Gtk.Image()
        pictures = Gtk.Box(spacing=8)
        for caption, picture in (("Before", self.before), ("After", self.after)):
            column = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=2)
            column.pack_start(Gtk.Label(label=caption), False, False, 0)
            column.pack_start(picture, False, False, 0)
            pictures.pack_start(column, False, False, 0)
        preview_button = Gtk.Button(label="_Preview", use_underline=True)
        preview_button.connect("clicked", lambda _button: self.preview())
        self.status = Gtk.Label(wrap=True, xalign=0, max_width_chars=48)
        rows += [("Preview", preview_button), ("", pictures), ("", self.status)]
        for row, (caption, widget) in enumerate(rows):
            label = caption if isinstance(caption, Gtk.Label) else Gtk.Label(label=caption, xalign=0)
            grid.attach(label, 0, row, 1, 1)
            grid.attach(widget, 1, row, 1, 1)
        self.model.connect("changed", lambda _combo: self._describe())
        self.role.connect("changed", lambda _combo: self._describe())

    def _current_model(self) -> dict:
        return next(m for m in self.models if m["id"] == self.model.get_active_id())

    def _describe(self) -> None:
        """The method's description, its dials (only those it has), and what the selection will do."""
        model = self._current_model()
        self.summary.set_text(model.get("summary", ""))
        controls = {control["name"] for control in model.get("controls", [])}
        for name, (label, box, _slider, _auto) in self.dials.items():
            label.set_visible(name in controls)
            box.set_visible(name in controls)
        wanted = self.role.get_active_id()
        used = selection_use(model, wanted)
        help_text = next(text for nick, _, text in SELECTION_ROLES if nick == used)
        if used != wanted:
            help_text = f"{model.get('title', model['id'])} cannot use the selection that way: {help_text.lower()}."
        self.role_help.set_text(help_text)

    def options(self) -> Options:
        dials = {name: (-1.0 if auto.get_active() else slider.get_value())
                 for name, (_label, _box, slider, auto) in self.dials.items()}
        return Options(self.model.get_active_id(), int(self.scale.get_value()), self.role.get_active_id(),
                       dials["blur"], dials["noise"], int(self.tile.get_value()), self.restore.get_active())

    def preview(self) -> None:
        """The current choices' result on a crop (around the selection's centre when it is the
        area, else the layer's), beside the crop enlarged as it is."""
        options = self.options()
        try:
            model = self._current_model()
            state = request_state(self.image, self.drawable, options, model, self.settings, self.face_restorer)
            bounds = state.selection.bounds if state.selection is not None else None
            if bounds is not None and selection_use(model, options.selection_role) == "area":
                centre = (bounds.x + bounds.width // 2, bounds.y + bounds.height // 2)
            else:
                centre = (state.layer_size[0] // 2, state.layer_size[1] // 2)
            crop = preview_crop(state.layer_size, centre, PREVIEW_SIDE)
            shown = PixelFormat(DISPLAY_FORMAT, 4, "u8", False)
            before = read_pixels(self.drawable, shown, crop)
            self.status.set_text("Preview: the engine is working…")
            _pump_events()
            after = run_job(self.client, read_pixels(self.drawable, shown, Rect(0, 0, *state.layer_size)),
                            preview_request(state, crop), lambda _f, _s: _pump_events())
        except (EngineError, UnsupportedLayer) as exc:
            self.status.set_text(str(exc))
            return
        zoomed = (before.width * PREVIEW_ZOOM, before.height * PREVIEW_ZOOM)
        self.before.set_from_pixbuf(_pixbuf(before).scale_simple(*zoomed, GdkPixbuf.InterpType.NEAREST))
        self.after.set_from_pixbuf(_pixbuf(after).scale_simple(*zoomed, GdkPixbuf.InterpType.BILINEAR))
        self.status.set_text(f"Preview of {crop.width}x{crop.height} pixels at ({crop.x}, {crop.y}).")

    def ask(self) -> Options | None:
        """Show the dialog with a first preview; the chosen options, or None when cancelled."""
        self.dialog.show_all()
        self._describe()
        self.preview()
        if self.dialog.run() != Gtk.ResponseType.OK:
            self.dialog.destroy()
            return None
        for widget in (self.ok, self.model, self.role):
            widget.set_sensitive(False)
        self.status.set_text("Upscaling… Cancel stops the engine's job; nothing is changed then.")
        self.dialog.connect("response", lambda _dialog, _response: setattr(self, "stopped", True))
        return self.options()

    def follow(self, report):
        """A progress callback for the run: GIMP's progress bar, then the dialog's events (Cancel)."""
        def progress(fraction: float, stage: str) -> None:
            report(fraction, stage)
            _pump_events()
        return progress

    def cancelled(self) -> bool:
        return self.stopped

    def close(self) -> None:
        self.dialog.destroy()


def _report_progress(fraction: float, stage: str) -> None:
    Gimp.progress_set_text(f"Blind Upscale: {stage}" if stage else "Blind Upscale")
    Gimp.progress_update(fraction)


def run(procedure, run_mode, image, drawables, config, _data):
    if len(drawables) != 1:
        return _failure(procedure, "Select exactly one layer to upscale.")
    options = Options.from_config(config)
    try:
        settings = read_settings()
        client, close = connect(settings)
    except (EngineError, ValueError) as exc:
        return _failure(procedure, str(exc))
    try:
        progress, cancelled, dialog = _report_progress, None, None
        if run_mode == Gimp.RunMode.INTERACTIVE:
            dialog = UpscaleDialog(image, drawables[0], options, client, settings)
            options = dialog.ask()
            if options is None:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            options.store(config)
            progress, cancelled = dialog.follow(_report_progress), dialog.cancelled
        Gimp.progress_init("Blind Upscale")
        try:
            upscale(image, drawables[0], options, client, settings, progress, cancelled)
        finally:
            Gimp.progress_end()
            if dialog is not None:
                dialog.close()
    except JobCancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except (EngineError, UnsupportedLayer) as exc:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            Gimp.message(str(exc))
        return _failure(procedure, str(exc))
    finally:
        if close is not None:
            close()
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
        procedure.add_boolean_argument("restore-faces", "Restore _faces",
                                       "Restore the faces found with the engine's face restorer and paste them "
                                       "back over the result (needs its weights in the models folder)",
                                       False, read_write)
        return procedure


if __name__ == "__main__":
    Gimp.main(BlindUpscale.__gtype__, sys.argv)
