"""Model id -> Upscaler class. Each method's engineer adds one registration line here."""
from core.methods.base import Upscaler
from core.methods.bicubic import Bicubic
from core.methods.ccl import CCLUpscaler
from core.methods.metaf2n import MetaF2NUpscaler
from core.methods.kdsr import KDSRUpscaler
from core.methods.cmdsr import CMDSRUpscaler
from core.methods.mmrealsr import MMRealSRUpscaler
from core.methods.realesrgan import RealESRGANUpscaler

METHODS: dict[str, type[Upscaler]] = {
    "bicubic": Bicubic,
    "metaf2n": MetaF2NUpscaler,
    "kdsr": KDSRUpscaler,
    "cmdsr": CMDSRUpscaler,
    "mmrealsr": MMRealSRUpscaler,
    "ccl": CCLUpscaler,
    "realesrgan": RealESRGANUpscaler,
}
