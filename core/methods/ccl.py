"""RealSR-CCL (Cria-CL): real-scene x4 SR, ESRGAN trunk with a masked dual-branch head.

No weights are bundled yet; the official configuration runs with the released `NTIRE.pth` in
the models folder (recognised by its keys and shapes)."""
from __future__ import annotations

from core.methods.arch_upscaler import ArchUpscaler


class CCLUpscaler(ArchUpscaler):
    id = "ccl"
    family = "RealSR-CCL"
    title = "RealSR-CCL (criteria contrastive learning)"
    summary = "Real-scene photos: ESRGAN trunk whose masked two-branch head balances fidelity and detail."
    scale = 4
    arch = "ccl"
    how_to_get = {"official": "NTIRE.pth, the model released with RealSR-CCL, "
                              "github.com/House-Leo/RealSR-CCL"}
