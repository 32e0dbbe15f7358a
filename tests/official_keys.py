"""Key names and shapes of the official checkpoints, written out from the official code and the
research notes (not from core/archs), so the tests check the archs against an independent source.
Tensors are on the meta device: shapes without memory.

Only architectures with official weights to pin appear here (`OFFICIAL`); everything else the
tests need about an architecture (configurations, graphs, sizes) comes from its `ArchSpec`, so a
new architecture without official weights needs no entry."""

import torch


def _conv(state, name, out_ch, in_ch, k=3, bias=True):
    state[f"{name}.weight"] = torch.empty(out_ch, in_ch, k, k, device="meta")
    if bias:
        state[f"{name}.bias"] = torch.empty(out_ch, device="meta")


def _linear(state, name, out_f, in_f, bias=True):
    state[f"{name}.weight"] = torch.empty(out_f, in_f, device="meta")
    if bias:
        state[f"{name}.bias"] = torch.empty(out_f, device="meta")


def esrgan_trunk(state, old_names=False, nf=64, nb=23, gc=32):
    """ESRGAN / Real-ESRGAN x4 trunk; `old_names` gives the original ESRGAN (and RealSR-CCL) names."""
    body, rdb = ("RRDB_trunk", "RDB") if old_names else ("body", "rdb")
    _conv(state, "conv_first", nf, 3)
    for i in range(nb):
        for j in (1, 2, 3):
            for k in range(1, 5):
                _conv(state, f"{body}.{i}.{rdb}{j}.conv{k}", gc, nf + (k - 1) * gc)
            _conv(state, f"{body}.{i}.{rdb}{j}.conv5", nf, nf + 4 * gc)
    names = (("trunk_conv", "upconv1", "upconv2", "HRconv") if old_names
             else ("conv_body", "conv_up1", "conv_up2", "conv_hr"))
    for name in names:
        _conv(state, name, nf, nf)
    _conv(state, "conv_last", 3, nf)
    return state


def realesrgan_x4plus():
    return esrgan_trunk({})


def mmrealsr():
    """MMRRDBNet_test(num_feat=64, num_block=23, num_grow_ch=32, num_feats=[64,64,64,128],
    num_blocks=[2,2,2,2], downscales=[1,1,2,1]): 922 keys."""
    state = esrgan_trunk({})
    for i in range(23):
        _linear(state, f"am_list.{i}.fc.0", 320, 512)
        _linear(state, f"am_list.{i}.fc.2", 320, 320)
        _linear(state, f"am_list.{i}.fc.4", 128, 320)
    for b in (0, 1):
        _conv(state, f"de_net.conv_first.{b}", 64, 3)
        for i in range(6):
            for c in (1, 2):
                _conv(state, f"de_net.body.{b}.{i}.conv{c}", 64, 64)
        _conv(state, f"de_net.body.{b}.6", 128, 64)
        for i in (7, 8):
            for c in (1, 2):
                _conv(state, f"de_net.body.{b}.{i}.conv{c}", 128, 128)
        _linear(state, f"de_net.fc_degree.{b}.0", 512, 128)
        _linear(state, f"de_net.fc_degree.{b}.2", 1, 512)
    _linear(state, "dd_embed.0", 512, 2)
    return state


def ccl():
    """RealSR-CCL `RRDBNet(3, 3, 64, 23)` as in models/ccl_RRDB.py: 760 keys."""
    state = esrgan_trunk({}, old_names=True)
    for head in ("branch1", "branch2", "sm"):
        for i, in_ch in enumerate((3, 64, 64)):
            _conv(state, f"{head}.{i}.block.0", 64, in_ch)
            _conv(state, f"{head}.{i}.block.2", 64, 64)
            _conv(state, f"{head}.{i}.conv", 64, in_ch, k=1)
    _conv(state, "tail_conv1", 3, 64)
    _conv(state, "tail_conv2", 3, 64)
    return state


def kdsr_student(c, n, r):
    """KDSR `BlindSR` (student): G.* and E_st.* keys."""
    state = {}
    for name in ("G.sub_mean", "G.add_mean"):
        _conv(state, name, 3, 3, k=1)
    _conv(state, "G.head.0", c, 3)
    for i in range(n):
        _linear(state, f"G.body.0.body.{i}.da_conv1.kernel.0", c, c, bias=False)
        _linear(state, f"G.body.0.body.{i}.da_conv1.kernel.2", 9 * c, c, bias=False)
        _conv(state, f"G.body.0.body.{i}.conv1", c, c)
    _conv(state, "G.body.1", c, c)
    _conv(state, "G.tail.0.0", 4 * c, c)
    _conv(state, "G.tail.0.2", 4 * c, c)
    _conv(state, "G.tail.1", 3, c)
    _conv(state, "E_st.E.0", c, 3)
    for k in range(2, r + 2):
        _conv(state, f"E_st.E.{k}.body.0", c, c)
        _conv(state, f"E_st.E.{k}.body.2", c, c)
    _conv(state, f"E_st.E.{r + 2}", 2 * c, c)
    _conv(state, f"E_st.E.{r + 4}", 2 * c, 2 * c)
    _conv(state, f"E_st.E.{r + 6}", 4 * c, 2 * c)
    _linear(state, "E_st.mlp.0", 4 * c, 4 * c)
    _linear(state, "E_st.mlp.2", 4 * c, 4 * c)
    _linear(state, "E_st.compress.0", c, 4 * c)
    return state


def cmdsr():
    """CMDSR (64 ch, 10 blocks, support 20): 96 keys."""
    state = {}
    _conv(state, "sr_net.input_conv", 64, 3)
    for i in range(10):
        _conv(state, f"sr_net.backbone.{i}.conv1", 64, 64)
        _conv(state, f"sr_net.backbone.{i}.conv2", 64, 64)
    _conv(state, "sr_net.upsampler.0", 256, 64)
    _conv(state, "sr_net.upsampler.2", 256, 64)
    _conv(state, "sr_net.output_conv", 3, 64)
    for i in range(20):
        _linear(state, f"sr_net.modulations.modulations.{i}", 64, 128)
    for idx, (out_ch, in_ch) in zip((0, 2, 5, 7), ((64, 60), (64, 64), (128, 64), (128, 128))):
        _conv(state, f"condition_net.condition.{idx}", out_ch, in_ch)
    return state


# (arch id, config) -> (official state, key count the research notes give, parameters)
OFFICIAL = {
    ("rrdbnet", "official"): (realesrgan_x4plus, None, 16_697_987),
    ("mmrealsr", "official"): (mmrealsr, 922, 26_134_149),
    ("ccl", "official"): (ccl, 760, 17_286_473),
    ("kdsr", "official-m"): (lambda: kdsr_student(64, 53, 9), 276, 5_795_099),
    ("kdsr", "official-l"): (lambda: kdsr_student(128, 28, 5), None, 14_191_003),
    ("kdsr", "gan"): (lambda: kdsr_student(128, 42, 6), None, 18_846_107),
    ("cmdsr", "official"): (cmdsr, 96, 1_495_619),
}
