"""RRDBNet, the ESRGAN / Real-ESRGAN generator (Wang et al. 2018, 2021), with BasicSR names:
`conv_first`, `body.N.rdb{1,2,3}.conv{1..5}`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`,
`conv_last`. The "official" configuration loads Real-ESRGAN x4plus (and the converted ncnn copy,
see core/ncnn_convert.py) strictly; MM-RealSR, RealSR-CCL and MetaF2N build on the same trunk.
"""

from torch import nn
from torch.nn import functional as F

from .blocks import RRDB, pixel_unshuffle, rename_esrgan_keys
from .spec import ArchSpec

CONFIGS = {
    # Real-ESRGAN x4plus / ESRGAN: 16.70 M parameters.
    "official": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "scale": 4},
    # CPU configuration: 0.76 M parameters, plus a bicubic image skip (see RRDBNet).
    "lite": {"num_feat": 32, "num_block": 4, "num_grow_ch": 16, "scale": 4, "image_skip": True},
}


class RRDBNet(nn.Module):
    """conv_first -> RRDB trunk -> conv_body (+ long skip) -> two nearest x2 upsamplings with a
    conv each -> conv_hr -> conv_last. For x2 / x1 the input is pixel-unshuffled first (as in
    Real-ESRGAN) so the trunk always upsamples x4. Input and output are RGB in 0..1.

    `image_skip` (the CPU configurations only; the official net has none) adds the bicubic
    upscale of the input to the output, so the net learns only the residual: a net trained for a
    few CPU hours, not 1 M iterations, does not first have to learn to reproduce the image."""

    def __init__(self, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32,
                 scale: int = 4, num_in_ch: int = 3, num_out_ch: int = 3, image_skip: bool = False):
        super().__init__()
        self.image_skip = image_skip
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scales 1, 2 and 4, not {scale}")
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def head(self, x):
        if self.unshuffle > 1:
            x = pixel_unshuffle(x, self.unshuffle)
        return self.conv_first(x)

    def trunk(self, feat):
        """The RRDB chain and conv_body; subclasses modulate between the blocks."""
        return self.conv_body(self.body(feat))

    def reconstruct(self, feat):
        """Trunk features -> HR image: nearest x2, conv, nearest x2, conv, conv_hr, conv_last."""
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    def output(self, x, hr):
        """The reconstructed HR image, plus the bicubic upscale of the input `x` with `image_skip`."""
        if not self.image_skip:
            return hr
        return hr + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def forward(self, x):
        feat = self.head(x)
        return self.output(x, self.reconstruct(feat + self.trunk(feat)))


ARCH = ArchSpec(id="rrdbnet", title="RRDBNet", network=RRDBNet, configs=CONFIGS,
                native_state_dict=rename_esrgan_keys)  # ESRGAN's original names as well as BasicSR's
