"""Smoke runs of the training recipes: a few steps on synthetic photos, tiny patches.
Real training never runs here."""
import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from core import weights
from core.errors import WeightsError
from core.archs import cmdsr, kdsr
from core.train import cmdsr as cmdsr_recipe
from core.train import kdsr as kdsr_recipe
from core.train.__main__ import parse_args
from core.train.data import PhotoPool
from core.train.run import clip_gradients, cosine_lr, load_deepened, mixed_precision, warm_start
from core.train.snapshot import snapshot
from core.train.validation import ValidationSet


def synthetic_photos(count=3, size=160):
    """Smooth gradients with a few sharp-edged shapes: enough structure for blur to matter."""
    rng = np.random.default_rng(0)
    photos = []
    for _ in range(count):
        yy, xx = np.mgrid[0:size, 0:size] / size
        image = np.stack([xx, yy, 0.5 * (xx + yy)], axis=2)
        for _ in range(6):
            y, x, r = rng.integers(0, size, 3)
            image[max(y - r // 4, 0):y + r // 4, max(x - r // 4, 0):x + r // 4] = rng.random(3)
        photos.append((image * 255).astype(np.uint8))
    return photos


def validation(settings, size=64):
    hr = torch.from_numpy(np.stack(synthetic_photos(2, size)).astype(np.float32) / 255).permute(0, 3, 1, 2)
    return ValidationSet(settings, hr=hr.contiguous())


def log_lines(out):
    return (out / "log.txt").read_text().splitlines()


class StoppingPool(PhotoPool):
    """Sends this process SIGTERM while drawing batch number `stop_at`, as `kill` would."""

    def __init__(self, images, min_size, stop_at):
        super().__init__(images, min_size)
        self.calls, self.stop_at = 0, stop_at

    def batch(self, count, size, rng):
        self.calls += 1
        if self.calls == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().batch(count, size, rng)


def test_kdsr_recipe_stops_cleanly_resumes_and_runs_all_phases(tmp_path):
    out = tmp_path / "kdsr"
    val = validation(["iso2.0"])
    args = parse_args(["kdsr", "--out", str(out), "--batch", "2", "--patch", "8", "--steps", "10",
                       "--val-steps", "5", "--log-every", "1"])
    run = kdsr_recipe.train(args, StoppingPool(synthetic_photos(), 32, stop_at=4), val)
    assert run.step == 4  # the step in flight finishes, then the run saves and stops
    assert (out / "checkpoint.pt").exists() and not (out / "kdsr_lite.safetensors").exists()
    assert "stopped before the end" in log_lines(out)[-1]

    args.resume = True
    run = kdsr_recipe.train(args, PhotoPool(synthetic_photos(), min_size=32), val)
    lines = log_lines(out)
    assert run.step == 10
    assert any("resumed from checkpoint" in line for line in lines)
    phases = [line.split("| phase ")[1] for line in lines if "| phase " in line]
    assert phases == ["teacher", "student_kd", "student"]
    assert any("val student" in line and "psnr_iso2.0" in line for line in lines)
    assert any("| kd " in line and "| l1 " in line for line in lines)
    student = kdsr.ARCH.build("lite")
    student.load_state_dict(load_file(str(out / "kdsr_lite.safetensors")), strict=True)
    teacher = kdsr.build_teacher("lite")
    teacher.load_state_dict(load_file(str(out / "teacher.safetensors")), strict=True)


def test_snapshot_of_a_checkpoint_is_the_runs_inference_weights(tmp_path):
    for recipe, module, args in (
            ("kdsr", kdsr_recipe, ["--batch", "2", "--patch", "8"]),
            ("cmdsr", cmdsr_recipe, ["--tasks", "2", "--queries", "2", "--region", "128", "--patch", "8"])):
        out = tmp_path / recipe
        module.train(parse_args([recipe, "--out", str(out), "--steps", "3", "--val-steps", "100", *args]),
                     PhotoPool(synthetic_photos(), min_size=128), validation(["iso2.0"], size=128))
        snap = load_file(str(snapshot(out)))
        final = load_file(str(out / f"{recipe}_lite.safetensors"))
        assert snap.keys() == final.keys() and all(torch.equal(snap[k], final[k]) for k in final)


def test_same_seed_same_weights(tmp_path):
    def weights_after(out):
        args = parse_args(["kdsr", "--out", str(out), "--batch", "2", "--patch", "8", "--steps", "2",
                           "--val-steps", "100"])
        kdsr_recipe.train(args, PhotoPool(synthetic_photos(), min_size=32), validation(["iso2.0"]))
        return load_file(str(out / "kdsr_lite.safetensors"))

    a, b = weights_after(tmp_path / "a"), weights_after(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train_and_say_which(tmp_path, precision):
    """bf16 runs the forward pass in bfloat16 (convs really are bf16) with fp32 weights and losses."""
    with mixed_precision(precision):
        dtype = torch.nn.Conv2d(3, 4, 3)(torch.rand(1, 3, 8, 8)).dtype
    assert dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    out = tmp_path / precision
    args = parse_args(["kdsr", "--out", str(out), "--batch", "2", "--patch", "8", "--steps", "4",
                       "--val-steps", "100", "--precision", precision])
    kdsr_recipe.train(args, PhotoPool(synthetic_photos(), min_size=32), validation(["iso2.0"]))
    assert any(f"precision {precision}" in line for line in log_lines(out))
    state = load_file(str(out / "kdsr_lite.safetensors"))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values())


def test_cmdsr_recipe_trains_with_tasks_and_contrastive_steps(tmp_path):
    out = tmp_path / "cmdsr"
    pool = PhotoPool(synthetic_photos(size=160), min_size=128)
    args = parse_args(["cmdsr", "--out", str(out), "--steps", "4", "--tasks", "2", "--queries", "2",
                       "--region", "128", "--patch", "8", "--condition-every", "2", "--val-steps", "4",
                       "--log-every", "1"])
    before = cmdsr.ARCH.build("lite")
    cmdsr_recipe.train(args, pool, validation(["iso2.6+n15"], size=128))
    lines = log_lines(out)
    assert sum("| contrast " in line for line in lines) == 2
    assert any(line.split(" | ")[2] == "val" for line in lines)
    state = load_file(str(out / "cmdsr_lite.safetensors"))
    assert state.keys() == before.state_dict().keys()


def test_task_contrastive_loss_prefers_separated_tasks():
    g = torch.Generator().manual_seed(0)
    same = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    good = cmdsr_recipe.task_contrastive_loss(same, same.clone(), g)
    bad = cmdsr_recipe.task_contrastive_loss(same, same.flip(0), g)
    assert float(good) < float(bad)


def test_export_bundles_weights_with_a_manifest_entry(tmp_path):
    from core.train.export import export

    source = tmp_path / "run.safetensors"
    weights.save_state_dict(cmdsr.ARCH.build("lite").state_dict(), source)
    bundle = tmp_path / "bundle"
    (bundle).mkdir()
    (bundle / "manifest.json").write_text('{"files": {"other.safetensors": {"sha256": "x"}}}')
    target = export(source, "cmdsr", "lite", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())["files"]
    assert target.name == "cmdsr_lite.safetensors"
    assert manifest["cmdsr_lite.safetensors"]["sha256"] == weights.sha256_file(target)
    assert manifest["cmdsr_lite.safetensors"]["card"] == "cmdsr_lite.md"
    assert "other.safetensors" in manifest


def test_export_bundles_a_face_restorer_with_its_card_and_the_engine_uses_it(tmp_path, monkeypatch):
    from core import face_restore
    from core.archs.face_restorer import ARCH as RESTORER
    from core.engine import Engine, UpscaleRequest
    from core.image_io import Image
    from core.train.export import export
    from tests.test_face_paths import face_photo

    run = tmp_path / "train_runs" / "face_restorer_lite"  # what the recipe leaves at the end
    restorer = RESTORER.build("lite")
    with torch.no_grad():
        restorer.conv_last.bias.fill_(0.3)  # a fresh restorer is the identity: make it visible
    weights.save_state_dict(restorer.state_dict(), run / "face_restorer_lite.safetensors")
    (run / "face_restorer_lite.md").write_text("# face restorer (lite)\n\nGain over bicubic: +0.50 dB\n")
    bundle = tmp_path / "bundle"
    target = export(run / "face_restorer_lite.safetensors", "face_restorer", "lite", bundle)
    entry = json.loads((bundle / "manifest.json").read_text())["files"][target.name]
    assert entry == {"sha256": weights.sha256_file(target), "model": "face_restorer", "config": "lite",
                     "card": "face_restorer_lite.md"}
    assert (bundle / entry["card"]).read_text() == (run / "face_restorer_lite.md").read_text()

    monkeypatch.setattr(weights, "BUNDLED_DIR", bundle)
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(tmp_path / "empty-models"))
    assert face_restore.status() == "bundled"
    stages: list[str] = []
    Engine().upscale(Image(face_photo()), UpscaleRequest(model="bicubic", restore_faces=True),
                     lambda f, s: stages.append(s))
    assert stages[-1].endswith("; 1 face(s) restored")
    data = target.read_bytes()
    target.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))  # a damaged bundle is refused, not used
    with pytest.raises(WeightsError, match="damaged"):
        Engine().upscale(Image(face_photo()), UpscaleRequest(model="bicubic", restore_faces=True))


def test_export_refuses_weights_of_another_shape(tmp_path):
    from core.errors import WeightsError
    from core.train.export import export

    source = tmp_path / "run.safetensors"
    weights.save_state_dict(kdsr.ARCH.build("lite").state_dict(), source)
    with pytest.raises(WeightsError, match="do not fit"):
        export(source, "cmdsr", "lite", tmp_path / "bundle")


def test_kdsr_init_continues_from_a_finished_run_in_the_student_phase(tmp_path):
    pool = PhotoPool(synthetic_photos(), min_size=32)
    val = validation(["iso2.0"])
    first = tmp_path / "first"
    kdsr_recipe.train(parse_args(["kdsr", "--out", str(first), "--batch", "2", "--patch", "8",
                                  "--steps", "4", "--val-steps", "100"]), pool, val)
    out = tmp_path / "continued"
    common = ["kdsr", "--out", str(out), "--init", str(first), "--batch", "2", "--patch", "8",
              "--steps", "4", "--val-steps", "100"]
    # lr 0: the weights written are exactly the ones the run started from
    kdsr_recipe.train(parse_args(common + ["--lr", "0"]), pool, val)
    start = load_file(str(first / "kdsr_lite.safetensors"))
    end = load_file(str(out / "kdsr_lite.safetensors"))
    assert all(torch.equal(start[k], end[k]) for k in start)
    # ... and the continued run can seed another continuation
    again = tmp_path / "again"
    kdsr_recipe.train(parse_args(["kdsr", "--out", str(again), "--init", str(out), *common[5:], "--lr", "0"]), pool, val)
    assert all(torch.equal(start[k], v) for k, v in load_file(str(again / "kdsr_lite.safetensors")).items())

    # a folder with the student alone (the bundled file) continues it with L1 only
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "kdsr_lite.safetensors").write_bytes((first / "kdsr_lite.safetensors").read_bytes())
    alone = tmp_path / "alone"
    kdsr_recipe.train(parse_args(["kdsr", "--out", str(alone), "--init", str(bare), *common[5:], "--lr", "0",
                                  "--log-every", "1"]), pool, val)
    assert all(torch.equal(start[k], v) for k, v in load_file(str(alone / "kdsr_lite.safetensors")).items())
    student_lines = [line for line in log_lines(alone) if "| student_l1 |" in line]
    assert student_lines and not any("| kd " in line for line in student_lines)
    assert all("| l1 " in line for line in student_lines)
    assert not (alone / "teacher.safetensors").exists()

    # a stopped continuation resumes in the student phase: no teacher phase, no G copied over
    out = tmp_path / "resumed"
    common[2] = str(out)
    kdsr_recipe.train(parse_args(common), StoppingPool(synthetic_photos(), 32, stop_at=2), val)
    kdsr_recipe.train(parse_args(common + ["--resume"]), pool, val)
    phases = [line.split("| phase ")[1] for line in log_lines(out) if "| phase " in line]
    assert phases == ["student"]
    assert any("resumed from checkpoint" in line for line in log_lines(out))
    assert not any(line.split(" | ")[2] == "teacher" for line in log_lines(out))
    assert "finished" in log_lines(out)[-1]


def test_cmdsr_init_starts_from_the_run_weights(tmp_path):

    pool = PhotoPool(synthetic_photos(size=160), min_size=128)
    first = tmp_path / "first"
    first.mkdir()
    start = cmdsr.ARCH.build("lite").state_dict()
    weights.save_state_dict(start, first / "cmdsr_lite.safetensors")
    out = tmp_path / "continued"
    args = parse_args(["cmdsr", "--out", str(out), "--init", str(first), "--lr", "0", "--steps", "2",
                       "--tasks", "2", "--queries", "1", "--region", "128", "--patch", "8",
                       "--val-steps", "100"])
    cmdsr_recipe.train(args, pool, validation(["iso2.0"], size=128))
    end = load_file(str(out / "cmdsr_lite.safetensors"))
    assert all(torch.equal(start[k], end[k]) for k in start)


def test_cmdsr_noise_covers_its_range_and_favours_mild_noise():
    noise = cmdsr_recipe.sample_task_degradations(4000, torch.Generator().manual_seed(0)).noise_sigma * 255
    assert 0 <= float(noise.min()) < 1 and 74 < float(noise.max()) <= 75
    assert 0.40 < float((noise <= 15).float().mean()) < 0.50


def test_a_deeper_configuration_starts_as_the_trained_net():
    """--init may grow the net: added blocks start as identities, so outputs match exactly."""
    torch.manual_seed(0)
    lr, support = torch.rand(2, 3, 12, 12), torch.rand(1, 60, 32, 32)
    shallow = kdsr.KDSRStudent(**{**kdsr.CONFIGS["lite"], "n_blocks": 3})
    deep = kdsr.ARCH.build("lite")
    added = load_deepened(deep, shallow.state_dict(), deep.G.body[0].body, "G.body.0.body.", "conv1")
    assert added == list(range(3, kdsr.CONFIGS["lite"]["n_blocks"]))
    shallow_cm = cmdsr.CMDSR(**{**cmdsr.CONFIGS["lite"], "n_blocks": 2})
    for p in shallow_cm.sr_net.output_conv.parameters():  # not zero, so the body matters
        torch.nn.init.normal_(p, std=0.1)
    deep_cm = cmdsr.ARCH.build("lite")
    load_deepened(deep_cm, shallow_cm.state_dict(), deep_cm.sr_net.backbone, "sr_net.backbone.", "conv2",
                  cmdsr_recipe.modulations_of_block)
    with torch.no_grad():
        assert torch.equal(shallow(lr), deep(lr))
        assert torch.equal(shallow_cm(lr, support), deep_cm(lr, support))
        assert not torch.equal(shallow_cm(lr, support), shallow_cm(lr, torch.zeros_like(support)))


def test_growing_refuses_weights_that_do_not_fit():
    deep = kdsr.ARCH.build("lite")
    deeper = kdsr.KDSRStudent(**{**kdsr.CONFIGS["lite"], "n_blocks": kdsr.CONFIGS["lite"]["n_blocks"] + 1})
    state = deeper.state_dict()
    with pytest.raises(ValueError, match="do not fit"):
        load_deepened(deep, state, deep.G.body[0].body, "G.body.0.body.", "conv1")
    del state["E_st.E.0.weight"]
    state = {k: v for k, v in state.items() if not k.startswith(f"G.body.0.body.{len(deep.G.body[0].body)}.")}
    with pytest.raises(ValueError, match="do not fit"):
        load_deepened(deep, state, deep.G.body[0].body, "G.body.0.body.", "conv1")


def test_kdsr_new_encoders_keep_the_sr_net_and_run_all_phases(tmp_path):
    pool = PhotoPool(synthetic_photos(), min_size=32)
    val = validation(["iso2.0"])
    first = tmp_path / "first"
    first.mkdir()
    source = kdsr.ARCH.build("lite").state_dict()
    save_file(source, str(first / "kdsr_lite.safetensors"))
    out = tmp_path / "adaptive"
    args = parse_args(["kdsr", "--out", str(out), "--init", str(first), "--new-encoders", "--lr", "0",
                       "--batch", "2", "--patch", "8", "--steps", "12", "--val-steps", "100", "--log-every", "1"])
    kdsr_recipe.train(args, pool, val)
    end = load_file(str(out / "kdsr_lite.safetensors"))
    assert all(torch.equal(source[k], end[k]) for k in source if k.startswith("G."))
    assert not torch.equal(source["E_st.E.0.weight"], end["E_st.E.0.weight"])
    phases = [line.split("| phase ")[1] for line in log_lines(out) if "| phase " in line]
    assert phases == ["teacher", "student_kd", "student"]
    assert any("idr_spread" in line for line in log_lines(out))


def test_degradation_targets_read_blur_width_and_noise():
    from core import degradations as deg

    params = deg.ClassicBatch(deg.isotropic_gaussian_kernels(torch.tensor([0.2, 2.1, 4.0])),
                              torch.tensor([0.0, 37.5, 75.0]) / 255)
    assert torch.allclose(deg.kernel_width(params.kernels[1:2]), torch.tensor([2.1]), atol=0.01)
    aniso = deg.anisotropic_gaussian_kernels(torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([0.7]))
    assert torch.allclose(deg.kernel_width(aniso), torch.tensor([(5.0) ** 0.5]), atol=0.01)
    targets = deg.degradation_targets(params, noise_max=75.0)
    assert torch.allclose(targets[:, 1], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5)
    assert targets[0, 0] < -0.8 and abs(float(targets[1, 0])) < 0.01 and 0.9 < targets[2, 0] < 1.05


def test_cmdsr_degradation_loss_trains_the_condition_net(tmp_path):
    pool = PhotoPool(synthetic_photos(size=160), min_size=128)
    out = tmp_path / "aux"
    args = parse_args(["cmdsr", "--out", str(out), "--steps", "2", "--tasks", "2", "--queries", "1",
                       "--region", "128", "--patch", "8", "--val-steps", "100", "--log-every", "1",
                       "--degradation-weight", "0.1"])
    cmdsr_recipe.train(args, pool, validation(["iso2.0"], size=128))
    assert any("| degradation " in line for line in log_lines(out))
    state = torch.load(out / "checkpoint.pt", weights_only=True)["state"]
    assert state["degradation_head"]["weight"].shape == (2, 128)


def test_kdsr_degradation_loss_trains_the_teacher_encoder_and_resumes(tmp_path):
    out = tmp_path / "kdsr_aux"
    common = ["kdsr", "--out", str(out), "--batch", "2", "--patch", "8", "--steps", "10",
              "--val-steps", "100", "--log-every", "1", "--degradation-weight", "0.1"]
    val = validation(["iso2.0"])
    kdsr_recipe.train(parse_args(common), StoppingPool(synthetic_photos(), 32, stop_at=2), val)
    head = torch.load(out / "checkpoint.pt", weights_only=True)["state"]["degradation_head"]
    assert head["weight"].shape == (2, 32)
    kdsr_recipe.train(parse_args(common + ["--resume"]), PhotoPool(synthetic_photos(), min_size=32), val)
    teacher_lines = [line for line in log_lines(out) if "| teacher |" in line]
    assert teacher_lines and all("| degradation " in line for line in teacher_lines)
    assert not any("| degradation " in line for line in log_lines(out) if "| student |" in line)
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)["state"]["degradation_head"]
    assert not torch.equal(resumed["weight"], head["weight"])  # trained on after the resume


def test_cmdsr_new_condition_net_keeps_what_the_base_net_computed(tmp_path):
    torch.manual_seed(0)
    model = cmdsr.ARCH.build("lite").eval()
    for layer in model.sr_net.modulations.modulations:
        torch.nn.init.normal_(layer.weight, std=0.05)
    for p in model.sr_net.output_conv.parameters():
        torch.nn.init.normal_(p, std=0.1)
    support, lr = torch.rand(1, 60, 32, 32), torch.rand(1, 3, 12, 12)
    old_task = model.condition_net(support).detach()
    with torch.no_grad():
        before = model(lr, support)
        cmdsr_recipe.replace_condition_net(model, support)
        after = model.sr_net(lr, model.sr_net.modulations(torch.zeros(1, 128)))
    assert torch.allclose(before, after, atol=1e-5)
    assert all(not layer.weight.detach().any() for layer in model.sr_net.modulations.modulations)
    assert not torch.equal(model.condition_net(support), old_task)

    first = tmp_path / "first"
    first.mkdir()
    save_file(cmdsr.ARCH.build("lite").state_dict(), str(first / "cmdsr_lite.safetensors"))
    out = tmp_path / "adaptive"
    args = parse_args(["cmdsr", "--out", str(out), "--init", str(first), "--new-encoders", "--steps", "2",
                       "--tasks", "2", "--queries", "1", "--region", "128", "--patch", "8",
                       "--val-steps", "100", "--degradation-weight", "0.1"])
    cmdsr_recipe.train(args, PhotoPool(synthetic_photos(size=160), min_size=128), validation(["iso2.0"], size=128))
    assert any("new ConditionNet" in line for line in log_lines(out))
    assert "finished" in log_lines(out)[-1]


def test_clip_gradients_returns_the_norm_and_scales_to_the_bound():
    layer = torch.nn.Linear(4, 3)
    (layer(torch.ones(2, 4)) * 1000).sum().backward()
    norm = float(clip_gradients(layer.parameters(), None))
    assert norm > 10 and math.isclose(norm, float(torch.cat([p.grad.flatten() for p in layer.parameters()]).norm()),
                                      rel_tol=1e-5)
    assert math.isclose(float(clip_gradients(layer.parameters(), 0.5)), norm, rel_tol=1e-5)
    assert float(torch.cat([p.grad.flatten() for p in layer.parameters()]).norm()) == pytest.approx(0.5, rel=1e-4)


def train_tiny(recipe, out, *extra):
    """A few-step run of `recipe` on synthetic photos, with the smallest shapes it accepts."""
    shapes = {"kdsr": ["--batch", "2", "--patch", "8"],
              "cmdsr": ["--tasks", "2", "--queries", "1", "--region", "128", "--patch", "8"]}[recipe]
    module = {"kdsr": kdsr_recipe, "cmdsr": cmdsr_recipe}[recipe]
    module.train(parse_args([recipe, "--out", str(out), "--val-steps", "100", "--log-every", "1", *shapes, *extra]),
                 PhotoPool(synthetic_photos(size=160), min_size=128), validation(["iso2.0"], size=128))


def logged(out, key):
    """The values of `key` in a run's log, in order."""
    return [float(line.split(f"| {key} ")[1].split(" ")[0]) for line in log_lines(out) if f"| {key} " in line]


@pytest.mark.parametrize("recipe", ["kdsr", "cmdsr"])
def test_recipes_log_the_gradient_norm_and_accept_a_clip(tmp_path, recipe):
    out = tmp_path / recipe
    train_tiny(recipe, out, "--steps", "2", "--clip-grad", "0.01")
    norms = logged(out, "grad_norm")
    assert len(norms) == 2 and all(n > 0.01 for n in norms)  # logged before clipping

def test_warmup_ramps_the_learning_rate_up_before_the_cosine_decay():
    assert cosine_lr(1e-4, 0.0, step=0, warmup_steps=100) == pytest.approx(1e-6)
    assert cosine_lr(1e-4, 0.0, step=49, warmup_steps=100) == pytest.approx(5e-5)
    assert cosine_lr(1e-4, 0.0, step=99, warmup_steps=100) == pytest.approx(1e-4)
    assert cosine_lr(1e-4, 0.5, step=400, warmup_steps=100) == pytest.approx(cosine_lr(1e-4, 0.5))
    assert cosine_lr(1e-4, 1.0) == pytest.approx(2e-6)


@pytest.mark.parametrize("recipe", ["kdsr", "cmdsr"])
def test_recipes_warm_up_the_learning_rate(tmp_path, recipe):
    rates = {}
    for warmup in (0, 4):
        out = tmp_path / f"warmup{warmup}"
        train_tiny(recipe, out, "--steps", "40", "--lr", "1e-3", "--warmup-steps", str(warmup))
        rates[warmup] = logged(out, "lr")
    ramp = [warm / plain for warm, plain in zip(rates[4][:6], rates[0][:6])]
    assert ramp == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1], rel=1e-3)


@pytest.mark.parametrize("workers", [0, 1])
def test_realworld_recipe_trains_the_trunk_on_the_second_order_chain_and_resumes(tmp_path, workers):
    """Pairs from the loader process (or in-process) have LR = HR / 4; a run resumed with a longer
    budget continues from the checkpoint (step, Adam state) and ends with the trunk's weights file."""
    from core.archs import rrdbnet
    from core.train import realworld as realworld_recipe

    out = tmp_path / "run"
    common = ["realworld", "--out", str(out), "--batch", "2", "--patch", "8",
              "--val-steps", "100", "--log-every", "1", "--precision", "fp32", "--loader-workers", str(workers)]
    pool = PhotoPool(synthetic_photos(), min_size=32)
    val = validation(["realworld", "iso2.0"])
    assert val.lr["realworld"].shape[-1] == val.hr.shape[-1] // 4
    realworld_recipe.train(parse_args(common + ["--steps", "2"]), pool, val)
    realworld_recipe.train(parse_args(common + ["--steps", "4", "--resume"]), pool, val)
    lines = log_lines(out)
    assert any("resumed from checkpoint" in line for line in lines)
    assert [line.split(" |")[0] for line in lines if "| train |" in line] == [f"step {i}" for i in (1, 2, 3, 4)]
    assert any("gain_realworld" in line for line in lines)
    module = rrdbnet.ARCH.build("lite")
    module.load_state_dict(load_file(out / "rrdbnet_lite.safetensors"))


def test_resume_files_carry_a_run_to_another_machine(tmp_path):
    """pack -> unpack gives back the checkpoint (Adam moments to bfloat16 precision, the rest
    exactly) from safetensors and JSON, and `--resume` continues from it; `--init` also takes a weights file."""
    from core.archs import rrdbnet
    from core.train import realworld as realworld_recipe
    from core.train.resume_files import pack, unpack

    first, moved, carried = tmp_path / "run", tmp_path / "moved", tmp_path / "carried"
    start = rrdbnet.ARCH.build("lite")
    save_file(start.state_dict(), tmp_path / "start.safetensors")
    common = ["realworld", "--batch", "2", "--patch", "8", "--val-steps", "100", "--log-every", "1",
              "--precision", "fp32", "--loader-workers", "0"]
    pool, val = PhotoPool(synthetic_photos(), min_size=32), validation(["realworld"])
    realworld_recipe.train(parse_args(common + ["--out", str(first), "--steps", "2",
                                                "--init", str(tmp_path / "start.safetensors")]), pool, val)
    assert any(f"initialised from {tmp_path / 'start.safetensors'}" in line for line in log_lines(first))
    assert sorted(p.name for p in pack(first, carried)) == ["resume.json", "resume.safetensors"]
    stored = load_file(carried / "resume.safetensors")
    assert {t.dtype for k, t in stored.items() if k.endswith(("exp_avg", "exp_avg_sq"))} == {torch.bfloat16}
    unpack(carried, moved)

    original, restored = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (first, moved))
    assert restored["step"] == original["step"] == 2 and restored["numpy_rng"] == original["numpy_rng"]
    assert torch.equal(restored["torch_generator"], original["torch_generator"])
    for key, value in original["state"]["model"].items():
        assert torch.equal(restored["state"]["model"][key], value)
    adam, adam_back = original["state"]["optimizer"], restored["state"]["optimizer"]
    assert adam_back["param_groups"] == adam["param_groups"]
    for index, moments in adam["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert adam_back["state"][index][name].dtype == torch.float32
            torch.testing.assert_close(adam_back["state"][index][name], moments[name], rtol=1e-2, atol=1e-12)
    realworld_recipe.train(parse_args(common + ["--out", str(moved), "--steps", "4", "--resume"]), pool, val)
    assert [line.split(" |")[0] for line in log_lines(moved) if "| train |" in line] == ["step 3", "step 4"]


def test_a_weight_average_is_validated_saved_checkpointed_and_resumed(tmp_path):
    """--ema: the checkpoint carries the average, a resumed run continues it, the snapshot and
    the finished weights file are the average, not the last step's weights."""
    from core.train import realworld as realworld_recipe

    out = tmp_path / "run"
    common = ["realworld", "--out", str(out), "--batch", "2", "--patch", "8", "--val-steps", "100",
              "--log-every", "1", "--precision", "fp32", "--loader-workers", "0", "--ema", "0.5"]
    pool, val = PhotoPool(synthetic_photos(), min_size=32), validation(["realworld"])
    realworld_recipe.train(parse_args(common + ["--steps", "2"]), pool, val)
    first = torch.load(out / "checkpoint.pt", weights_only=True)
    average, model = first["ema"], first["state"]["model"]
    assert set(average) == set(model) and any(not torch.equal(average[k], model[k]) for k in model)
    assert snapshot(out).is_file()
    assert all(torch.equal(v, average[k]) for k, v in load_file(out / "snapshot_step2.safetensors").items())

    realworld_recipe.train(parse_args(common + ["--steps", "3", "--resume"]), pool, val)
    last = torch.load(out / "checkpoint.pt", weights_only=True)
    step3 = last["state"]["model"]
    for key, value in last["ema"].items():  # one more step of the same average: 0.5 old + 0.5 new
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.5 * average[key] + 0.5 * step3[key])
    saved = load_file(out / "rrdbnet_lite.safetensors")
    assert all(torch.equal(saved[k], last["ema"][k]) for k in saved)


def test_realworld_pairs_are_reproducible_per_seed_and_first_step():
    from core.train.data import RealWorldPairs

    pool = PhotoPool(synthetic_photos(), min_size=32)
    first = [next(iter(RealWorldPairs(pool, 2, 8, 4, seed, step))) for seed, step in ((0, 0), (0, 0), (0, 5))]
    assert first[0][0].shape == (2, 3, 8, 8) and first[0][1].shape == (2, 3, 32, 32)
    assert torch.equal(first[0][0], first[1][0]) and torch.equal(first[0][1], first[1][1])
    assert not torch.equal(first[0][1], first[2][1])


def test_mmrealsr_recipe_starts_from_the_shared_trunk_and_logs_score_gaps(tmp_path):
    """The trunk's weights land in MM-RealSR's RRDB parts unchanged; the coupled losses train
    DE-Net and the modulations, and the log shows the ranking gaps that reveal a collapse."""
    from core.archs import mmrealsr, rrdbnet
    from core.train import mmrealsr as mmrealsr_recipe
    from core.train import realworld as realworld_recipe

    pool = PhotoPool(synthetic_photos(), min_size=32)
    val = validation(["realworld"])
    common = ["--batch", "2", "--patch", "8", "--val-steps", "100", "--log-every", "1", "--precision", "fp32",
              "--loader-workers", "0"]
    trunk_dir = tmp_path / "trunk"
    realworld_recipe.train(parse_args(["realworld", "--out", str(trunk_dir), "--steps", "1", *common]), pool, val)
    out = tmp_path / "mm"
    mmrealsr_recipe.train(parse_args(["mmrealsr", "--out", str(out), "--init", str(trunk_dir), "--steps", "2",
                                      "--lr", "0", *common]), pool, val)
    trunk = load_file(trunk_dir / "rrdbnet_lite.safetensors")
    trained = load_file(out / "mmrealsr_lite.safetensors")
    assert all(torch.equal(trained[key], value) for key, value in trunk.items())
    train_lines = [line for line in log_lines(out) if "| train |" in line]
    assert len(train_lines) == 2 and all("gap_blur" in line and "gap_noise" in line for line in train_lines)
    assert any("shared real-world trunk" in line for line in log_lines(out))

    model = mmrealsr.ARCH.build("lite")
    strengths = torch.rand(5, 2, 2)
    losses = mmrealsr_recipe.coupled_losses(model, torch.rand(5, 2, 3, 8, 8), strengths, torch.rand(2, 3, 32, 32),
                                            "fp32")
    losses["l1"].backward(retain_graph=True)
    assert model.de_net.conv_first[0].weight.grad is None, "the SR loss must not reach DE-Net"
    assert model.am_list[0].fc[0].weight.grad.abs().sum() > 0
    for term in ("anchor", "strength"):  # the ranking hinges may be 0 on a random pair
        model.zero_grad()
        losses[term].backward(retain_graph=True)
        assert all(model.de_net.conv_first[i].weight.grad.abs().sum() > 0 for i in (0, 1)), term
    # the SR path is modulated by the versions' strengths: other strengths, another output
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert not torch.equal(model.upscale(x, strengths[0]), model.upscale(x, strengths[1]))
    with pytest.raises(ValueError, match="does not fit"):
        bad = tmp_path / "bad"
        bad.mkdir()
        save_file({k: v for k, v in rrdbnet.ARCH.build("lite").state_dict().items() if k != "conv_last.bias"},
                  bad / "rrdbnet_lite.safetensors")
        warm_start(mmrealsr.ARCH.build("lite"), bad, "mmrealsr", "lite", ("am_list.", "de_net.", "dd_embed."))


def test_ccl_recipe_starts_as_the_trunk_and_trains_every_criterion(tmp_path):
    """From the shared trunk the head first returns the trunk's image (tails zeroed, head skip);
    a few steps update generator and critic, and the log carries each criterion."""
    from core.archs import ccl, rrdbnet
    from core.train import ccl as ccl_recipe

    trunk = rrdbnet.ARCH.build("lite")
    trunk_dir = tmp_path / "trunk"
    trunk_dir.mkdir()
    weights.save_state_dict(trunk.state_dict(), trunk_dir / "rrdbnet_lite.safetensors")
    model = ccl.ARCH.build("lite")
    assert "trunk" in ccl_recipe.initialise(model, trunk_dir, "lite")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), trunk(x), atol=1e-6)

    pool = PhotoPool(synthetic_photos(), min_size=32)
    out = tmp_path / "ccl"
    ccl_recipe.train(parse_args(["ccl", "--out", str(out), "--init", str(trunk_dir), "--steps", "2", "--batch", "2",
                                 "--patch", "8", "--val-steps", "100", "--log-every", "1", "--precision", "fp32",
                                 "--loader-workers", "0"]), pool, validation(["realworld"]))
    lines = [line for line in log_lines(out) if "| train |" in line]
    assert len(lines) == 2
    for term in ("l1", "pixel", "perceptual", "adversarial", "align", "uniform", "critic"):
        assert f"| {term} " in lines[-1]
    trained = load_file(out / "ccl_lite.safetensors")
    assert not torch.equal(trained["tail_conv1.weight"], torch.zeros_like(trained["tail_conv1.weight"]))
