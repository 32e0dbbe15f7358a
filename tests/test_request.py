"""The request a run or preview sends, from the panel's state alone: no Qt, no widgets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from protocol.host import Rect, Selection
from ui.request import (RequestState, build_request, engine_notes, preview_request, result_area,
                        selection_use)

BICUBIC = {"id": "bicubic", "controls": [], "adaptation": [], "configs": []}
MMREALSR = {"id": "mmrealsr", "adaptation": [],
            "controls": [{"name": "blur", "min": 0, "max": 1}, {"name": "noise", "min": 0, "max": 1}],
            "configs": [{"id": "mmrealsr:official", "weights": "user"},
                        {"id": "mmrealsr:big", "weights": "missing"}]}
CMDSR = {"id": "cmdsr", "controls": [], "adaptation": ["support_set"], "configs": []}
METAF2N = {"id": "metaf2n", "controls": [], "adaptation": ["faces"], "configs": []}
SEL = Selection(Rect(4, 6, 20, 10), mask=b"\x80" * 200)


def state(model, **fields) -> RequestState:
    return RequestState(model=model, layer_size=(64, 48), **fields)


def test_the_plain_fields_and_ensemble_only_when_on():
    assert build_request(state(BICUBIC)) == {"model": "bicubic", "scale": 4, "device": "auto", "tile": 256}
    request = build_request(state(BICUBIC, scale=2, device="cpu", tile=0, ensemble=True))
    assert request == {"model": "bicubic", "scale": 2, "device": "cpu", "tile": 0, "ensemble": True}


def test_dials_none_are_left_to_the_engine_and_values_are_clamped():
    request = build_request(state(MMREALSR, dials={"blur": 0.3, "noise": None, "sharpen": 0.9}))
    assert request["blur"] == 0.3 and "noise" not in request and "sharpen" not in request
    assert build_request(state(MMREALSR, dials={"blur": 1.5}))["blur"] == 1
    assert "blur" not in build_request(state(BICUBIC, dials={"blur": 0.3}))  # not a control of bicubic


def test_only_a_config_with_weights_is_sent():
    assert build_request(state(MMREALSR, config="official"))["config"] == "official"
    assert "config" not in build_request(state(MMREALSR, config="big"))
    assert "config" not in build_request(state(MMREALSR))


def test_restore_faces_is_sent_with_any_method_only_when_the_restorer_is_installed():
    for model in (BICUBIC, MMREALSR, METAF2N):
        assert build_request(state(model, restore_faces=True, face_restorer="bundled"))["restore_faces"] is True
        assert build_request(state(model, restore_faces=True, face_restorer="user"))["restore_faces"] is True
    for installed in ("missing", ""):  # greyed in the panel: the saved choice is not sent
        assert "restore_faces" not in build_request(state(BICUBIC, restore_faces=True, face_restorer=installed))
    assert "restore_faces" not in build_request(state(BICUBIC, face_restorer="bundled"))
    crop = preview_request(state(BICUBIC, restore_faces=True, face_restorer="user"), Rect(0, 0, 40, 40))
    assert crop["restore_faces"] is True  # the preview shows what a run would do


def test_engine_notes_are_what_follows_the_time():
    assert engine_notes("Done in 1.2 s; 0 face(s) found; upscaling with the unadapted weights") == (
        "0 face(s) found; upscaling with the unadapted weights")
    assert engine_notes("Done in 0.3 s; Blur and noise estimated.") == "Blur and noise estimated"  # the panel ends it
    assert engine_notes("Done in 0.3 s") == "" and engine_notes("") == ""


def test_the_selection_is_the_area_the_sample_or_ignored():
    area = state(BICUBIC, selection=SEL)
    assert build_request(area)["region"] == [4, 6, 20, 10]
    assert result_area(area) == (Rect(4, 6, 20, 10), SEL.mask)
    sample = state(CMDSR, selection=SEL, selection_use="support")
    request = build_request(sample)
    assert request["support"] == [4, 6, 20, 10] and "region" not in request
    assert result_area(sample) == (Rect(0, 0, 64, 48), None)
    # a role the method cannot use falls back to the area
    assert selection_use(BICUBIC, "support") == "area"
    assert build_request(state(BICUBIC, selection=SEL, selection_use="face"))["region"] == [4, 6, 20, 10]


def test_faces_auto_while_all_found_are_ticked_else_the_boxes():
    found = ((2, 3, 10, 12), (20, 4, 8, 8))
    assert build_request(state(METAF2N, faces=found, faces_used=(True, True)))["faces"] == "auto"
    assert build_request(state(METAF2N, faces=found, faces_used=(False, True)))["faces"] == [[20, 4, 8, 8]]
    chosen = state(METAF2N, faces=found, faces_used=(True, False), selection=SEL, selection_use="face")
    assert build_request(chosen)["faces"] == [[4, 6, 20, 10], [2, 3, 10, 12]]
    assert build_request(state(METAF2N, faces=found, faces_used=(True, True), auto_faces=False))["faces"] == "none"
    assert "faces" not in build_request(state(BICUBIC))


def test_a_preview_upscales_its_crop_untiled_with_the_faces_found():
    found = ((2, 3, 10, 12),)
    request = preview_request(state(METAF2N, faces=found, faces_used=(True,), tile=512), Rect(12, 4, 40, 40))
    assert request["region"] == [12, 4, 40, 40] and request["tile"] == 0
    assert request["faces"] == [[2, 3, 10, 12]]
    assert preview_request(state(METAF2N), Rect(0, 0, 40, 40))["faces"] == "auto"  # none found yet


def test_building_a_request_needs_no_qt():
    code = "import sys, ui.request; sys.exit(any(m.startswith(('PyQt', 'numpy')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0
