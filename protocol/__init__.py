"""What the engine, the panel and the host adapters share: the raw image format, the engine client,
the `Host` interface and the error sentence.

Standard library only, so Krita's embedded Python (no numpy, no torch) imports it from the plug-in
zip, and `core`, `ui` and `plugin` can all depend on it without depending on each other.
"""
