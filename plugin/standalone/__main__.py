"""`python -m plugin.standalone [IMAGE] [--engine-url URL --token TOKEN]`

Opens the editor with IMAGE (or the first sample in resources/samples/, or an empty canvas).
The engine runs in this process on a worker thread, unless --engine-url names a running engine
(`python -m core serve`), which is then reached over HTTP like Krita does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def sample_image() -> Path | None:
    if SAMPLES.is_dir():
        for path in sorted(SAMPLES.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                return path
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugin.standalone", description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="image to open")
    parser.add_argument("--engine-url", help="use a running engine at this URL instead of the in-process one")
    parser.add_argument("--token", default="", help="the engine's token (with --engine-url)")
    args = parser.parse_args(argv)

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ui.qt import QApplication, exec_dialog

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Blind Upscale")

    from plugin.standalone.document import Document, Layer
    from plugin.standalone.window import EditorWindow
    from protocol.raw_image import RawImage

    problem = None
    if args.engine_url:
        from protocol.client import EngineClient
        client = EngineClient(args.engine_url, args.token)
    else:
        from plugin.standalone.local_engine import start_local_engine
        client, problem = start_local_engine()

    blank = Document(640, 480)
    blank.add_layer(Layer("Background", RawImage(640, 480, 3, "u8", b"\xff" * (640 * 480 * 3))))
    window = EditorWindow(blank, client)
    window.show()
    path = args.image or sample_image()
    if problem is not None:
        window.panel.show_error(problem)  # the editor opens, says what is wrong and how to mend it
    elif path is not None:
        window.open_file(path)  # a file it cannot read is reported in a message box
    status = exec_dialog(app)
    close = getattr(client, "close", None)
    if close is not None:
        close()  # stop the engine thread before the interpreter tears torch down
    return status


if __name__ == "__main__":
    sys.exit(main())
