"""What the panel needs from an editor: the host interface.

Each editor (Krita in plugin/krita, the standalone editor in plugin/standalone) subclasses `Host`.
All coordinates are pixels of the active layer. Pixels travel as `protocol.raw_image.RawImage` in the
host-neutral form: channel order as the RawImage names it (G, GA, RGB, RGBA, never BGRA), straight
(unpremultiplied) alpha, the layer's own bit depth (u8, u16 or f32). Hosts convert before returning.
Everything here is called on the GUI thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from protocol.raw_image import RawImage


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def intersected(self, other: Rect) -> Rect | None:
        left, top = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        if right <= left or bottom <= top:
            return None
        return Rect(left, top, right - left, bottom - top)


@dataclass(frozen=True)
class Selection:
    """The selection's bounding box and its coverage: `mask` holds width*height bytes (0..255),
    row-major over `bounds`, or None when the selection is exactly the rectangle."""

    bounds: Rect
    mask: bytes | None = None


class Host:
    """The editor as the panel sees it. Subclasses implement every method."""

    def has_image(self) -> bool:
        """True when there is an active paint layer the panel can upscale."""
        raise NotImplementedError

    def layer_name(self) -> str:
        """Name of the active layer, for the status line and the result layer's name."""
        raise NotImplementedError

    def layer_size(self) -> tuple[int, int]:
        """Width and height of the active layer in pixels."""
        raise NotImplementedError

    def layer_pixels(self, rect: Rect | None = None) -> RawImage:
        """The active layer's own pixels (the whole layer, or `rect` of it) in the host-neutral form."""
        raise NotImplementedError

    def selection(self) -> Selection | None:
        """The current selection clipped to the layer, or None when nothing is selected."""
        raise NotImplementedError

    def view_center(self) -> tuple[int, int]:
        """The layer pixel shown at the centre of the view: where the preview looks without a selection."""
        raise NotImplementedError

    def revision(self) -> object:
        """A cheap hashable value that changes when the active layer, its pixels or the selection
        change. The panel polls it to know when its preview and estimates are out of date."""
        raise NotImplementedError

    def apply_result(self, image: RawImage, source: Rect, scale: int, name: str, undo_label: str,
                     mask: bytes | None = None) -> None:
        """Add `image` (the upscaled `source` rectangle of the active layer) as a new layer above it.

        The document is scaled by `scale` so the new layer lands at (source.x*scale, source.y*scale)
        at full resolution; the user's layer is never overwritten. `mask` (source.width*source.height
        bytes, the selection coverage) limits the new layer to the selected pixels. The whole change is
        one undo step named `undo_label` where the host allows it.
        """
        raise NotImplementedError
