"""A small face restorer trained here (core/train/face_restorer.py): the face prior MetaF2N's inner
step needs and the "restore faces" option pastes back, since no face-restoration weights can be
installed from a package registry (GPEN's and GFPGAN's are on Google Drive and GitHub releases).

It works on faces aligned to the FFHQ 5-point template (core/faces.py): the input is the
degraded face bicubic-enlarged to the output size, the output that face restored, predicted as a
residual over the input. A two-level U-Net of ResidualBlockNoBN: the middle sees the face at a
quarter of its size, wide enough to relate both eyes; the skips keep the pixels aligned.
"""

from torch import nn

from .blocks import ResidualBlockNoBN
from .spec import ArchSpec, SizeRequirements

CONFIGS = {
    # 1.31 M parameters; about 2.7 GMAC for a 128x128 face.
    "lite": {"num_feat": 32, "num_middle": 2},
}
LEVELS = 2  # downsamplings by 2: sides must be multiples of 2**LEVELS
TRAINED_SIZE = 128
"""Side of the aligned faces the restorer is trained on (input enlarged from 32x32): faces are
restored at this size or at their own when larger."""


class FaceRestorer(nn.Module):
    def __init__(self, num_feat: int = 32, num_middle: int = 2):
        super().__init__()
        f = num_feat
        self.conv_first = nn.Conv2d(3, f, 3, 1, 1)
        self.enc1 = ResidualBlockNoBN(f)
        self.down1 = nn.Conv2d(f, 2 * f, 4, 2, 1)
        self.enc2 = ResidualBlockNoBN(2 * f)
        self.down2 = nn.Conv2d(2 * f, 4 * f, 4, 2, 1)
        self.middle = nn.Sequential(*(ResidualBlockNoBN(4 * f) for _ in range(num_middle)))
        self.up2 = nn.Sequential(nn.Conv2d(4 * f, 8 * f, 3, 1, 1), nn.PixelShuffle(2))
        self.dec2 = ResidualBlockNoBN(2 * f)
        self.up1 = nn.Sequential(nn.Conv2d(2 * f, 4 * f, 3, 1, 1), nn.PixelShuffle(2))
        self.dec1 = ResidualBlockNoBN(f)
        self.conv_last = nn.Conv2d(f, 3, 3, 1, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        nn.init.zeros_(self.conv_last.weight)  # starts as the identity: output = input
        nn.init.zeros_(self.conv_last.bias)

    def forward(self, x):
        """x: B×3×H×W (H, W multiples of 4), the degraded face enlarged; returns the restored face."""
        s1 = self.enc1(self.act(self.conv_first(x)))
        s2 = self.enc2(self.act(self.down1(s1)))
        y = self.middle(self.act(self.down2(s2)))
        y = self.dec2(self.act(self.up2(y)) + s2)
        y = self.dec1(self.act(self.up1(y)) + s1)
        return x + self.conv_last(y)


ARCH = ArchSpec(id="face_restorer", title="face restorer", network=FaceRestorer, configs=CONFIGS,
                graphs=(), size=SizeRequirements(minimum=16, multiple_of=2 ** LEVELS))
