"""MetaF2N: the official layout and its TensorFlow key map, the inner step (autograd on a copy of
the parameters), and the upscaler's weights policy and adaptation path. Tiny networks only."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

from core.archs import metaf2n as arch
from core.errors import WeightsError
from core.face_adaptation import adapt, build_pairs, face_targets, stored_parameters
from core.faces import faces_from_boxes

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return arch.MetaF2N(dict(TINY), mask_feat=8).eval()


def official_tf_shapes():
    """The official TF graph's variables (model/model.py: Weights + MaskNet), kernels HWIO,
    written out from the paper code's layout rather than from our key map."""
    shapes = {"MODEL/conv_first/weight": (3, 3, 3, 64), "MODEL/conv_first/bias": (64,)}
    for i in range(23):
        for j in range(1, 4):
            for k in range(1, 6):
                cout = 64 if k == 5 else 32
                shapes[f"MODEL/body/{i}/rdb{j}/conv{k}/weight"] = (3, 3, 64 + 32 * (k - 1), cout)
                shapes[f"MODEL/body/{i}/rdb{j}/conv{k}/bias"] = (cout,)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes[f"MODEL/{name}/weight"] = (3, 3, 64, 64)
        shapes[f"MODEL/{name}/bias"] = (64,)
    shapes["MODEL/conv_last/weight"] = (3, 3, 64, 3)
    shapes["MODEL/conv_last/bias"] = (3,)
    for i in range(1, 9):
        cin, cout = (6 if i == 1 else 64), (1 if i == 8 else 64)
        shapes[f"Mask/conv{i}/kernel"] = (3, 3, cin, cout)
        shapes[f"Mask/conv{i}/bias"] = (cout,)
    return shapes


def test_official_configuration_has_the_papers_sizes():
    with torch.device("meta"):
        model = arch.ARCH.build("official")
    assert sum(p.numel() for p in model.backbone.parameters()) == 16_697_987
    assert sum(p.numel() for p in model.mask_net.parameters()) == 225_665


def test_key_map_covers_every_official_tf_variable():
    with torch.device("meta"):
        model = arch.ARCH.build("official")
    shapes = official_tf_shapes()
    mapping = arch.tf_key_map(model)
    assert set(mapping) == set(shapes)
    assert set(mapping.values()) == set(model.state_dict())
    state = model.state_dict()
    for tf_name, key in mapping.items():
        hwio = shapes[tf_name]
        oihw = (hwio[3], hwio[2], hwio[0], hwio[1]) if len(hwio) == 4 else hwio
        assert tuple(state[key].shape) == oihw, tf_name


def tf_arrays(model, rng):
    """Random TF-layout variables for `model`, as an exported checkpoint would hold them."""
    arrays = {}
    for tf_name, key in arch.tf_key_map(model).items():
        shape = tuple(model.state_dict()[key].shape)
        if len(shape) == 4:
            shape = (shape[2], shape[3], shape[1], shape[0])
        arrays[tf_name] = rng.standard_normal(shape).astype(np.float32)
    return arrays


def test_tf_kernels_are_transposed_hwio_to_oihw():
    model = tiny_model()
    arrays = tf_arrays(model, np.random.default_rng(0))
    state = arch.state_from_tf(arrays, model)
    kernel = arrays["MODEL/body/0/rdb2/conv3/weight"]
    weight = state["backbone.body.0.rdb2.conv3.weight"].numpy()
    for o, i, h, w in [(0, 0, 0, 0), (3, 5, 2, 1), (1, 9, 0, 2)]:
        assert weight[o, i, h, w] == kernel[h, w, i, o]
    np.testing.assert_array_equal(state["mask_net.conv8.bias"].numpy(), arrays["Mask/conv8/bias"])
    model.load_state_dict(state, strict=True)


def test_converted_conv_computes_what_tf_computes():
    # TF: out[y, x, o] = sum_{h, w, i} in[y + h - 1, x + w - 1, i] * K[h, w, i, o] + b[o] ('SAME').
    model = tiny_model()
    arrays = tf_arrays(model, np.random.default_rng(1))
    model.load_state_dict(arch.state_from_tf(arrays, model))
    image = np.random.default_rng(2).random((6, 7, 3)).astype(np.float32)
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    kernel, bias = arrays["MODEL/conv_first/weight"], arrays["MODEL/conv_first/bias"]
    expected = np.zeros((6, 7, kernel.shape[3]), np.float32)
    for h in range(3):
        for w in range(3):
            expected += padded[h:h + 6, w:w + 7] @ kernel[h, w]
    expected += bias
    with torch.no_grad():
        got = model.backbone.conv_first(torch.from_numpy(image.transpose(2, 0, 1))[None])
    np.testing.assert_allclose(got[0].numpy().transpose(1, 2, 0), expected, atol=1e-5)


def test_checkpoint_extras_are_ignored_and_problems_named():
    model = tiny_model()
    arrays = tf_arrays(model, np.random.default_rng(0))
    extras = {"global_step": np.array(5), "beta1_power": np.array(0.9, np.float32),
              "Discriminator/conv0/weight": np.zeros((3, 3, 3, 64), np.float32),
              "MODEL/conv_first/weight/Adam": arrays["MODEL/conv_first/weight"],
              "Mask/conv1/kernel/Adam_1": arrays["Mask/conv1/kernel"]}
    arch.state_from_tf({**arrays, **extras}, model)

    missing = dict(arrays)
    del missing["Mask/conv4/bias"]
    with pytest.raises(ValueError, match="missing variable Mask/conv4/bias"):
        arch.state_from_tf(missing, model)
    wrong = {**arrays, "MODEL/conv_hr/weight": np.zeros((3, 3, 8, 9), np.float32)}
    with pytest.raises(ValueError, match="MODEL/conv_hr/weight: shape"):
        arch.state_from_tf(wrong, model)
    with pytest.raises(ValueError, match="unexpected variable MODEL/body/7/rdb1/conv1/weight"):
        arch.state_from_tf({**arrays, "MODEL/body/7/rdb1/conv1/weight": np.zeros(1)}, model)


def test_npz_export_round_trip(tmp_path):
    model = tiny_model()
    arrays = tf_arrays(model, np.random.default_rng(0))
    np.savez(tmp_path / "export.npz", **arrays)  # names with '/' survive np.savez
    loaded = arch.load_tf_npz(tmp_path / "export.npz")
    assert set(loaded) == set(arrays)
    np.testing.assert_array_equal(loaded["MODEL/conv_last/weight"], arrays["MODEL/conv_last/weight"])


def test_legacy_tf_bicubic_resize():
    ramp = torch.arange(10, dtype=torch.float32).reshape(1, 1, 1, 10).expand(1, 1, 3, 10)
    up = arch.tf_legacy_bicubic_resize(ramp, (12, 40))
    # No half-pixel shift: output 4k samples input k exactly.
    torch.testing.assert_close(up[..., ::4], ramp[:, :, :1].expand(1, 1, 12, 10))
    # Keys cubic with a = -0.75 at offsets 1.25, 0.25, 0.75, 1.75 weighs -0.10546875,
    # 0.87890625, 0.26171875, -0.03515625 (worked by hand); at the left edge tap -1 is clamped to 0.
    assert float(up[0, 0, 0, 5]) == pytest.approx(1 * 0.87890625 + 2 * 0.26171875 - 3 * 0.03515625)
    assert float(up[0, 0, 0, 1]) == pytest.approx(1 * 0.26171875 - 2 * 0.03515625)
    assert not torch.allclose(up, torch.nn.functional.interpolate(ramp, (12, 40), mode="bicubic"))
    constant = torch.full((2, 3, 5, 6), 0.3)
    torch.testing.assert_close(arch.tf_legacy_bicubic_resize(constant, (20, 24)),
                               torch.full((2, 3, 20, 24), 0.3))


def textured(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    return np.kron(small, np.ones((4, 4, 1), np.float32))[:h, :w]


def test_pairs_are_aligned_shrunk_copies_of_the_target():
    target = textured(96, 80)
    pairs = build_pairs([target], seed=3)
    assert pairs.lr.shape == (16, 3, 16, 16) and pairs.hr.shape == (16, 3, 64, 64)
    assert pairs.faces == 1
    again = build_pairs([target], seed=3)
    assert torch.equal(pairs.lr, again.lr) and torch.equal(pairs.hr, again.hr)
    # Every LR patch is the ×4 reduction of its target patch (up to the reduction's borders).
    from core.degradations import bicubic_downsample
    shrunk = bicubic_downsample(pairs.hr, 4)
    assert (shrunk[..., 2:-2, 2:-2] - pairs.lr[..., 2:-2, 2:-2]).abs().max() < 1 / 255 + 1e-6


def test_pairs_for_small_and_absent_faces():
    assert build_pairs([textured(12, 40)]) is None
    assert build_pairs([]) is None
    # The largest face is 6 LR pixels high: 6×6 patches, and the 5-pixel face is left out.
    small = build_pairs([textured(20, 20), textured(24, 30)])
    assert small.faces == 1 and small.lr.shape == (16, 3, 6, 6) and small.hr.shape == (16, 3, 24, 24)
    many = build_pairs([textured(64, 64, s) for s in range(6)] + [textured(40, 200)], max_faces=4)
    assert many.faces == 4 and many.lr.shape == (64, 3, 16, 16)


def test_face_targets_use_alignment_or_the_box():
    rgb = textured(120, 160)
    boxed = face_targets(rgb, faces_from_boxes([(150, 100, 30, 30), (10, 20, 40, 50)]))
    assert [t.shape for t in boxed] == [(50, 40, 3), (20, 10, 3)]  # clipped, largest first
    np.testing.assert_array_equal(boxed[0], rgb[20:70, 10:50])


def test_inner_step_is_one_sgd_step_and_leaves_the_model_alone():
    model = tiny_model()
    pairs = build_pairs([textured(64, 64)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fractions = []
    adapted, loss = adapt(model, pairs, chunk=5, progress=fractions.append)
    assert len(fractions) == -(-len(pairs.lr) // 5) and fractions == sorted(fractions) and fractions[-1] == 1.0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} was modified"
    # The same step written out with plain autograd on a copy of the module.
    reference = tiny_model()
    with torch.no_grad():
        weight = reference.loss_weight(pairs.lr, pairs.hr)
    ref_loss = (weight * (pairs.hr - reference.backbone(pairs.lr)).abs()).mean()
    ref_loss.backward()
    assert abs(loss - float(ref_loss.detach())) < 1e-6
    moved = 0
    for name, p in reference.backbone.named_parameters():
        torch.testing.assert_close(adapted[name], p.detach() - 0.01 * p.grad, atol=1e-7, rtol=1e-5)
        moved += int(not torch.equal(adapted[name], p.detach()))
    assert moved == len(adapted)  # every backbone parameter takes the step


def test_inner_step_works_under_inference_mode_and_mask_gates_it():
    model = tiny_model()
    pairs = build_pairs([textured(64, 64)])
    with torch.inference_mode():
        adapted, _ = adapt(model, pairs)
    assert any(not torch.equal(adapted[k], v) for k, v in stored_parameters(model).items())
    with torch.no_grad():  # a MaskNet that outputs 0 everywhere switches adaptation off
        model.mask_net.conv8.weight.zero_()
        model.mask_net.conv8.bias.fill_(-1.0)
    adapted, loss = adapt(model, pairs)
    assert loss == 0.0
    for key, value in stored_parameters(model).items():
        assert torch.equal(adapted[key], value)


def test_adapted_parameters_drive_the_backbone():
    model = tiny_model()
    adapted, _ = adapt(model, build_pairs([textured(64, 64)]))
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        plain = model(x)
        tuned = functional_call(model.backbone, adapted, (x,))
        same = functional_call(model.backbone, stored_parameters(model), (x,))
    assert tuned.shape == (1, 3, 40, 48)
    assert torch.equal(same, plain) and not torch.allclose(tuned, plain)


# ---------------------------------------------------------------- the upscaler


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path))
    return tmp_path


def test_without_meta_trained_weights_it_lists_missing_and_refuses(models):
    from core.methods.metaf2n import MetaF2NUpscaler

    configs = {c.name: c for c in MetaF2NUpscaler.configs()}
    assert set(configs) == {"official", "lite"}
    assert all(c.weights == "missing" for c in configs.values())
    assert configs["official"].params == 16_697_987 + 225_665
    with pytest.raises(WeightsError, match="no meta-trained weights"):
        MetaF2NUpscaler("lite")


def test_a_real_esrgan_checkpoint_alone_is_not_metaf2n(models):
    from core.archs.rrdbnet import RRDBNet
    from core.methods.metaf2n import MetaF2NUpscaler
    from core.weights import save_state_dict

    with torch.device("meta"):
        shapes = RRDBNet().state_dict()
    save_state_dict({k: torch.zeros(v.shape) for k, v in shapes.items()}, models / "RealESRGAN_x4plus.safetensors")
    assert all(c.weights == "missing" for c in MetaF2NUpscaler.configs())


def test_official_tf_export_is_recognised_and_loaded(models):
    from core.methods.metaf2n import TF_EXPORT, MetaF2NUpscaler

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in arch.ARCH.build("official").state_dict().items()}
    with torch.device("meta"):
        mapping = arch.tf_key_map(arch.ARCH.build("official"))
    arrays = {}
    for tf_name, key in mapping.items():
        shape = tuple(shapes[key])
        shape = (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape
        arrays[tf_name] = np.full(shape, 0.001, np.float32)
    np.savez(models / TF_EXPORT, **arrays)
    status = {c.name: c.weights for c in MetaF2NUpscaler.configs()}
    assert status == {"official": "user", "lite": "missing"}
    upscaler = MetaF2NUpscaler("official")
    assert float(upscaler.model.mask_net.conv1.weight.detach()[0, 0, 0, 0]) == pytest.approx(0.001)

    (models / TF_EXPORT).write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(WeightsError, match=TF_EXPORT):
        MetaF2NUpscaler("official")


def lite_with_weights(models):
    from core.methods.metaf2n import MetaF2NUpscaler
    from core.weights import save_state_dict

    torch.manual_seed(0)
    save_state_dict(arch.ARCH.build("lite").state_dict(), models / "metaf2n_lite.safetensors")
    return MetaF2NUpscaler("lite")


def test_prepare_adapts_on_face_boxes_and_tiles_use_the_result(models):
    from core.engine import UpscaleRequest

    upscaler = lite_with_weights(models)
    stored = {k: v.clone() for k, v in upscaler.model.state_dict().items()}
    rgb = textured(80, 96)
    stages = []
    context = upscaler.prepare(rgb, UpscaleRequest(model="metaf2n", faces=[(8, 4, 72, 72)]),
                               lambda f, s: stages.append(s))
    assert "adapted to 1 face" in stages[-1]
    tile = np.ascontiguousarray(rgb[:20, :24].transpose(2, 0, 1)[None])
    out = upscaler.run_tile(tile, context)
    assert out.shape == (1, 3, 80, 96) and out.dtype == np.float32
    with torch.no_grad():
        plain = upscaler.model(torch.from_numpy(tile)).numpy()
    assert not np.allclose(out, plain)
    for key, value in upscaler.model.state_dict().items():
        assert torch.equal(value, stored[key])


def test_prepare_without_usable_faces_keeps_the_stored_weights(models):
    from core.engine import UpscaleRequest

    upscaler = lite_with_weights(models)
    stages = []
    for faces in ("none", "auto", [(0, 0, 10, 10)]):
        context = upscaler.prepare(textured(64, 64), UpscaleRequest(model="metaf2n", faces=faces),
                                   lambda f, s: stages.append(s))
        for key, value in stored_parameters(upscaler.model).items():
            assert torch.equal(context[key], value)
        assert "unadapted" in stages[-1]
