"""CMDSR (Yin et al., TIP 2022): conditional hyper-network for blind SR.

A ConditionNet reads a support set (S LR patches that share one degradation, stacked along channels:
S*3 input channels) and pools it to a 128-d task vector. One linear modulation layer per body conv
(2 per residual block, 20 in the official net) maps the task vector to per-input-channel scales, and
the BaseNet (an SRResNet) multiplies each body conv's input channels by its scale:
conv(x * s) equals the official per-sample modulated weight W * s.

Differences from the official code, on purpose:
- equalised learning rate is folded into the weights: `native_state_dict` multiplies the
  stored (unscaled) conv / linear weights by 1/sqrt(fan_in) once, at load;
- the bias is the ordinary per-channel bias (the official batched `repeat_interleave` bias is only
  right for batch 1, which is how the released model was evaluated).
Module names match the official state dict (`sr_net.*`, `condition_net.condition.*`).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import Upsampler, conv3x3
from .spec import ArchSpec, GraphSpec

CONFIGS = {
    # The released model: 64 channels, 10 blocks (20 modulations), S = 20, 0..255 pixel range.
    "official": {"channels": 64, "n_blocks": 10, "support_size": 20, "condition_widths": (64, 128),
                 "scale": 4, "pixel_range": 255.0},
    # CPU configuration trained by this project (~0.7 M parameters), 0..1 pixel range, with a
    # bicubic image skip (the net predicts the residual over bicubic) for a CPU training budget.
    "lite": {"channels": 32, "n_blocks": 16, "support_size": 20, "condition_widths": (32, 128),
             "scale": 4, "pixel_range": 1.0, "image_skip": True},
}


class ConditionNet(nn.Module):
    """VGG-style encoder of the support set: conv-ReLU x2, avg-pool 2, conv-ReLU x2, global mean.

    Input 1 x (S*3) x h x w (patches stacked along channels), output the task vector T x D."""

    def __init__(self, support_size: int, widths=(64, 128), pixel_range: float = 1.0):
        super().__init__()
        self.support_size = support_size
        self.pixel_range = pixel_range
        w1, w2 = widths
        self.condition = nn.Sequential(
            nn.Conv2d(3 * support_size, w1, 3, padding=1), nn.ReLU(True),
            conv3x3(w1, w1), nn.ReLU(True),
            nn.AvgPool2d(2, 2),
            conv3x3(w1, w2), nn.ReLU(True),
            conv3x3(w2, w2), nn.ReLU(True))
        self.reset_parameters()

    def reset_parameters(self):
        """He initialisation, zero biases. Under PyTorch's default init the pooled vector barely
        moved with the support set, and a ConditionNet trained from it could not learn even to
        read off the noise level (measured); with He init it learns that in a few hundred steps."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, support):
        """support: T x (S*3) x h x w in 0..1."""
        return self.condition(support * self.pixel_range).mean(dim=(2, 3))


class ModulationLayers(nn.Module):
    """One linear layer per modulated conv: task vector -> per-input-channel scale.

    Initialised as the official EqualLinear is (weights of std 1/sqrt(task_dim), bias 1). With
    weights 10x smaller (this project's earlier choice) the scales of one photo under different
    degradations differed by under 0.5 % after 1,300 steps (measured)."""

    def __init__(self, n_modulations: int, task_dim: int, channels: int):
        super().__init__()
        self.modulations = nn.ModuleList(nn.Linear(task_dim, channels) for _ in range(n_modulations))
        for layer in self.modulations:
            nn.init.normal_(layer.weight, std=1 / math.sqrt(task_dim))
            nn.init.ones_(layer.bias)

    def forward(self, task):
        """task: T x D -> T x n_modulations x channels."""
        return torch.stack([layer(task) for layer in self.modulations], dim=1)


class ModulatedResBlock(nn.Module):
    """conv(x * s1) - ReLU - conv(. * s2), plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x, s1, s2):
        res = F.relu(self.conv1(x * s1[:, :, None, None]))
        return self.conv2(res * s2[:, :, None, None]) + x


class BaseNet(nn.Module):
    """SRResNet body whose block convs are modulated (official `SRResNet_10`).

    `modulations` (the linear layers) live here, as in the official state dict; `forward` takes
    the per-conv scales they produce, so the scales can be computed once per image."""

    def __init__(self, channels: int, n_blocks: int, task_dim: int, scale: int,
                 pixel_range: float = 1.0, image_skip: bool = False):
        super().__init__()
        self.scale = scale
        self.pixel_range = pixel_range
        self.image_skip = image_skip
        self.input_conv = conv3x3(3, channels)
        self.backbone = nn.ModuleList(ModulatedResBlock(channels) for _ in range(n_blocks))
        self.upsampler = Upsampler(scale, channels)
        self.output_conv = conv3x3(channels, 3)
        self.modulations = ModulationLayers(2 * n_blocks, task_dim, channels)
        if image_skip:  # start from bicubic
            nn.init.zeros_(self.output_conv.weight)
            nn.init.zeros_(self.output_conv.bias)

    def forward(self, x, scales):
        """x: B x 3 x h x w in 0..1; scales: B x (2*n_blocks) x channels (or 1 x ... for all)."""
        if scales.shape[0] != x.shape[0]:
            scales = scales.expand(x.shape[0], -1, -1)
        features = self.input_conv(x * self.pixel_range)
        res = features
        for i, block in enumerate(self.backbone):
            res = block(res, scales[:, 2 * i], scales[:, 2 * i + 1])
        out = self.output_conv(self.upsampler(res + features)) / self.pixel_range
        if self.image_skip:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out


class CMDSR(nn.Module):
    """The whole model: `condition(support)` -> scales once per image, then `sr_net(x, scales)`."""

    def __init__(self, channels: int, n_blocks: int, support_size: int, condition_widths,
                 scale: int, pixel_range: float, image_skip: bool = False):
        super().__init__()
        self.scale = scale
        self.support_size = support_size
        self.condition_net = ConditionNet(support_size, condition_widths, pixel_range)
        self.sr_net = BaseNet(channels, n_blocks, condition_widths[1], scale, pixel_range, image_skip)

    def modulation_scales(self, support):
        """support: T x (S*3) x h x w -> T x (2*n_blocks) x channels."""
        return self.sr_net.modulations(self.condition_net(support))

    def forward(self, x, support):
        return self.sr_net(x, self.modulation_scales(support))


class CMDSRConditionGraph(nn.Module):
    """ConditionNet + modulation layers as one graph: support set -> modulation scales."""

    def __init__(self, model: CMDSR):
        super().__init__()
        self.condition_net = model.condition_net
        self.modulations = model.sr_net.modulations

    def forward(self, support):
        return self.modulations(self.condition_net(support))


def native_state_dict(state: dict) -> dict:
    """Official CMDSR weights -> this module's: fold the equalised-lr scales (1/sqrt(fan_in)) of
    every BaseConv2d and EqualLinear (everything under `sr_net.`) into the stored weights.
    The ConditionNet uses plain convs and is copied unchanged."""
    folded = {}
    for key, value in state.items():
        if key.startswith("sr_net.") and key.endswith(".weight"):
            fan_in = value[0].numel()
            value = value * (1.0 / math.sqrt(fan_in))
        folded[key] = value
    return folded


def support_example(model: CMDSR, height: int, width: int, generator: torch.Generator) -> dict:
    """A random LR image and support set (S patches stacked along channels)."""
    return {"lr": torch.rand(1, 3, height, width, generator=generator),
            "support": torch.rand(1, 3 * model.support_size, height, width, generator=generator)}


ARCH = ArchSpec(
    id="cmdsr", title="CMDSR", network=CMDSR, configs=CONFIGS,
    graphs=(GraphSpec("condition", CMDSRConditionGraph, ("support",), ("scales",), ("support",)),
            GraphSpec("sr", lambda model: model.get_submodule("sr_net"), ("lr", "scales"), ("sr",))),
    example_inputs=support_example, native_state_dict=native_state_dict)
