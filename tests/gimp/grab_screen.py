"""Runs with the chroot's python3 on the Xvfb display: saves the screen as PNG once something is
drawn and it has stopped changing for `settle` seconds (the dialog and its first preview are in),
or when `timeout` seconds have passed. Usage: grab_screen.py OUT.png TIMEOUT SETTLE"""
import sys
import time

import gi

gi.require_version("Gdk", "3.0")
from gi.repository import Gdk  # noqa: E402


def main():
    out, timeout, settle = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    Gdk.init([])
    root = Gdk.get_default_root_window()
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        shot = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
        pixels = shot.get_pixels()
        drawn = pixels.count(0) < len(pixels) * 0.99
        if pixels != last:
            last, since = pixels, time.monotonic()
        elif drawn and time.monotonic() - since >= settle:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    shot.savev(out, "png", [], [])


main()
