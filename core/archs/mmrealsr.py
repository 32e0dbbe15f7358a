"""MM-RealSR (Mou et al., ECCV 2022): real-world SR whose restoration strength is steered by two
scores in 0..1, (blur, noise) IN THAT ORDER. A degradation estimator (DE-Net, two independent
ResNet branches ending in a sigmoid) reads the whole LR image once; either score may be replaced
by the user's dial. The scores are embedded (`dd_embed`) and drive a channel-wise affine
modulation (`am_list`) after every RRDB of an ESRGAN trunk.

Names follow the official `MMRRDBNet_test` (`de_net.*`, `dd_embed.*`, `am_list.N.fc.*`, BasicSR
trunk names) so the released MMRealSRNet / MMRealSRGAN checkpoints (`params`) load strictly into
the "official" configuration. `estimate` and `upscale` are separate so a tiled run (and ONNX)
shares one estimate across tiles.
"""

import torch
from torch import nn

from .blocks import ResidualBlockNoBN, default_init_weights
from .rrdbnet import RRDBNet
from .spec import ArchSpec, GraphSpec

CONFIGS = {
    # MMRealSRNet / MMRealSRGAN: 26.13 M parameters.
    "official": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "embed_dim": 512,
                 "de_feats": (64, 64, 64, 128), "de_blocks": (2, 2, 2, 2),
                 "de_downscales": (1, 1, 2, 1)},
    # CPU configuration: same mechanism, narrower trunk, estimator and embedding (1.16 M), bicubic image skip.
    "lite": {"num_feat": 32, "num_block": 4, "num_grow_ch": 16, "embed_dim": 128, "image_skip": True,
             "de_feats": (32, 64), "de_blocks": (1, 1), "de_downscales": (2, 1)},
}

SCORES = ("blur", "noise")


class DegradationEstimatorBranch(nn.Sequential):
    """One DE-Net branch body: stages of residual blocks; a stage with downscale 2 ends in a
    stride-2 conv to the next width, a stage with downscale 1 in a plain conv if the width changes
    (the official DEResNet layout, so the Sequential indices match its keys)."""

    def __init__(self, feats, blocks, downscales):
        layers = []
        for stage, (feat, count, down) in enumerate(zip(feats, blocks, downscales)):
            layers += [ResidualBlockNoBN(feat) for _ in range(count)]
            next_feat = feats[min(stage + 1, len(feats) - 1)]
            if down == 2:
                layers.append(nn.Conv2d(feat, next_feat, 3, 2, 1))
            elif next_feat != feat and stage < len(feats) - 1:
                layers.append(nn.Conv2d(feat, next_feat, 3, 1, 1))
        super().__init__(*layers)


class DegradationEstimator(nn.Module):
    """DE-Net: for each score an independent conv -> residual stages -> global average pool ->
    MLP -> sigmoid. Global pooling gives one (blur, noise) pair per image."""

    def __init__(self, feats, blocks, downscales, num_in_ch: int = 3):
        super().__init__()
        self.conv_first = nn.ModuleList(
            [nn.Conv2d(num_in_ch, feats[0], 3, 1, 1) for _ in SCORES])
        self.body = nn.ModuleList(
            [DegradationEstimatorBranch(feats, blocks, downscales) for _ in SCORES])
        self.fc_degree = nn.ModuleList(
            [nn.Sequential(nn.Linear(feats[-1], 512), nn.ReLU(inplace=True), nn.Linear(512, 1),
                           nn.Sigmoid()) for _ in SCORES])
        # Residual blocks start near identity (their own 0.1 init); the convs between them and the
        # MLP get plain Kaiming. Scaling those by 0.1 as well left a fresh lite DE-Net's output
        # input-independent to 1e-6 (sigmoid(0) for every image) and its gradients as small: the
        # scores stayed collapsed at 0.4985 through the first 240 steps of a training run.
        default_init_weights([self.conv_first, self.fc_degree]
                             + [layer for branch in self.body for layer in branch.children()
                                if not isinstance(layer, ResidualBlockNoBN)])

    def forward(self, x):
        """B x 3 x H x W -> B x 2 scores (blur, noise) in 0..1."""
        scores = []
        for conv_first, body, fc in zip(self.conv_first, self.body, self.fc_degree):
            pooled = body(conv_first(x)).mean(dim=(2, 3))
            scores.append(fc(pooled))
        return torch.cat(scores, dim=1)


class AffineModulation(nn.Module):
    """Maps the score embedding to per-channel (gamma, beta); feat -> (1 + gamma) * feat + beta."""

    def __init__(self, embed_dim: int, num_feat: int):
        super().__init__()
        hidden = (embed_dim + num_feat * 2) // 2
        self.fc = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(True),
                                nn.Linear(hidden, hidden), nn.ReLU(True),
                                nn.Linear(hidden, num_feat * 2))
        default_init_weights([self.fc], 0.1)

    def forward(self, feat, embedding):
        gamma, beta = self.fc(embedding)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * feat + beta


class MMRealSRNet(RRDBNet):
    """The ESRGAN trunk with an affine modulation after every RRDB, plus DE-Net and the score
    embedding. `forward(x, blur=None, noise=None)` estimates whatever score is not given."""

    def __init__(self, num_feat, num_block, num_grow_ch, embed_dim, de_feats, de_blocks,
                 de_downscales, scale: int = 4, image_skip: bool = False):
        super().__init__(num_feat, num_block, num_grow_ch, scale, image_skip=image_skip)
        self.am_list = nn.ModuleList(
            [AffineModulation(embed_dim, num_feat) for _ in range(num_block)])
        self.de_net = DegradationEstimator(list(de_feats), list(de_blocks), list(de_downscales))
        self.dd_embed = nn.Sequential(nn.Linear(len(SCORES), embed_dim), nn.ReLU(True))
        default_init_weights([self.dd_embed], 0.1)

    def estimate(self, lr):
        """LR image -> B x 2 scores (blur, noise)."""
        return self.de_net(lr)

    def upscale(self, lr, scores):
        """LR image (or tile) and B x 2 scores (blur, noise) -> SR image."""
        feat = self.head(lr)
        embedding = self.dd_embed(scores)
        trunk = feat
        for block, modulation in zip(self.body, self.am_list):
            trunk = modulation(block(trunk), embedding)
        return self.output(lr, self.reconstruct(feat + self.conv_body(trunk)))

    def forward(self, lr, blur=None, noise=None):
        scores = self.estimate(lr)
        if blur is not None:
            scores = torch.cat([torch.full_like(scores[:, :1], blur), scores[:, 1:]], dim=1)
        if noise is not None:
            scores = torch.cat([scores[:, :1], torch.full_like(scores[:, 1:], noise)], dim=1)
        return self.upscale(lr, scores)


class MMRealSRUpscaleGraph(nn.Module):
    """The modulated SR net as its own graph: (LR tile, scores) -> SR tile."""

    def __init__(self, model: MMRealSRNet):
        super().__init__()
        self.model = model

    def forward(self, lr, scores):
        return self.model.upscale(lr, scores)


ARCH = ArchSpec(
    id="mmrealsr", title="MM-RealSR", network=MMRealSRNet, configs=CONFIGS,
    graphs=(GraphSpec("estimator", lambda model: model.get_submodule("de_net"), ("lr",), ("scores",)),
            GraphSpec("sr", MMRealSRUpscaleGraph, ("lr", "scores"), ("sr",))))
