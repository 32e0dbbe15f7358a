"""The Blind Upscale dock panel: standard library and Qt only (through ui.qt), shared by every Qt host."""
