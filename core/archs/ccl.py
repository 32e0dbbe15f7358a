"""RealSR-CCL (Cria-CL, Liu et al., TCSVT 2022), the released test model: an ESRGAN trunk whose
3-channel HR output feeds a dual-branch head. A softmax mask (over channels) from `sm` splits
the features of two branches, `out = tail_conv1(mask * branch1(mid)) +
tail_conv2((1 - mask) * branch2(mid))`; in the sibling RWSR-EDL training code the two branches
carry different criteria (fidelity vs. perceptual/adversarial).

The trunk uses BasicSR names; `native_state_dict` maps the official ESRGAN-style names
(`RRDB_trunk.N.RDB1`, `trunk_conv`, `upconv1`, `HRconv`) so the released `NTIRE.pth` loads strictly
into the "official" configuration.
"""

import torch
from torch import nn

from .blocks import rename_esrgan_keys
from .rrdbnet import RRDBNet
from .spec import ArchSpec

CONFIGS = {
    # The released model: 17.29 M parameters.
    "official": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "head_feat": 64},
    # CPU configuration; the head runs at HR resolution, so it is narrow (0.80 M). Bicubic image
    # skip and head skip (see CCLNet) so it warm-starts from the shared real-world trunk.
    "lite": {"num_feat": 32, "num_block": 4, "num_grow_ch": 16, "head_feat": 16,
             "image_skip": True, "head_skip": True},
}


class ResidualConvBlock(nn.Module):
    """Two 3x3 conv + LeakyReLU(0.2) layers plus a 1x1-conv projection of the input (official RB)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True))
        self.conv = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x):
        return self.block(x) + self.conv(x)


def head_branch(in_ch: int, feat: int) -> nn.Sequential:
    return nn.Sequential(ResidualConvBlock(in_ch, feat), ResidualConvBlock(feat, feat),
                         ResidualConvBlock(feat, feat))


class CCLNet(RRDBNet):
    """ESRGAN x4 trunk -> 3-channel intermediate image -> masked dual-branch head.

    `head_skip` (the CPU configurations; the released net has none) adds the two branches to the
    intermediate image instead of replacing it: with its output convs zeroed the head first
    returns the trunk's image, so a trunk trained on its own carries over unchanged."""

    def __init__(self, num_feat, num_block, num_grow_ch, head_feat, image_skip: bool = False,
                 head_skip: bool = False):
        super().__init__(num_feat, num_block, num_grow_ch, scale=4, image_skip=image_skip)
        self.head_skip = head_skip
        self.branch1 = head_branch(3, head_feat)
        self.branch2 = head_branch(3, head_feat)
        self.sm = head_branch(3, head_feat)
        self.tail_conv1 = nn.Conv2d(head_feat, 3, 3, padding=1)
        self.tail_conv2 = nn.Conv2d(head_feat, 3, 3, padding=1)

    def views(self, x):
        """(result, branch-1 view, branch-2 view): each view is the image one masked branch makes
        on its own (plus the intermediate image with `head_skip`); training puts one criterion on each."""
        feat = self.head(x)
        mid = self.output(x, self.reconstruct(feat + self.trunk(feat)))
        mask = torch.softmax(self.sm(mid), dim=1)
        out1 = self.tail_conv1(mask * self.branch1(mid))
        out2 = self.tail_conv2((1 - mask) * self.branch2(mid))
        base = mid if self.head_skip else 0
        return base + out1 + out2, base + out1, base + out2

    def forward(self, x):
        return self.views(x)[0]


ARCH = ArchSpec(id="ccl", title="RealSR-CCL", network=CCLNet, configs=CONFIGS,
                native_state_dict=rename_esrgan_keys)  # the official ESRGAN-style names
