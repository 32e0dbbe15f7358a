"""Model id -> Upscaler class. Each method's engineer adds one registration line here."""
from core.methods.base import Upscaler
from core.methods.bicubic import Bicubic
from core.methods.metaf2n import MetaF2NUpscaler
from core.methods.kdsr import KDSRUpscaler
from core.methods.cmdsr import CMDSRUpscaler

METHODS: dict[str, type[Upscaler]] = {
    "bicubic": Bicubic,
    "metaf2n": MetaF2NUpscaler,
    "kdsr": KDSRUpscaler,
    "cmdsr": CMDSRUpscaler,
}
