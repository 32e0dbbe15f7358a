"""Face detection and alignment: the alignment math on known landmarks, and the real detectors on
images the tests make (real photos are checked by bench/faces.py)."""
import math
import warnings

import numpy as np
import pytest
import torch

from core import faces
from core.faces import (FFHQ_TEMPLATE_512, RETINAFACE_FILE, Face, align_face, detect,
                        detect_faces, faces_from_boxes, native_face_size, umeyama)


def similarity(angle_deg, scale, tx, ty):
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


def apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_umeyama_recovers_a_known_similarity():
    truth = similarity(30, 1.7, 12.5, -4.0)
    src = FFHQ_TEMPLATE_512 / 4
    np.testing.assert_allclose(umeyama(src, apply(truth, src)), truth, atol=1e-9)


def test_umeyama_never_reflects():
    src = FFHQ_TEMPLATE_512
    mirrored = src * np.array([-1.0, 1.0])  # a mirror image has no similarity without reflection
    m = umeyama(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_umeyama_is_least_squares_under_noise():
    rng = np.random.default_rng(0)
    truth = similarity(-12, 0.6, 100, 40)
    src = FFHQ_TEMPLATE_512
    dst = apply(truth, src) + rng.normal(0, 0.5, src.shape)
    fit = umeyama(src, dst)
    fit_err = np.sum((apply(fit, src) - dst) ** 2)
    assert fit_err <= np.sum((apply(truth, src) - dst) ** 2) + 1e-9
    np.testing.assert_allclose(fit, truth, atol=0.05 * 100)


def test_native_face_size_keeps_the_face_scale():
    landmarks = apply(similarity(20, 0.25, 300, 200), FFHQ_TEMPLATE_512)
    assert native_face_size(landmarks) == 128
    assert native_face_size(apply(similarity(0, 3.0, 0, 0), FFHQ_TEMPLATE_512)) == 512  # capped


def blobs(shape, points, sigma=1.5):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w), np.float32)
    for x, y in points:
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return image


def test_align_face_puts_the_landmarks_on_the_template():
    # A rotated, shrunk "face" whose five landmarks are bright dots; alignment must bring each dot
    # to its template position in the crop.
    landmarks = apply(similarity(25, 0.3, 90, 40), FFHQ_TEMPLATE_512)
    rgb = np.repeat(blobs((240, 260), landmarks)[..., None], 3, axis=2).clip(0, 1)
    size = 160
    crop, matrix = align_face(rgb, landmarks, size)
    assert crop.shape == (size, size, 3)
    np.testing.assert_allclose(apply(matrix, landmarks), FFHQ_TEMPLATE_512 * size / 512, atol=1e-6)
    for tx, ty in FFHQ_TEMPLATE_512 * size / 512:
        x0, y0 = int(round(tx)) - 4, int(round(ty)) - 4
        window = crop[y0:y0 + 9, x0:x0 + 9, 0]
        py, px = np.unravel_index(np.argmax(window), window.shape)
        assert abs(x0 + px - tx) <= 1.0 and abs(y0 + py - ty) <= 1.0
        assert window.max() > 0.5


def test_align_face_at_native_size_is_a_pure_move():
    # Axis-aligned landmarks at scale 1 and an integer offset: the crop is the image, shifted.
    size = 128
    offset = np.array([37.0, 21.0])
    landmarks = FFHQ_TEMPLATE_512 * size / 512 + offset
    rgb = np.random.default_rng(1).random((200, 220, 3)).astype(np.float32)
    crop, _ = align_face(rgb, landmarks, size)
    np.testing.assert_allclose(crop, rgb[21:21 + size, 37:37 + size], atol=1e-4)


def test_user_boxes_skip_detection():
    found = faces_from_boxes([(10, 20, 30, 40)])
    assert found == [Face((10.0, 20.0, 30.0, 40.0), 1.0, None)]
    assert found[0].as_list() == [10.0, 20.0, 30.0, 40.0, 1.0]


def synthetic_scene(h=180, w=240):
    """Smooth gradients and rectangles: an image with no face in it."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rgb = np.stack([xx, yy, 0.5 * (xx + yy)], axis=2).astype(np.float32)
    rgb[40:90, 50:120] = (0.9, 0.2, 0.1)
    rgb[100:160, 150:220] = (0.1, 0.3, 0.8)
    return rgb


def test_yunet_finds_no_face_in_a_faceless_image(tmp_path):
    result = detect(synthetic_scene(), models_dir=tmp_path)
    assert result.detector == "yunet" and result.faces == [] and result.note == ""
    assert detect_faces(synthetic_scene(), models_dir=tmp_path) == []


def test_yunet_downscales_large_images(tmp_path):
    # yuface warns above 960 px: the detector must downscale before calling it.
    big = np.kron(synthetic_scene(), np.ones((6, 6, 1), np.float32))  # 1080 x 1440
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = detect(big, models_dir=tmp_path)
    assert result.faces == []


def test_gray_and_tiny_images(tmp_path):
    assert detect(synthetic_scene()[..., :1], models_dir=tmp_path).faces == []
    tiny = detect(np.zeros((5, 5, 3), np.float32), models_dir=tmp_path)
    assert tiny.faces == [] and "too small" in tiny.note


@pytest.mark.parametrize("name", [RETINAFACE_FILE, faces.FACEXLIB_RETINAFACE_FILE])
def test_retinaface_runs_when_its_weights_are_present(tmp_path, name):
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    net = RetinaFace(network_name="mobile0.25", half=False, device=torch.device("cpu"))
    torch.save(net.state_dict(), tmp_path / name)
    faces.RetinaFaceDetector._cache.clear()
    result = detect(synthetic_scene(), models_dir=tmp_path)
    assert result.detector == "retinaface" and result.note == ""
    for face in result.faces:  # untrained weights: whatever it reports must be well formed
        assert len(face.as_list()) == 5 and face.landmarks.shape == (5, 2)
        assert 0.9 <= face.score <= 1.0


def test_unusable_retinaface_file_falls_back_to_yunet(tmp_path):
    (tmp_path / RETINAFACE_FILE).write_bytes(b"not a checkpoint")
    faces.RetinaFaceDetector._cache.clear()
    result = detect(synthetic_scene(), models_dir=tmp_path)
    assert result.detector == "yunet" and RETINAFACE_FILE in result.note


def test_retinaface_without_facexlib_falls_back_with_a_note(tmp_path, monkeypatch):
    import sys

    (tmp_path / RETINAFACE_FILE).write_bytes(b"unused")
    faces.RetinaFaceDetector._cache.clear()
    monkeypatch.setitem(sys.modules, "facexlib.detection.retinaface", None)  # import -> ImportError
    result = detect(synthetic_scene(), models_dir=tmp_path)
    assert result.detector == "yunet" and "facexlib is not importable" in result.note


def test_region_detection_reports_whole_image_coordinates(tmp_path):
    moved = faces._offset([Face((1.0, 2.0, 3.0, 4.0), 0.9, np.zeros((5, 2)))], 10, 20)
    assert moved[0].box == (11.0, 22.0, 3.0, 4.0)
    np.testing.assert_array_equal(moved[0].landmarks, np.tile([10.0, 20.0], (5, 1)))
    assert detect(synthetic_scene(), models_dir=tmp_path, region=(20, 30, 100, 80)).faces == []


@pytest.mark.parametrize("shape, factor", [((40, 60), 4.0), ((1200, 1800), 1000 / 1800), ((600, 700), 1.0)])
def test_detector_view_maps_back_to_the_original_pixels(shape, factor):
    h, w = shape
    bgr8 = np.zeros((h, w, 3), np.uint8)
    bgr8[20:23, 30:33] = 255  # a 3x3 dot centred on pixel (31, 21)
    view = faces.DetectorView(bgr8, 500, 1500, 1000)
    assert view.fx == pytest.approx(factor, rel=0.01)
    gray = view.image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:gray.shape[0], 0:gray.shape[1]]
    centre = (float((xs * gray).sum() / gray.sum()), float((ys * gray).sum() / gray.sum()))
    face = view.face((*centre, *centre), 0.9, np.array([centre] * 5))
    assert face.box[0] == pytest.approx(31, abs=0.1) and face.box[1] == pytest.approx(21, abs=0.1)
    np.testing.assert_allclose(face.landmarks, np.tile([31.0, 21.0], (5, 1)), atol=0.1)
