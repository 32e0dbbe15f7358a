"""Faces from the user's side: `analyse --json` lists them, `--faces` boxes/auto/none reach
MetaF2N, a face-less photo falls back and says so, cancel stops the adaptation, and
`--restore-faces` pastes restored faces back over any model's result."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from core.archs import metaf2n as metaf2n_arch
from core.archs.face_restorer import ARCH as RESTORER
from core.cli import parse_faces
from core.engine import Engine, UpscaleRequest
from core.errors import Cancelled, InputError, WeightsError
from core.face_restore import feather_mask, paste_back
from core.image_io import Image, save_image
from core.weights import save_state_dict
from tests.test_cli import run

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "grace_hopper_256.png"
FACE_BOX = (80, 53, 160, 160)  # where face_photo() puts the portrait


def face_photo() -> np.ndarray:
    """The bundled portrait shrunk into a wider grey frame (the 256 px crop cuts the head, which
    the detector needs whole)."""
    canvas = PILImage.new("RGB", (320, 320), (128, 128, 128))
    with PILImage.open(SAMPLE) as portrait:
        canvas.paste(portrait.convert("RGB").resize(FACE_BOX[2:], PILImage.Resampling.BICUBIC), FACE_BOX[:2])
    return np.asarray(canvas, dtype=np.float32) / 255.0


def faceless(h=64, w=64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    return np.stack([xx, yy, 0.5 * (xx + yy)], axis=2).astype(np.float32)


def metaf2n_weights(models, loss_weight: float | None = None):
    """Fresh lite MetaF2N weights. A fresh MaskNet weights the inner loss by about 0.002, so the
    step hardly moves a pixel; `loss_weight` makes it weight every pixel by about that much
    instead, for tests that tell an adapted result by its pixels."""
    torch.manual_seed(0)
    model = metaf2n_arch.ARCH.build("lite")
    if loss_weight is not None:
        with torch.no_grad():
            model.mask_net.conv8.bias.fill_(loss_weight)
    save_state_dict(model.state_dict(), models / "metaf2n_lite.safetensors")


def restorer_weights(models):
    """A restorer that visibly changes faces (a fresh one is the identity)."""
    model = RESTORER.build("lite")
    with torch.no_grad():
        model.conv_last.bias.fill_(0.3)
    save_state_dict(model.state_dict(), models / "face_restorer_lite.safetensors")


def test_analyse_json_lists_the_faces_with_box_and_score(tmp_path, models):
    path = save_image(Image(face_photo(), 8), tmp_path / "portrait.png")
    result = run("analyse", path, "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)["faces"]
    assert len(found) == 1
    x, y, w, h, score = found[0]
    assert 0.5 < score <= 1.0
    cx, cy = x + w / 2, y + h / 2
    assert FACE_BOX[0] < cx < FACE_BOX[0] + FACE_BOX[2] and FACE_BOX[1] < cy < FACE_BOX[1] + FACE_BOX[3]


def test_faces_option_forms():
    assert parse_faces("auto") == "auto" and parse_faces("none") == "none"
    assert parse_faces("1,2,30,40;5,6,70,80") == [[1, 2, 30, 40], [5, 6, 70, 80]]
    with pytest.raises(InputError, match="X,Y,W,H"):
        parse_faces("1,2,30")


def test_cli_face_box_adapts_and_none_says_it_did_not(tmp_path, models):
    metaf2n_weights(models)
    path = save_image(Image(face_photo()[80:128:, 128:176], 8), tmp_path / "face.png")  # 48 px: a quick run
    boxed = run("upscale", path, tmp_path / "boxed.png", "--model", "metaf2n", "--faces", "4,4,40,40", timeout=600)
    assert boxed.returncode == 0, boxed.stderr
    assert "adapted to 1 face(s)" in boxed.stdout.splitlines()[1]
    off = run("upscale", path, tmp_path / "off.png", "--model", "metaf2n", "--faces", "none", "--json", timeout=600)
    assert off.returncode == 0, off.stderr
    assert "face adaptation is off; upscaling with the unadapted weights" in json.loads(off.stdout)["status"]
    outside = run("upscale", path, tmp_path / "x.png", "--model", "metaf2n", "--faces", "30,30,20,10")
    assert outside.returncode == 1 and "reaches outside" in outside.stderr


def test_a_faceless_photo_falls_back_and_the_status_says_so(models):
    metaf2n_weights(models)
    stages = []
    result = Engine().upscale(Image(faceless()), UpscaleRequest(model="metaf2n", faces="auto"),
                              lambda f, s: stages.append(s))
    assert result.width == 256
    assert stages[-1].startswith("Done in") and "0 face(s) found" in stages[-1] and "unadapted" in stages[-1]


def test_cancel_stops_the_adaptation_step(models):
    metaf2n_weights(models)
    cancel = threading.Event()
    stages = []

    def progress(fraction, stage):
        stages.append(stage)
        if stage.startswith("Learning from 1 face(s)"):
            cancel.set()

    with pytest.raises(Cancelled):
        Engine().upscale(Image(face_photo()[60:220, 80:240]), UpscaleRequest(model="metaf2n", faces=[(10, 0, 140, 150)]),
                         progress, cancel)
    adapting = [s for s in stages if s.startswith("Learning from")]
    assert len(adapting) == 1 and stages[-1] == adapting[0]  # stopped at the first chunk's report


def test_paste_back_blends_with_a_feathered_edge():
    canvas = np.zeros((64, 64, 3), np.float32)
    matrix = np.array([[1.0, 0, -16], [0, 1.0, -16]])  # canvas (x, y) -> crop (x - 16, y - 16)
    paste_back(canvas, np.ones((32, 32, 3), np.float32), matrix)
    assert canvas[32, 32, 0] == pytest.approx(1.0) and canvas[2, 2, 0] == 0.0 and canvas[60, 40, 0] == 0.0
    assert 0.0 < canvas[17, 32, 0] < canvas[20, 32, 0] < 1.0
    mask = feather_mask(32)
    assert mask[16, 16] == 1.0 and mask[0, 16] < 0.1 and np.allclose(mask, mask.T)


def test_restore_faces_changes_only_the_face_and_needs_the_restorer(models):
    engine = Engine()
    photo = Image(face_photo())
    stages = []
    with pytest.raises(WeightsError, match="core.train face_restorer"):
        engine.upscale(photo, UpscaleRequest(model="bicubic", restore_faces=True), lambda f, s: stages.append(s))
    assert stages == ["Reading the image", "Loading the model"]  # refused before any work

    restorer_weights(models)
    stages.clear()
    plain = engine.upscale(photo, UpscaleRequest(model="bicubic")).pixels
    restored = engine.upscale(photo, UpscaleRequest(model="bicubic", restore_faces=True),
                              lambda f, s: stages.append(s)).pixels
    assert "1 face(s) restored" in stages[-1]
    changed = np.abs(restored - plain).max(axis=2) > 1e-4
    x, y, w, h = (4 * v for v in FACE_BOX)
    assert changed[y + h // 2, x + w // 2] and changed.sum() > 10_000
    # the face's crop reaches a little past the portrait (chin); the frame's far corners stay as they were
    assert not changed[:y, :x].any() and not changed[:, x + w + 60:].any() and not changed[:y - 60].any()

    stages.clear()
    engine.upscale(Image(faceless()), UpscaleRequest(model="bicubic", restore_faces=True), lambda f, s: stages.append(s))
    assert "no face found to restore" in stages[-1]


def test_restore_faces_request_field_is_validated():
    with pytest.raises(InputError, match="restore_faces must be true or false"):
        UpscaleRequest.from_dict({"model": "bicubic", "restore_faces": "yes"})
    assert UpscaleRequest.from_dict({"model": "bicubic", "restore_faces": True}).to_dict()["restore_faces"] is True


def test_with_the_restorer_installed_metaf2n_learns_towards_restored_faces(models):
    from core.face_adaptation import restored_pairs
    from core.faces import detect, faces_from_boxes
    from core.methods.metaf2n import MetaF2NUpscaler

    fresh = RESTORER.build("lite").eval()  # the identity on its input: targets are the bicubic LR
    lr = face_photo()[80:128, 128:176]
    pairs = restored_pairs(lr, faces_from_boxes([(4, 4, 40, 40)]), fresh)
    assert pairs is not None and pairs.faces == 1 and pairs.lr.shape == (16, 3, 16, 16)
    up = torch.nn.functional.interpolate(pairs.lr, scale_factor=4, mode="bicubic", align_corners=False)
    inner = (..., slice(8, -8), slice(8, -8))  # away from the patch edges the bicubic needs no outside pixels
    assert torch.allclose(pairs.hr[inner], up.clamp(0, 1)[inner], atol=1e-4)
    aligned = restored_pairs(face_photo(), detect(face_photo()).faces, fresh)
    assert aligned is not None and aligned.hr.shape[-1] == 4 * aligned.lr.shape[-1]

    metaf2n_weights(models)
    restorer_weights(models)
    stages = []
    MetaF2NUpscaler("lite").prepare(lr, UpscaleRequest(model="metaf2n", faces=[(4, 4, 40, 40)]),
                                    lambda f, s: stages.append(s))
    assert any("targets from the face restorer" in s for s in stages) and "adapted to 1 face" in stages[-1]
