"""KDSR and CMDSR architectures: per-sample conditioning, split graphs, official CMDSR folding."""
import math

import torch
from torch.nn import functional as F

from core.archs import cmdsr, kdsr


def test_kdsr_split_graphs_equal_the_whole_model():
    torch.manual_seed(0)
    student = kdsr.ARCH.build("lite").eval()
    graphs = {graph.name: graph.wrap(student) for graph in kdsr.ARCH.graphs}
    lr = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        idr = graphs["estimator"](lr)
        split = graphs["sr"](lr, idr)
        whole = student(lr)
    assert idr.shape == (1, 32)
    assert split.shape == (1, 3, 48, 64)
    assert torch.allclose(split, whole, atol=1e-6)


def test_kdsr_dynamic_kernels_are_per_sample():
    torch.manual_seed(0)
    student = kdsr.ARCH.build("lite").eval()
    lr = torch.rand(2, 3, 10, 10)
    with torch.no_grad():
        batched = student(lr)
        single = torch.cat([student(lr[i:i + 1]) for i in range(2)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_kdsr_teacher_reads_lr_and_unshuffled_hr():
    teacher = kdsr.build_teacher("lite")
    assert teacher.E.E[0].in_channels == 3 + 3 * 16
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    idr, distilled = teacher.estimate(lr, hr)
    assert idr.shape == (2, 32) and distilled.shape == (2, 128)
    assert teacher(lr, hr).shape == (2, 3, 32, 32)


def test_kdsr_encoder_output_depends_on_its_input_from_the_start():
    """With PyTorch's default init the encoder's output hardly moved with its input (here: 0.5 %
    spread, sharp vs blurred IDR 0.3 % apart) and the trained IDR stayed constant; the He init
    keeps ten times that (5.7 %, 11 %)."""
    torch.manual_seed(0)
    encoder = kdsr.ARCH.build("lite").E_st.eval()
    sharp = torch.rand(4, 3, 32, 32)
    blurred = F.avg_pool2d(sharp, 5, stride=1, padding=2)
    with torch.no_grad():
        idr, distilled = encoder(torch.cat([sharp, blurred]))
    spread = distilled.std(dim=0).mean() / distilled.abs().mean()
    assert spread > 0.03
    assert (idr[:4] - idr[4:]).abs().mean() > 0.05 * idr.abs().mean()


def test_cmdsr_task_vector_depends_on_the_support_set_from_the_start():
    """Under default init a trained ConditionNet could not learn to read the noise level off its
    vector; He init is what let it. Here: clean vs noisy support 2 % apart (default), 5.8 % (He)."""
    torch.manual_seed(0)
    condition = cmdsr.ARCH.build("lite").condition_net.eval()
    clean = F.avg_pool2d(torch.rand(1, 60, 36, 36), 5, stride=1)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    with torch.no_grad():
        tasks = condition(torch.cat([clean, noisy]))
    assert (tasks[0] - tasks[1]).norm() > 0.04 * tasks[0].norm()


def test_cmdsr_per_task_scales_match_single_runs():
    torch.manual_seed(0)
    model = cmdsr.ARCH.build("lite").eval()
    support = torch.rand(2, 60, 32, 32)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        scales = model.modulation_scales(support)
        batched = model.sr_net(x, scales)
        single = torch.cat([model(x[i:i + 1], support[i:i + 1]) for i in range(2)])
    assert scales.shape == (2, 2 * cmdsr.CONFIGS["lite"]["n_blocks"], 32)
    assert torch.allclose(batched, single, atol=1e-5)


def test_cmdsr_official_weights_fold_equalised_lr():
    """The official BaseConv2d computes conv(x, W * 1/sqrt(fan_in) * s) and EqualLinear
    linear(t, W / sqrt(128), b); after `native_state_dict` the plain modules give the same."""
    torch.manual_seed(0)
    model = cmdsr.ARCH.build("official")
    raw = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(cmdsr.native_state_dict(raw))

    x, s = torch.rand(1, 64, 6, 6), torch.rand(64) + 0.5
    w = raw["sr_net.backbone.0.conv1.weight"] / math.sqrt(64 * 9)
    reference = F.conv2d(x, w * s[None, :, None, None], raw["sr_net.backbone.0.conv1.bias"], padding=1)
    ours = model.sr_net.backbone[0].conv1(x * s[None, :, None, None])
    assert torch.allclose(ours, reference, atol=1e-5)

    t = torch.rand(1, 128)
    reference = F.linear(t, raw["sr_net.modulations.modulations.3.weight"] / math.sqrt(128),
                         raw["sr_net.modulations.modulations.3.bias"])
    assert torch.allclose(model.sr_net.modulations.modulations[3](t), reference, atol=1e-5)
    # the ConditionNet is a plain VGG stack in the official code: copied unchanged
    assert torch.equal(model.condition_net.condition[0].weight, raw["condition_net.condition.0.weight"])


def test_cmdsr_official_works_in_0_255_internally():
    model = cmdsr.ARCH.build("official")
    assert model.condition_net.pixel_range == 255.0 and model.sr_net.pixel_range == 255.0
