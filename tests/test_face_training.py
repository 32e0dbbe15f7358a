"""The face restorer and MetaF2N recipes on tiny synthetic data: the second-order term reaches
MaskNet, both recipes warm-start, resume and write weights the product loads, and the restorer's
card carries the measured gain."""
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from core.archs import metaf2n as arch
from core.archs.rrdbnet import RRDBNet, CONFIGS as RRDB_CONFIGS
from core.train import face_restorer as restorer_recipe
from core.train import metaf2n as metaf2n_recipe
from core.train.__main__ import parse_args
from core.train.data import PhotoPool
from core.train.validation import ValidationSet
from core.weights import save_state_dict
from tests.test_train import StoppingPool, log_lines, synthetic_photos


def face_files(folder, count=4):
    """Small JPEG 'faces' (the recipes read UTKFace's JPEGs from disk)."""
    folder.mkdir()
    for i, photo in enumerate(synthetic_photos(count, 64)):
        Image.fromarray(photo).save(folder / f"{i}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))


def tensors(photos):
    return torch.from_numpy(np.stack(photos).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()


def test_masknet_learns_only_through_the_inner_step():
    torch.manual_seed(0)
    model = arch.MetaF2N({"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, mask_feat=8)
    lq, target = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 32, 32)
    query_lr, query_hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    before = model.loss_weight(lq, target).detach()

    # Without the mask regulariser the outer loss depends on MaskNet only through θ'.
    losses = metaf2n_recipe.meta_loss(model, (lq, target), query_lr, query_hr)
    losses["l1"].backward()
    assert sum(float(p.grad.abs().sum()) for p in model.mask_net.parameters()) > 0
    with pytest.raises(RuntimeError, match="not have been used"):  # first order: no path to MaskNet
        params = dict(model.backbone.named_parameters())
        inner = (model.loss_weight(lq, target) * (target - model(lq)).abs()).mean()
        grads = torch.autograd.grad(inner, tuple(params.values()))  # create_graph=False
        fast = {n: p - 0.01 * g for (n, p), g in zip(params.items(), grads)}
        out = torch.func.functional_call(model.backbone, fast, (query_lr,))
        torch.autograd.grad((out - query_hr).abs().mean(), list(model.mask_net.parameters()))

    optimizer = torch.optim.Adam(model.mask_net.parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        metaf2n_recipe.meta_loss(model, (lq, target), query_lr, query_hr)["total"].backward()
        optimizer.step()
    after = model.loss_weight(lq, target).detach()
    assert float(after.std()) > 1e-4          # not a constant map
    assert not torch.allclose(after, before)  # and it moved


def trunk(folder):
    folder.mkdir()
    torch.manual_seed(1)
    save_state_dict(RRDBNet(**RRDB_CONFIGS["lite"]).state_dict(), folder / "rrdbnet_lite.safetensors")
    return folder


def test_metaf2n_recipe_from_the_trunk_resumes_and_writes_loadable_weights(tmp_path, models):
    faces = restorer_recipe.FacePool(face_files(tmp_path / "faces"))
    photos = synthetic_photos()
    validation = metaf2n_recipe.MetaValidation(tensors(synthetic_photos(2, 32)), tensors(synthetic_photos(2, 48)), None)
    out = tmp_path / "run"
    common = ["metaf2n", "--out", str(out), "--steps", "3", "--tasks", "1", "--queries", "1", "--patch", "8",
              "--log-every", "1", "--val-steps", "100", "--init", str(trunk(tmp_path / "trunk"))]
    metaf2n_recipe.train(parse_args(common), faces, StoppingPool(photos, 32, stop_at=2), validation)
    assert "continue with --resume" in log_lines(out)[-1]
    metaf2n_recipe.train(parse_args(common + ["--resume"]), faces, PhotoPool(photos, 32), validation)
    lines = log_lines(out)
    assert any("initialised from a finished rrdbnet run" in line for line in lines)
    assert any("targets HR faces" in line for line in lines)
    train_lines = [line for line in lines if "| train |" in line]
    assert train_lines and all(float(line.split("mask_grad ")[1].split(" ")[0]) > 0 for line in train_lines)
    assert any("gain_adapt" in line for line in lines) and lines[-1].endswith("finished")

    state = load_file(str(out / "metaf2n_lite.safetensors"))
    trunk_state = load_file(str(tmp_path / "trunk" / "rrdbnet_lite.safetensors"))
    assert not torch.equal(state["backbone.conv_first.weight"], trunk_state["conv_first.weight"])
    (models / "metaf2n_lite.safetensors").write_bytes((out / "metaf2n_lite.safetensors").read_bytes())
    from core.methods.metaf2n import MetaF2NUpscaler
    assert {c.name: c.weights for c in MetaF2NUpscaler.configs()}["lite"] == "user"


def test_face_restorer_recipe_writes_weights_and_a_card_with_its_gain(tmp_path, models):
    from core import face_restore

    faces = restorer_recipe.FacePool(face_files(tmp_path / "faces"))
    validation = ValidationSet(["iso2.0"], hr=tensors(synthetic_photos(2, 32)))
    out = tmp_path / "run"
    restorer_recipe.train(parse_args(["face_restorer", "--out", str(out), "--steps", "3", "--batch", "2",
                                      "--patch", "8", "--loader-workers", "0", "--val-steps", "100"]),
                          faces, validation)
    card = (out / "face_restorer_lite.md").read_text()
    val = [line for line in log_lines(out) if "| val |" in line][-1]
    gain = float(val.split("gain_iso2.0 ")[1].split(" ")[0])
    assert f"| iso2.0 | {validation.bicubic['iso2.0']:.2f} |" in card and f"{gain:+.2f} |" in card
    assert "{" not in card
    assert not face_restore.available()
    (models / "face_restorer_lite.safetensors").write_bytes((out / "face_restorer_lite.safetensors").read_bytes())
    assert face_restore.available() and isinstance(face_restore.load(), torch.nn.Module)


def test_restorer_targets_replace_the_hr_face():
    torch.manual_seed(0)
    restorer = restorer_recipe.arch.ARCH.build("lite").eval()
    face_lr, face_hr = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 32, 32)
    assert metaf2n_recipe.face_target(None, face_lr, face_hr) is face_hr
    target = metaf2n_recipe.face_target(restorer, face_lr, face_hr)
    # a fresh restorer is the identity on its input: the bicubic-enlarged LR face
    up = torch.nn.functional.interpolate(face_lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(target, up.clamp(0, 1))
