"""KDSR (Xia et al., ICLR 2023): knowledge-distillation based implicit degradation estimation.

A student encoder (KD-IDE_S) reads only the LR image and produces an implicit degradation
representation (IDR); the SR net (a chain of IDR-DCRB blocks) turns the IDR into per-sample
depthwise kernels. During training a teacher encoder (KD-IDE_T) also sees the HR image through a
pixel-unshuffle, and the student learns to match the teacher's 4C-dim vector (KL, tau 0.15).

Module and parameter names follow the official `BlindSR` (`G.*`, `E_st.*`; teacher `G.*`, `E.*`)
so an official student state dict loads strictly into the "official-m" / "official-l" / "gan"
configurations. The classic official checkpoints hold a raw state dict; GAN ones are BasicSR dicts
(use `params_ema`).
"""

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import Upsampler, conv3x3
from .spec import ArchSpec, GraphSpec

CONFIGS = {
    # KDSRs-M, the classic default: C64, 53 IDR-DCRB blocks, encoder with 9 res blocks (5.80 M).
    "official-m": {"n_feats": 64, "n_blocks": 53, "n_resblocks": 9, "scale": 4},
    # KDSRs-L (14.19 M).
    "official-l": {"n_feats": 128, "n_blocks": 28, "n_resblocks": 5, "scale": 4},
    # KDSR-GAN student (`n_sr_blocks 42, n_encoder_res 6`, 18.85 M).
    "gan": {"n_feats": 128, "n_blocks": 42, "n_resblocks": 6, "scale": 4},
    # CPU configuration trained by this project: ~0.87 M parameters. It adds a bicubic image skip
    # (the net predicts the residual over bicubic), which a CPU-sized training budget needs.
    "lite": {"n_feats": 32, "n_blocks": 30, "n_resblocks": 2, "scale": 4, "image_skip": True},
}

# The DIV2K RGB mean the official SR net subtracts before and adds after the network.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv that subtracts (sign -1) or adds (+1) the RGB mean; kept as a conv so the
    official keys `G.sub_mean.*` / `G.add_mean.*` exist."""

    def __init__(self, sign: int):
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():  # the constants made on the CPU even in a meta-device build (param_count),
            # where torch.eye has no kernel and would import torch's compiler
            self.weight.copy_(torch.eye(3, device="cpu").view(3, 3, 1, 1))
            self.bias.copy_(sign * torch.tensor(DIV2K_RGB_MEAN, device="cpu"))
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)


class ResBlock(nn.Module):
    """Encoder residual block: conv - LeakyReLU(0.1) - conv, plus the input."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats), nn.LeakyReLU(0.1, True),
                                  conv3x3(n_feats, n_feats))

    def forward(self, x):
        return self.body(x) + x


class KDIDE(nn.Module):
    """Implicit degradation estimator. The student (KD-IDE_S) reads the LR image (3 channels); the
    teacher (KD-IDE_T) reads LR concatenated with the pixel-unshuffled HR (3 + 3*scale^2 channels).

    Returns (IDR: B x C, D': B x 4C); D' is the vector the KD loss compares."""

    def __init__(self, n_feats: int, n_resblocks: int, in_channels: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_channels, n_feats, 3, padding=1), nn.LeakyReLU(0.1, True)]
        layers += [ResBlock(n_feats) for _ in range(n_resblocks)]
        layers += [conv3x3(n_feats, n_feats * 2), nn.LeakyReLU(0.1, True),
                   conv3x3(n_feats * 2, n_feats * 2), nn.LeakyReLU(0.1, True),
                   conv3x3(n_feats * 2, n_feats * 4), nn.LeakyReLU(0.1, True),
                   nn.AdaptiveAvgPool2d(1)]
        self.E = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(n_feats * 4, n_feats * 4), nn.LeakyReLU(0.1, True),
                                 nn.Linear(n_feats * 4, n_feats * 4), nn.LeakyReLU(0.1, True))
        self.compress = nn.Sequential(nn.Linear(n_feats * 4, n_feats), nn.LeakyReLU(0.1, True))
        self.reset_parameters()

    def reset_parameters(self):
        """He initialisation for LeakyReLU 0.1, zero biases. PyTorch's default init shrinks the
        variance about threefold per layer: through this chain the pooled vector hardly depended
        on the input (its spread across images was 1 % of its mean) and the IDR stayed constant
        through a CPU-length training, leaving the SR net non-adaptive."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    def forward(self, x):
        pooled = self.E(x).flatten(1)
        distilled = self.mlp(pooled)
        return self.compress(distilled), distilled


class IDRDDC(nn.Module):
    """IDR-based dynamic depthwise convolution: an MLP maps the IDR to one 3x3 kernel per channel
    and per sample; applied as a grouped conv over the batch (no bias)."""

    def __init__(self, n_feats: int, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = kernel_size
        self.kernel = nn.Sequential(
            nn.Linear(n_feats, n_feats, bias=False), nn.LeakyReLU(0.1, True),
            nn.Linear(n_feats, n_feats * kernel_size * kernel_size, bias=False))

    def forward(self, x, idr):
        b, c, h, w = x.shape
        # -1, not b * c: a constant shape keeps the kernel size known to the ONNX exporter
        kernels = self.kernel(idr).reshape(-1, 1, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, b * c, h, w), kernels, groups=b * c,
                       padding=self.kernel_size // 2)
        return out.reshape(b, c, h, w)


class IDRDCRB(nn.Module):
    """IDR-based dynamic convolution residual block: conv(LReLU(IDR-DDC(x))) + x."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.da_conv1 = IDRDDC(n_feats)
        self.conv1 = conv3x3(n_feats, n_feats)
        self.relu = nn.LeakyReLU(0.1, True)

    def forward(self, x, idr):
        return self.conv1(self.relu(self.da_conv1(x, idr))) + x


class IDRDCRBGroup(nn.Module):
    """The chain of IDR-DCRB blocks; every block sees the same IDR (official `DAG`)."""

    def __init__(self, n_feats: int, n_blocks: int):
        super().__init__()
        self.body = nn.Sequential(*[IDRDCRB(n_feats) for _ in range(n_blocks)])

    def forward(self, x, idr):
        for block in self.body:
            x = block(x, idr)
        return x


class KDSRNet(nn.Module):
    """The SR net G: head conv, IDR-DCRB group + conv with a long skip, upsampler, output conv.
    Input and output are RGB in 0..1. With `image_skip` the output is added to the bicubic
    upscale of the input (lite only; the official nets have no such skip); the output conv then
    starts at zero, so training starts from bicubic."""

    def __init__(self, n_feats: int, n_blocks: int, scale: int, image_skip: bool = False):
        super().__init__()
        self.scale = scale
        self.image_skip = image_skip
        self.sub_mean = MeanShift(-1)
        self.add_mean = MeanShift(+1)
        self.head = nn.Sequential(conv3x3(3, n_feats))
        self.body = nn.Sequential(IDRDCRBGroup(n_feats, n_blocks), conv3x3(n_feats, n_feats))
        self.tail = nn.Sequential(Upsampler(scale, n_feats), conv3x3(n_feats, 3))
        if image_skip:
            nn.init.zeros_(self.tail[1].weight)
            nn.init.zeros_(self.tail[1].bias)

    def forward(self, x, idr):
        centred = self.sub_mean(x)
        x = self.head(centred)
        res = self.body[1](self.body[0](x, idr)) + x
        out = self.tail(res)
        if self.image_skip:
            out = out + F.interpolate(centred, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.add_mean(out)


class KDSRStudent(nn.Module):
    """Inference model (official `BlindSR`): E_st estimates the IDR from the LR input, G upsamples.

    `estimate` and `upscale` are separate so tiled inference computes one IDR per image."""

    def __init__(self, n_feats: int, n_blocks: int, n_resblocks: int, scale: int = 4,
                 image_skip: bool = False):
        super().__init__()
        self.scale = scale
        self.G = KDSRNet(n_feats, n_blocks, scale, image_skip)
        self.E_st = KDIDE(n_feats, n_resblocks, in_channels=3)

    def estimate(self, lr):
        """Returns (IDR, D')."""
        return self.E_st(lr)

    def upscale(self, lr, idr):
        return self.G(lr, idr)

    def forward(self, lr):
        idr, _ = self.E_st(lr)
        return self.G(lr, idr)


class KDSRTeacher(nn.Module):
    """Training-only model (official `BlindSR_TA`): E sees LR and the pixel-unshuffled HR."""

    def __init__(self, n_feats: int, n_blocks: int, n_resblocks: int, scale: int = 4,
                 image_skip: bool = False):
        super().__init__()
        self.scale = scale
        self.G = KDSRNet(n_feats, n_blocks, scale, image_skip)
        self.E = KDIDE(n_feats, n_resblocks, in_channels=3 + 3 * scale * scale)

    def estimate(self, lr, hr):
        return self.E(torch.cat([lr, F.pixel_unshuffle(hr, self.scale)], dim=1))

    def forward(self, lr, hr):
        idr, _ = self.estimate(lr, hr)
        return self.G(lr, idr)


class KDSREstimatorGraph(nn.Module):
    """The student encoder as its own graph: LR -> IDR (1 x C), without the distilled vector."""

    def __init__(self, student: KDSRStudent):
        super().__init__()
        self.encoder = student.E_st

    def forward(self, lr):
        return self.encoder(lr)[0]


def build_teacher(config: str) -> KDSRTeacher:
    """The training-only teacher of a configuration (the student is `ARCH.build(config)`)."""
    return KDSRTeacher(**ARCH.config(config))


ARCH = ArchSpec(
    id="kdsr", title="KDSR", network=KDSRStudent, configs=CONFIGS,
    graphs=(GraphSpec("estimator", KDSREstimatorGraph, ("lr",), ("idr",)),
            GraphSpec("sr", lambda student: student.get_submodule("G"), ("lr", "idr"), ("sr",))))
