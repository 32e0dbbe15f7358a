"""The engine request a run or a preview sends, from the panel's state: pure functions, no Qt.

Everything the request depends on (settings, the chosen method's `models()` entry, the layer, the
selection, the faces found) comes in one `RequestState`, so the rules below are tested without
widgets (tests/test_request.py) and the panel only gathers the state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from protocol.host import Rect, Selection

# A selection role the method must support, by the `adaptation` word of models() that names it.
SELECTION_USE_NEEDS = {"support": "support_set", "face": "faces"}

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RequestState:
    model: dict                          # the chosen method's entry of the client's models()
    layer_size: tuple[int, int]
    scale: int = 4
    device: str = "auto"
    tile: int = 256
    ensemble: bool = False
    config: str | None = None            # the chosen configuration's short name for this method
    dials: dict = field(default_factory=dict)  # control name -> value, None (or absent) = estimated
    selection: Selection | None = None
    selection_use: str = "area"          # the chosen role; `selection_use()` says which applies
    auto_faces: bool = True
    faces: tuple[Box, ...] = ()          # faces the engine found in the layer
    faces_used: tuple[bool, ...] = ()    # which of them the user kept ticked
    restore_faces: bool = False          # the "restore faces" option as saved
    face_restorer: str = ""              # the engine's face restorer weights: bundled, user, missing ("": not said)


def selection_use(model: dict | None, chosen: str) -> str:
    """The selection role in effect: the chosen one if the method supports it, else "area"."""
    needs = SELECTION_USE_NEEDS.get(chosen)
    if needs and (model is None or needs not in model.get("adaptation", [])):
        return "area"
    return chosen


def restorer_installed(status: str) -> bool:
    """Whether the engine's face restorer can run (its weights status from `health()`)."""
    return status in ("bundled", "user")


def restorer_missing(status: str) -> str:
    """Why "restore faces" cannot run on an engine whose face restorer status is `status` ("" when it can)."""
    if restorer_installed(status):
        return ""
    if status == "missing":
        return ("No face restorer is installed: put face_restorer_lite.safetensors in the models "
                "folder, then Refresh.")
    return "This engine cannot restore faces; update it."


def usable_configs(model: dict | None) -> list[dict]:
    """The method's configurations whose weights are present."""
    return [c for c in (model or {}).get("configs", []) if c.get("weights") in ("bundled", "user")]


def config_name(config: dict) -> str:
    """"lite" for the configuration id "mmrealsr:lite"."""
    return config["id"].split(":", 1)[-1]


def present_config(model: dict | None, chosen: str | None) -> str | None:
    """`chosen` if its weights are present, else None (the engine's default: the first with weights)."""
    if chosen is None or chosen not in {config_name(c) for c in usable_configs(model)}:
        return None
    return chosen


def build_request(state: RequestState) -> dict:
    """The UpscaleRequest fields (docs/internals.md) for a run of `state`."""
    request: dict = {"model": state.model["id"], "scale": state.scale, "device": state.device,
                     "tile": state.tile}
    if state.ensemble:
        request["ensemble"] = True
    if state.restore_faces and restorer_installed(state.face_restorer):
        request["restore_faces"] = True
    config = present_config(state.model, state.config)
    if config is not None:
        request["config"] = config
    for control in state.model.get("controls", []):
        value = state.dials.get(control["name"])
        if value is not None:  # absent: the engine estimates it
            request[control["name"]] = min(control.get("max", 1), max(control.get("min", 0), value))
    selection, use = state.selection, selection_use(state.model, state.selection_use)
    if selection is not None and use == "area":
        request["region"] = list(selection.bounds.as_tuple())
    elif selection is not None and use == "support":
        request["support"] = list(selection.bounds.as_tuple())
    if "faces" in state.model.get("adaptation", []):
        request["faces"] = _faces(state, selection.bounds if selection is not None and use == "face" else None)
    return request


def _faces(state: RequestState, chosen: Rect | None):
    """"auto" while every face found is ticked and none is chosen by hand, else the boxes, or "none"."""
    boxes = [list(chosen.as_tuple())] if chosen is not None else []
    if state.auto_faces:
        ticked = [list(face) for face, used in zip(state.faces, state.faces_used) if used]
        if not boxes and len(ticked) == len(state.faces):
            return "auto"
        boxes += ticked
    return boxes or "none"


def result_layer_name(scale: int, model: dict) -> str:
    """The new layer's name, the same in every host: "Blind Upscale ×4 (KDSR)"."""
    return f"Blind Upscale ×{scale} ({model.get('family') or model['id']})"


def engine_notes(final_stage: str) -> str:
    """What the engine's last stage adds after its time ("Done in 1.2 s; 0 face(s) found; upscaling
    with the unadapted weights" -> "0 face(s) found; upscaling ..."): the outcome of a method's
    global step and of the face restoration, which the panel's status repeats."""
    _, _, notes = final_stage.partition("; ")
    return notes.rstrip(".")


def result_area(state: RequestState) -> tuple[Rect, bytes | None]:
    """The layer rectangle the result covers and the selection coverage to apply to it."""
    selection = state.selection
    if selection is not None and selection_use(state.model, state.selection_use) == "area":
        return selection.bounds, selection.mask
    return Rect(0, 0, *state.layer_size), None


def preview_crop(layer_size: tuple[int, int], centre: tuple[int, int], side: int) -> Rect:
    """The preview's crop: `side` pixels square (less on a smaller layer) around `centre`, kept
    inside the layer."""
    width, height = layer_size
    side_w, side_h = min(side, width), min(side, height)
    x = min(max(0, centre[0] - side_w // 2), width - side_w)
    y = min(max(0, centre[1] - side_h // 2), height - side_h)
    return Rect(x, y, side_w, side_h)


def preview_request(state: RequestState, crop: Rect) -> dict:
    """A run's request limited to the preview `crop`, untiled. Faces found by "auto" go as explicit
    boxes, so the preview adapts to the same faces a run would without detecting them again."""
    request = build_request(state)
    if request.get("faces") == "auto" and state.faces:
        request["faces"] = [list(face) for face in state.faces]
    request["region"] = list(crop.as_tuple())
    request["tile"] = 0
    return request
