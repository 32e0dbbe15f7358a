"""The standalone Blind Upscale editor (PyQt6): `python -m plugin.standalone [IMAGE]`."""
