"""Pictures: the one way avseg draws a mask over a frame, and the pieces its figures are made of.

:func:`draw_mask` is used by every picture of a mask avseg makes: ``avseg segment``'s
``overlay.mp4`` (and so the app's videos) and the demo's ``compare.mp4``. Decisions:

* **Visible on any colour.** A fixed tint vanishes on an object of its own colour (a red tint on a
  red object left only the outline). Each connected region of the mask is tinted with whichever of
  two complementary colours, :data:`MASK_TINTS` (magenta and green, opposite corners of the RGB
  cube), lies farther from the region's mean colour in the frame. Of two opposite corners one is
  always at least half the cube's diagonal away (221 of 442 RGB units), so at the default ``alpha``
  of 0.5 every pixel of a uniform object moves by at least 110 units, whatever its colour.
* **One tint per region, not per pixel.** A per-pixel choice switches colour inside a textured
  object (stripes, checks) and speckles on noise near mid-grey; per region, an object keeps one
  colour.
* **Solid outline, translucent fill.** The outline (the region's inner edge, ``outline`` pixels wide)
  is drawn in the region's tint at full strength, so the mask's extent shows even where the fill is
  faint; ``alpha=0`` draws the outline alone (the demo's ground truth).
* **No blurring.** Pictures are enlarged by whole factors with nearest-neighbour sampling
  (:func:`enlarge`) *before* drawing, so a mask keeps its pixel edges and its outline stays thin.

Charts are drawn with PIL (:class:`Axes`; no matplotlib), text in PIL's default font (:func:`font`,
scalable from Pillow 10.1 on; no font files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import ImageDraw, ImageFont
from scipy import ndimage

MASK_TINTS = np.array([[255, 0, 255], [0, 255, 0]], dtype=np.float32)
"""Magenta and green: each region of a mask takes the one farther from its mean colour."""
INK, GRID = (30, 30, 30), (215, 215, 215)


def draw_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, outline: int = 1) -> np.ndarray:
    """``image`` (uint8 ``(H, W, 3)``) with ``mask`` (bool ``(H, W)``) drawn in: a translucent fill
    (``alpha``) and a solid outline ``outline`` pixels wide, per region in the tint of :data:`MASK_TINTS`
    farther from its mean colour (see the module doc). Returns a new uint8 image."""
    regions, count = ndimage.label(mask)
    if not count:
        return image.copy()
    drawn = image.astype(np.float32)
    means = np.stack([ndimage.mean(drawn[..., channel], regions, np.arange(1, count + 1)) for channel in range(3)], axis=1)
    farther = np.linalg.norm(means[:, None, :] - MASK_TINTS[None], axis=2).argmax(1)
    tint = np.concatenate([np.zeros((1, 3), np.float32), MASK_TINTS[farther]])[regions]
    drawn[mask] = (1 - alpha) * drawn[mask] + alpha * tint[mask]
    edge = outline_of(mask, outline)
    drawn[edge] = tint[edge]
    return np.round(drawn).astype(np.uint8)


def outline_of(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` 4-neighbour steps of a pixel outside it (or of the image's edge)."""
    interior = mask
    for _ in range(width):
        padded = np.pad(interior, 1)
        interior = interior & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (``(H, W)`` or ``(H, W, C)``) ``factor`` times larger, each pixel a ``factor`` x ``factor`` block."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's default font at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def text_size(draw: ImageDraw.ImageDraw, text: str, typeface) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=typeface)
    return int(right - left), int(bottom - top)


def nice_ticks(high: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values from 0 up to at least ``high`` (> 0)."""
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * k for k in range(math.ceil(high / step - 1e-9) + 1)]


@dataclass
class Axes:
    """A line chart's plot area on a PIL drawing: ``box`` (left, top, right, bottom pixels) shows data
    ``x_range`` x ``y_range``."""

    draw: ImageDraw.ImageDraw
    box: tuple[int, int, int, int]
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def point(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    def shade(self, start: float, end: float, fill: tuple[int, int, int]) -> None:
        (left, top), (right, bottom) = self.point(start, self.y_range[1]), self.point(end, self.y_range[0])
        self.draw.rectangle((left, top, right, bottom), fill=fill)

    def hline(self, y: float, fill: tuple[int, int, int], width: int = 1) -> None:
        self.draw.line((*self.point(self.x_range[0], y), *self.point(self.x_range[1], y)), fill=fill, width=width)

    def steps(self, xs: Sequence[float], ys: Sequence[float], hold: float, fill: tuple[int, int, int], width: int = 2) -> None:
        """A line through ``ys``, each value held from its ``x`` for ``hold`` (a frame's value over its frame)."""
        points = [self.point(x + offset, y) for x, y in zip(xs, ys) for offset in (0.0, hold)]
        self.draw.line(points, fill=fill, width=width, joint="curve")

    def frame(self, x_ticks: Sequence[float], y_ticks: Sequence[float], y_format: str, typeface, x_labels: bool = True) -> None:
        """Grid lines, the plot's border and the tick labels (x in seconds)."""
        left, top, right, bottom = self.box
        for y in y_ticks:
            _, py = self.point(self.x_range[0], y)
            self.draw.line((left, py, right, py), fill=GRID)
            label = format(y, y_format)
            width, height = text_size(self.draw, label, typeface)
            self.draw.text((left - 8 - width, py - height / 2 - 2), label, fill=INK, font=typeface)
        for x in x_ticks:
            px, _ = self.point(x, self.y_range[0])
            self.draw.line((px, bottom, px, bottom + 5), fill=INK)
            if x_labels:
                label = f"{x:g}"
                width, _ = text_size(self.draw, label, typeface)
                self.draw.text((px - width / 2, bottom + 8), label, fill=INK, font=typeface)
        self.draw.rectangle(self.box, outline=INK)


def legend(draw: ImageDraw.ImageDraw, origin: tuple[int, int], entries: Sequence[tuple[str, tuple[int, int, int], str]], typeface) -> None:
    """One row of ``(label, colour, kind)`` entries from ``origin``; ``kind`` is ``line`` or ``box``."""
    x, y = origin
    for label, colour, kind in entries:
        if kind == "box":
            draw.rectangle((x, y + 3, x + 22, y + 15), fill=colour, outline=(150, 150, 150))
        else:
            draw.line((x, y + 9, x + 22, y + 9), fill=colour, width=3)
        draw.text((x + 28, y), label, fill=INK, font=typeface)
        x += 28 + text_size(draw, label, typeface)[0] + 24
