"""Take the README's screenshot: the editor with the Blind Upscale panel after a real run.

    python -m plugin.standalone.screenshot [--image IMAGE] [--out docs/screenshot.png]

Without a display it re-runs itself under `xvfb-run` (apt-get install xvfb xauth). Without
--image it shows the project's sample photo (resources/samples), or, when that is absent, paints
its own low-resolution test card. It selects a region, picks the first method with weights
(learned ones before bicubic), waits for the live preview, runs Blind Upscale on the selection
and saves the window.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFERRED = ("kdsr", "mmrealsr", "cmdsr", "ccl", "metaf2n", "realesrgan", "bicubic")


def test_card(path: Path) -> Path:
    """A 1024x640 card painted with Qt, then shrunk to 256x160: the kind of small, soft image
    people want to enlarge."""
    from ui.qt import QColor, QFont, QImage, QPainter, QPen, QRectF, Qt

    big = QImage(1024, 640, QImage.Format.Format_RGB888)
    big.fill(QColor(236, 232, 222))
    p = QPainter(big)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    colours = [QColor(200, 60, 50), QColor(240, 170, 40), QColor(60, 150, 90), QColor(50, 110, 190),
               QColor(120, 70, 160)]
    for i, colour in enumerate(colours):
        p.fillRect(QRectF(40 + i * 120, 40, 110, 110), colour)
    p.setPen(QPen(QColor(30, 30, 30), 6))
    for r in range(30, 200, 24):
        p.drawEllipse(QRectF(780 - r, 170 - r, 2 * r, 2 * r))
    for i in range(40):
        p.drawLine(40 + i * 12, 190, 40 + i * 12, 300)
    font = QFont("DejaVu Sans")
    font.setPixelSize(72)
    font.setBold(True)
    p.setFont(font)
    p.setPen(QColor(20, 20, 20))
    p.drawText(QRectF(40, 330, 960, 100), Qt.AlignmentFlag.AlignLeft, "Blind Upscale ×4")
    font.setPixelSize(34)
    font.setBold(False)
    p.setFont(font)
    p.drawText(QRectF(40, 440, 960, 160), Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap,
               "Small print survives a blind super-resolution only when the degradation is "
               "estimated well: blur, noise, and the camera's own softness.")
    p.end()
    small = big.scaled(256, 160, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    small.save(str(path))
    return path


def take(image: Path | None, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from ui.qt import QApplication, QTimer

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from plugin.standalone.document import Document
    from plugin.standalone.local_engine import LocalEngine
    from plugin.standalone.window import EditorWindow
    from protocol.host import Rect
    from ui.settings import Settings

    scratch = Path(tempfile.mkdtemp(prefix="blind-upscale-shot-"))
    try:
        from plugin.standalone.__main__ import sample_image

        source = image or sample_image() or test_card(scratch / "card.png")
        engine = LocalEngine()
        settings = Settings(scratch / "settings.json")
        window = EditorWindow(Document.from_file(source), engine, settings)
        window.resize(1360, 860)
        window.show()
        failures: list[str] = []

        def fail(message: str) -> None:
            failures.append(message)
            app.quit()

        def pick_model() -> None:
            panel = window.panel
            available = {m["id"] for m in panel.state.models if m.get("weights") != "missing"}
            model = next((m for m in PREFERRED if m in available), None)
            if model is None:
                fail("the engine lists no model with weights")
                return
            panel.settings.set("model", model)
            d = window.document
            window.document.set_selection(Rect(d.width // 4, d.height // 8, d.width // 2, d.height // 2))
            panel.preview_updated.connect(lambda _g: QTimer.singleShot(200, run), type=_single_shot())

        def run() -> None:
            window.panel.job_finished.connect(finished)
            window.upscale_action.trigger()

        def finished(state: str) -> None:
            if state != "done":
                fail(f"Blind Upscale ended {state}: {window.panel.status_label.text()}")
                return
            window.canvas.fit()
            QTimer.singleShot(500, grab)

        def grab() -> None:
            out.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(out)):
                failures.append(f"could not write {out}")
            app.quit()

        window.panel.models_loaded.connect(pick_model)
        QTimer.singleShot(600_000, lambda: fail("timed out after 10 minutes"))
        app.exec()
        window.undo_stack.setClean()  # the result is a throwaway: close without the "save?" question
        window.close()
        if failures:
            raise SystemExit("screenshot: " + failures[0])
        print(f"wrote {out}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _single_shot():
    from ui.qt import Qt

    return Qt.ConnectionType.SingleShotConnection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugin.standalone.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="image to show (default: the sample photo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        if shutil.which("xvfb-run") is None:
            raise SystemExit("screenshot: no display and no xvfb-run (apt-get install xvfb xauth)")
        command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-m",
                   "plugin.standalone.screenshot", "--out", str(args.out.resolve())]
        if args.image:
            command += ["--image", str(args.image.resolve())]
        return subprocess.call(command, cwd=ROOT)
    take(args.image, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
