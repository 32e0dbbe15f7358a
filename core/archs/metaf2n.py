"""MetaF2N (Yin et al., ICCV 2023): a Real-ESRGAN RRDBNet x4 whose meta-learned weights are
adapted to one photo by a single SGD step on face patch pairs, and a MaskNet that weights that
step's L1 loss per pixel (the inner step itself is in core/face_adaptation.py).

The official code is TensorFlow 1 (graph mode). Its checkpoint holds the backbone under the scope
`MODEL/` with BasicSR's key names written with `/` (`MODEL/body/0/rdb1/conv1/weight`) and the
MaskNet under `Mask/conv{1..8}/{kernel,bias}`; every kernel is HWIO. `tf_key_map` names the
torch key of every variable and `state_from_tf` turns a dict of numpy arrays into a torch state
dict (HWIO -> OIHW). TensorFlow cannot be installed here, so a user exports the checkpoint once,
on a machine that has it, to a plain .npz:

    import numpy as np, tensorflow as tf
    prefix = "pretrained_models/model-new"          # the official test.py's --model_dir
    names = [n for n, _ in tf.train.list_variables(prefix) if n.startswith(("MODEL/", "Mask/"))]
    reader = tf.train.load_checkpoint(prefix)
    np.savez("metaf2n_official.npz", **{n: reader.get_tensor(n) for n in names})

and puts `metaf2n_official.npz` in the models folder; `load_tf_npz` reads it without pickle.
"""

import re

import numpy as np
import torch
from torch import nn

from .rrdbnet import CONFIGS as RRDB_CONFIGS
from .rrdbnet import RRDBNet
from .spec import ArchSpec

CONFIGS = {
    # The paper's networks: Real-ESRGAN x4plus backbone (16.70 M) + MaskNet (225,665).
    "official": {"backbone": dict(RRDB_CONFIGS["official"]), "mask_feat": 64},
    # CPU configuration on the project's lite RRDB trunk; needs the project's own meta-training.
    "lite": {"backbone": dict(RRDB_CONFIGS["lite"]), "mask_feat": 32},
}

TF_BACKBONE_SCOPE = "MODEL"
TF_MASK_SCOPE = "Mask"


class MaskNet(nn.Module):
    """Eight 3x3 convs (ReLU between them, and a final ReLU: the official code dropped the
    sigmoid) mapping [bicubic-upsampled LR patch, HR target patch] (6 channels) to a
    non-negative one-channel weight map for the inner-loop L1 loss."""

    def __init__(self, num_feat: int = 64, num_conv: int = 8, num_in_ch: int = 6):
        super().__init__()
        self.num_conv = num_conv
        for i in range(1, num_conv + 1):
            cin = num_in_ch if i == 1 else num_feat
            cout = 1 if i == num_conv else num_feat
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, 3, 1, 1))
        self.relu = nn.ReLU()

    def forward(self, x):
        for i in range(1, self.num_conv + 1):
            x = self.relu(getattr(self, f"conv{i}")(x))
        return x


def tf_legacy_bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`tf.compat.v1.image.resize_bicubic(align_corners=False)`, the resize in front of the
    official MaskNet: source coordinate = out * in/out (no half-pixel shift), cubic kernel
    a = -0.75, border taps clamped to the edge pixel, weights not renormalised. torch's
    bicubic uses half-pixel centres, so it would feed the MaskNet a shifted image."""
    h_out, w_out = size
    rows = _legacy_bicubic_matrix(x.shape[-2], h_out).to(x)
    cols = _legacy_bicubic_matrix(x.shape[-1], w_out).to(x)
    return torch.einsum("oh,bchw,pw->bcop", rows, x, cols)


def _legacy_bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    a = -0.75

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        if t < 2:
            return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return 0.0

    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        src = o * scale
        base = int(np.floor(src))
        delta = src - base
        for tap in (-1, 0, 1, 2):
            m[o, min(max(base + tap, 0), n_in - 1)] += cubic(tap - delta)
    return torch.from_numpy(m.astype(np.float32))


class MetaF2N(nn.Module):
    """The SR backbone (`backbone`, BasicSR RRDBNet names) and the loss-weighting `mask_net`.
    `forward` is plain super-resolution with the stored (meta-learned) weights; adapted weights
    are applied with `torch.func.functional_call(model.backbone, params, ...)`."""

    def __init__(self, backbone: dict | None = None, mask_feat: int = 64):
        super().__init__()
        self.backbone = RRDBNet(**(backbone or RRDB_CONFIGS["official"]))
        self.mask_net = MaskNet(mask_feat)

    def forward(self, x):
        return self.backbone(x)

    def loss_weight(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """MaskNet weight map for LR patches (B×3×h×w) and their HR targets (B×3×sh×sw)."""
        up = tf_legacy_bicubic_resize(lr, hr.shape[-2:])
        return self.mask_net(torch.cat([up, hr], dim=1))


ARCH = ArchSpec(id="metaf2n", title="MetaF2N", network=MetaF2N, configs=CONFIGS,
                graphs=())  # torch only: the face adaptation needs autograd


def tf_key_map(model: MetaF2N) -> dict[str, str]:
    """TF checkpoint variable name -> torch state-dict key, for every tensor of `model`."""
    mapping = {}
    for key in model.backbone.state_dict():
        mapping[f"{TF_BACKBONE_SCOPE}/" + key.replace(".", "/")] = "backbone." + key
    for i in range(1, model.mask_net.num_conv + 1):
        mapping[f"{TF_MASK_SCOPE}/conv{i}/kernel"] = f"mask_net.conv{i}.weight"
        mapping[f"{TF_MASK_SCOPE}/conv{i}/bias"] = f"mask_net.conv{i}.bias"
    return mapping


_TF_SLOT = re.compile(r"/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|ExponentialMovingAverage)$")


def state_from_tf(arrays: dict[str, np.ndarray], model: MetaF2N) -> dict[str, torch.Tensor]:
    """Torch state dict for `model` from TF variables (name -> array, kernels HWIO).

    Variables outside the `MODEL/` and `Mask/` scopes (the discriminator, `global_step`, Adam's
    beta powers) and optimizer slots of mapped variables are ignored; a missing variable, a
    wrong shape or an unknown variable inside those scopes raises ValueError naming it."""
    mapping = tf_key_map(model)
    expected = model.state_dict()
    problems = []
    for name in arrays:
        in_scope = name.startswith((TF_BACKBONE_SCOPE + "/", TF_MASK_SCOPE + "/"))
        if in_scope and name not in mapping and _TF_SLOT.sub("", name) not in mapping:
            problems.append(f"unexpected variable {name}")
    state = {}
    for tf_name, key in mapping.items():
        if tf_name not in arrays:
            problems.append(f"missing variable {tf_name}")
            continue
        value = np.asarray(arrays[tf_name], dtype=np.float32)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        if tuple(value.shape) != tuple(expected[key].shape):
            problems.append(f"{tf_name}: shape {tuple(value.shape)} after HWIO->OIHW, "
                            f"expected {tuple(expected[key].shape)} for {key}")
            continue
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"the TensorFlow MetaF2N variables do not fit: {shown}")
    return state


def load_tf_npz(path) -> dict[str, np.ndarray]:
    """Arrays of an .npz export of the TF checkpoint (see the module docstring); no pickle."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
