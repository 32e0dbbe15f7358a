"""Model id -> Upscaler class. Each method's engineer adds one registration line here."""
from core.methods.base import Upscaler
from core.methods.bicubic import Bicubic

METHODS: dict[str, type[Upscaler]] = {
    "bicubic": Bicubic,
}
