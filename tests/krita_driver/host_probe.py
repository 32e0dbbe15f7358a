"""kritarunner script for tests/test_krita_integration.py: the host adapter against real Krita
documents of every supported depth, without a window or an engine.

`main([out_dir, png])` opens the PNG (opaque, a known colour per quadrant), converts it to each
colour space, reads it through KritaHost, applies a nearest-neighbour x4 "result" through
KritaHost.apply_result (with a soft selection mask for one case), reads the new layer back, and
writes everything as JSON plus raw files for the test to check with numpy.
"""
import json
import os
import traceback

from krita import Krita, Selection

SPACES = [
    ("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc"),
    ("RGBA", "U16", "sRGB-elle-V2-g10.icc"),
    ("RGBA", "F16", "sRGB-elle-V2-g10.icc"),
    ("RGBA", "F32", "sRGB-elle-V2-g10.icc"),
    ("GRAYA", "U8", "Gray-D50-elle-V2-srgbtrc.icc"),
    ("CMYKA", "U8", ""),
]
SCALE = 4


def nearest(raw, scale):
    """Each pixel repeated scale x scale times: a stand-in result of the right size and type."""
    from protocol.raw_image import SAMPLE_SIZE, RawImage
    px = raw.channels * SAMPLE_SIZE[raw.dtype]
    rows = []
    for y in range(raw.height):
        row = raw.data[y * raw.width * px:(y + 1) * raw.width * px]
        wide = b"".join(row[x * px:(x + 1) * px] * scale for x in range(raw.width))
        rows.append(wide * scale)
    return RawImage(raw.width * scale, raw.height * scale, raw.channels, raw.dtype, b"".join(rows))


def probe(app, host_module, pixels_module, png, out, model, depth, profile, with_mask):
    from protocol.host import Rect
    doc = app.openDocument(png)
    doc.waitForDone()
    app.setActiveDocument(doc)
    node = doc.topLevelNodes()[0]
    doc.setActiveNode(node)
    if (model, depth) != ("RGBA", "U8"):
        doc.setColorSpace(model, depth, profile)
        doc.waitForDone()
    info = {"model": node.colorModel(), "depth": node.colorDepth(), "profile": node.colorProfile()}
    host = host_module.KritaHost(app)
    # Krita's active document and node follow the view; without one, tell the host which are meant.
    host._document = lambda: doc
    host._layer = lambda: (doc, node)
    try:
        raw = host.layer_pixels()
    except pixels_module.UnsupportedLayer as exc:
        info["refused"] = str(exc)
        doc.close()
        return info
    tag = f"{model}_{depth}"
    info.update(header=raw.header(), size=[doc.width(), doc.height()])
    with open(os.path.join(out, f"{tag}.raw"), "wb") as f:
        f.write(raw.data)
    mask = None
    if with_mask:
        found = []
        for value in (255, 128):
            selection = Selection()
            selection.select(1, 2, 4, 3, value)
            doc.setSelection(selection)
            sel = host.selection()
            found.append([sel.bounds.as_tuple(), None if sel.mask is None else sorted(set(sel.mask))])
        doc.setSelection(Selection())
        info["selections"] = found
        info["selection_after_clear"] = host.selection() is None  # the left half half-selected, as a soft selection would give
        mask = bytes([128] * (doc.width() // 2) + [255] * (doc.width() - doc.width() // 2)) * doc.height()
    result = nearest(raw, SCALE)
    source = Rect(0, 0, raw.width, raw.height)
    host.apply_result(result, source, SCALE, "Blind Upscale x4 (probe)", "Blind Upscale", mask=mask)
    doc.waitForDone()
    layers = doc.topLevelNodes()
    info["after"] = {"size": [doc.width(), doc.height()], "layers": [n.name() for n in layers]}
    new = [n for n in layers if n.name() == "Blind Upscale x4 (probe)"][0]
    back = pixels_module.krita_to_raw(bytes(new.pixelData(0, 0, result.width, result.height)),
                                      result.width, result.height, model, depth, profile)
    if mask is None:
        info["round_trip_equal"] = back.data == result.data
    else:
        from blind_upscale.pixels import with_coverage
        from ui.images import scale_mask
        expected = with_coverage(result, scale_mask(mask, raw.width, raw.height, SCALE))
        info["round_trip_equal"] = back.data == expected.data
        info["alpha_corners"] = [back.data[3], back.data[4 * result.width - 1]]
    doc.close()
    return info


def main(args):
    out, png = args[0], args[1]
    report = {}
    try:
        from blind_upscale import host as host_module, pixels as pixels_module
        app = Krita.instance()
        for index, (model, depth, profile) in enumerate(SPACES):
            report[f"{model}_{depth}"] = probe(app, host_module, pixels_module, png, out,
                                               model, depth, profile, with_mask=index == 0)
    except Exception:
        report["error"] = traceback.format_exc()
    with open(os.path.join(out, "host_probe.json"), "w") as f:
        json.dump(report, f)
