"""Building blocks shared by the architectures: the 3x3 conv and pixel-shuffle upsampler of the
EDSR-style nets (KDSR, CMDSR), and for the RRDB-based ones (ESRGAN trunk, MM-RealSR, RealSR-CCL,
MetaF2N backbone) residual dense blocks, their BasicSR initialisation, and pixel unshuffle
written with reshapes so every graph exports to ONNX the same way.

Parameter names follow BasicSR (`rdb1.conv1.weight`, ...), the names of the Real-ESRGAN,
MM-RealSR and MetaF2N checkpoints.
"""

import torch
from torch import nn
from torch.nn import init


@torch.no_grad()
def default_init_weights(modules, scale: float = 1.0, bias_fill: float = 0.0):
    """Kaiming-normal (fan-in) weights scaled by `scale`, biases set to `bias_fill`: BasicSR's
    initialisation; residual branches use scale 0.1 so a fresh net starts near identity. Skipped
    on the meta device, where it only costs time (parameter counts, architecture detection)."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:
                init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.fill_(bias_fill)


def pixel_unshuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """B x C x H*f x W*f -> B x C*f*f x H x W, channel order as `nn.PixelUnshuffle` (and BasicSR)."""
    b, c, hh, ww = x.shape
    h, w = hh // factor, ww // factor
    x = x.reshape(b, c, h, factor, w, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * factor * factor, h, w)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class Upsampler(nn.Sequential):
    """x2 steps of conv(C -> 4C) + PixelShuffle(2) (x4 = two steps), or one x3 step (EDSR's)."""

    def __init__(self, scale: int, n_feats: int):
        layers = []
        if scale in (2, 4):
            for _ in range(scale // 2):
                layers += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"the pixel-shuffle upsampler supports scales 2, 3 and 4, not {scale}")
        super().__init__(*layers)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (each sees the input and all earlier outputs); the last
    one's output, scaled by 0.2, is added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        default_init_weights([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, the result scaled by 0.2 plus the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class ResidualBlockNoBN(nn.Module):
    """conv - ReLU - conv plus the input, no normalisation (BasicSR's ResidualBlockNoBN)."""

    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        default_init_weights([self.conv1, self.conv2], 0.1)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


def rename_esrgan_keys(state: dict) -> dict:
    """Old ESRGAN names (`RRDB_trunk.N.RDB1`, `trunk_conv`, `upconv1`, `HRconv`) -> BasicSR names
    (`body.N.rdb1`, `conv_body`, `conv_up1`, `conv_hr`); other keys pass through unchanged."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("RRDB_trunk."):
            key = "body." + key[len("RRDB_trunk."):]
            for i in (1, 2, 3):
                key = key.replace(f".RDB{i}.", f".rdb{i}.")
        else:
            head, _, rest = key.partition(".")
            key = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2",
                   "HRconv": "conv_hr"}.get(head, head) + ("." + rest if rest else "")
        renamed[key] = value
    return renamed
