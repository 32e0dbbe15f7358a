import json
import os
import pickle

import pytest
import torch

from core import weights
from core.archs import ARCHS, build, param_count
from core.errors import WeightsError

from official_keys import OFFICIAL, realesrgan_x4plus


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("BLIND_UPSCALE_MODELS", str(folder))
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path / "bundled")
    return folder


@pytest.mark.parametrize("arch_id,config", sorted(OFFICIAL))
def test_official_state_dict_fits_full_size_configuration(arch_id, config):
    make, key_count, params = OFFICIAL[arch_id, config]
    official = make()
    if key_count is not None:
        assert len(official) == key_count
    assert sum(t.numel() for t in official.values()) == params
    assert param_count(arch_id, config) == params
    native = weights.native_state_dict(arch_id, official)
    assert weights.mismatch(weights.signature(arch_id, config), native) == ""
    assert weights.detect(official) == (arch_id, config)


def test_official_real_esrgan_loads_strictly_with_values():
    official = {k: torch.randn(t.shape) for k, t in realesrgan_x4plus().items()}
    net = build("rrdbnet", "official")
    weights.load_strict(net, official)
    assert torch.equal(net.body[22].rdb3.conv5.weight, official["body.22.rdb3.conv5.weight"])


def test_ccl_official_names_map_to_the_shared_trunk(models_dir):
    net = build("ccl", "lite")
    renamed = {}
    for key, value in net.state_dict().items():
        key = key.replace("body.", "RRDB_trunk.", 1) if key.startswith("body.") else key
        for i in (1, 2, 3):
            key = key.replace(f".rdb{i}.", f".RDB{i}.")
        key = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
               "conv_hr": "HRconv"}.get(key.split(".")[0], key.split(".")[0]) + key[key.index("."):]
        renamed[key] = value
    assert "RRDB_trunk.0.RDB1.conv1.weight" in renamed and "HRconv.weight" in renamed
    torch.save(renamed, models_dir / "NTIRE.pth")
    assert weights.weights_status("ccl", "ccl", "lite") == "user"
    loaded = weights.load_model("ccl", "ccl", "lite")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), net.eval()(x))


def test_lite_configurations_are_recognised():
    for arch_id in ("rrdbnet", "mmrealsr", "ccl"):
        assert weights.detect(build(arch_id, "lite").state_dict()) == (arch_id, "lite")


def test_containers_and_module_prefix_are_unwrapped(tmp_path):
    state = build("rrdbnet", "lite").state_dict()
    other = {k: torch.zeros_like(v) for k, v in state.items()}
    path = tmp_path / "basicsr.pth"
    torch.save({"params": other, "params_ema": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = weights.load_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_missing_weights_name_the_file_and_folder(models_dir):
    assert weights.weights_status("mmrealsr", "mmrealsr", "official") == "missing"
    with pytest.raises(WeightsError) as err:
        weights.load_model("mmrealsr", "mmrealsr", "official", how_to_get="MMRealSRGAN.pth")
    message = str(err.value)
    assert "MMRealSRGAN.pth" in message and str(models_dir) in message
    assert "mmrealsr_official.safetensors" in message


def test_user_checkpoint_is_found_by_keys_and_loads(models_dir):
    net = build("mmrealsr", "lite")
    torch.save({"params": net.state_dict()}, models_dir / "my_mmrealsr.pth")
    (models_dir / "notes.txt").write_text("not a checkpoint")
    assert weights.weights_status("mmrealsr", "mmrealsr", "lite") == "user"
    assert weights.weights_status("mmrealsr", "mmrealsr", "official") == "missing"
    loaded = weights.load_model("mmrealsr", "mmrealsr", "lite")
    assert loaded.source == "user" and len(loaded.sha256) == 64
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), net.eval()(x))


def test_bundled_weights_are_checked_against_the_manifest(models_dir, tmp_path):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    weights.save_state_dict(build("ccl", "lite").state_dict(), bundled / "ccl_lite.safetensors")
    manifest = {"files": {"ccl_lite.safetensors": {
        "sha256": weights.sha256_file(bundled / "ccl_lite.safetensors"), "model": "ccl",
        "config": "lite", "card": "ccl_lite.md"}}}
    (bundled / "manifest.json").write_text(json.dumps(manifest))
    assert weights.weights_status("ccl", "ccl", "lite") == "bundled"
    assert weights.load_model("ccl", "ccl", "lite").source == "bundled"
    manifest["files"]["ccl_lite.safetensors"]["sha256"] = "0" * 64
    (bundled / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="damaged"):
        weights.load_model("ccl", "ccl", "lite")


def test_corrupt_files_give_a_clear_error(tmp_path):
    for name in ("broken.pth", "broken.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"\x00garbage" * 100)
        with pytest.raises(WeightsError, match="not a readable"):
            weights.load_state_dict(path)
    truncated = tmp_path / "truncated.pth"
    torch.save(build("rrdbnet", "lite").state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="not a readable"):
        weights.load_state_dict(truncated)


class RunsCode:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"params": {"conv_first.weight": torch.zeros(1)}, "x": RunsCode(marker)}, f,
                   pickle_module=pickle)
    with pytest.raises(WeightsError, match="refused"):
        weights.load_state_dict(path)
    assert not marker.exists()


def test_wrong_architecture_names_the_mismatch(models_dir):
    weights.save_state_dict(build("rrdbnet", "lite").state_dict(),
                            models_dir / "mmrealsr_lite.safetensors")
    with pytest.raises(WeightsError) as err:
        weights.load_model("mmrealsr", "mmrealsr", "lite")
    message = str(err.value)
    assert "missing keys" in message and "am_list." in message


def test_shape_mismatch_is_named():
    state = build("rrdbnet", "lite").state_dict()
    state["conv_last.weight"] = torch.zeros(3, 16, 3, 3)
    with pytest.raises(WeightsError, match=r"conv_last.weight \(3, 16, 3, 3\) instead of \(3, 32, 3, 3\)"):
        weights.load_strict(build("rrdbnet", "lite"), state)


def test_unknown_state_dict_names_the_nearest_architecture():
    state = build("mmrealsr", "lite").state_dict()
    del state["dd_embed.0.weight"]
    with pytest.raises(WeightsError, match="nearest is mmrealsr:lite"):
        weights.detect(state)


def test_every_registered_arch_builds_its_configurations_on_meta():
    for arch_id in ARCHS:
        for config in ARCHS[arch_id].configs:
            assert param_count(arch_id, config) > 0


def test_an_empty_checkpoint_in_the_models_folder_breaks_nothing(models_dir):
    """Issue 21, defect 2: a 0-byte .pt (a failed download) made the whole model listing fail
    with an IndexError; it is skipped by the scan and, loaded directly, named as empty."""
    from core.registry import list_models

    (models_dir / "broken.pt").write_bytes(b"")
    assert weights.user_checkpoints() == {}
    assert {spec.id for spec in list_models()} >= {"kdsr", "cmdsr", "mmrealsr"}
    with pytest.raises(WeightsError, match="broken.pt is not a readable PyTorch checkpoint.*empty"):
        weights.load_state_dict(models_dir / "broken.pt")


@pytest.mark.parametrize("text", ["{not json", '{"files": []}', "[]", '{"other": 1}'])
def test_a_damaged_manifest_is_named_in_one_clear_error(models_dir, text):
    weights.BUNDLED_DIR.mkdir()
    (weights.BUNDLED_DIR / "manifest.json").write_text(text)
    with pytest.raises(WeightsError, match="manifest .*manifest.json is damaged"):
        weights.read_manifest()


def test_the_folder_scan_lists_refused_and_unreadable_files_with_their_reason(models_dir, tmp_path):
    """Issue 21, defect 11: a refused pickle (and any unreadable file) was skipped silently, so a
    user could not tell why their model was not there; the scan names each with its reason and
    still finds the good checkpoint."""
    marker = tmp_path / "pwned"
    with open(models_dir / "evil.pth", "wb") as f:
        torch.save({"x": RunsCode(marker), "w": torch.zeros(1)}, f, pickle_module=pickle)
    (models_dir / "empty.pt").write_bytes(b"")
    (models_dir / "gone.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    os.mkfifo(models_dir / "pipe.pth")
    weights.save_state_dict(build("rrdbnet", "lite").state_dict(), models_dir / "good.safetensors")

    problems = {entry.path.name: entry.problem for entry in weights.scan_models_folder()}
    assert problems["good.safetensors"] == ""
    assert "evil.pth was refused: it contains pickled objects other than tensors" in problems["evil.pth"]
    assert "empty.pt is not a readable PyTorch checkpoint" in problems["empty.pt"]
    assert "empty" in problems["empty.pt"].split("(", 1)[1]
    assert problems["gone.safetensors"] == "gone.safetensors cannot be read (No such file or directory)"
    assert problems["pipe.pth"] == "pipe.pth is not a regular file"
    assert weights.user_checkpoints() == {("rrdbnet", "lite"): [models_dir / "good.safetensors"]}
    assert not marker.exists()
