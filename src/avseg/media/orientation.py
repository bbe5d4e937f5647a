"""How a player turns a video's stored pixels upright: the stream's display matrix.

Phones store portrait video as landscape pixels plus a display matrix (FFmpeg's
``AV_FRAME_DATA_DISPLAYMATRIX``, MP4's ``tkhd`` matrix). avseg decodes frames
upright, as every player shows them, so masks, overlays and the app agree with
what a user sees.

The matrix maps a stored pixel ``(x, y)`` (y pointing down) to its displayed
place ``(a*x + c*y, b*x + d*y)`` up to a shift, with ``a, b, c, d`` the 16.16
fixed-point entries 0, 1, 3 and 4 (libavutil/display.h). Its 2x2 part is a
signed permutation for the eight orientations players handle: rotations by
0, 90, 180 and 270 degrees, each optionally mirrored. Any other matrix (a
rotation by 30 degrees, a shear, a scale) cannot be shown upright without
resampling, and is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_UNIT = 1 << 16  # 1.0 in the matrix's 16.16 fixed point


@dataclass(frozen=True)
class Orientation:
    """The display transform of a video: ``transpose`` swaps the axes, then rows and/or columns are reversed."""

    transpose: bool = False
    flip_rows: bool = False
    flip_columns: bool = False

    @classmethod
    def from_display_matrix(cls, data: bytes) -> Orientation | None:
        """The orientation of a 36-byte display matrix, or None when it is not one of the eight a player shows
        without resampling (see the module doc)."""
        a, b, _, c, d, *_ = struct.unpack("<9i", data[:36])
        signs = [round(value / _UNIT) for value in (a, b, c, d)]
        if any(abs(value - sign * _UNIT) > _UNIT // 64 for value, sign in zip((a, b, c, d), signs)):
            return None
        a, b, c, d = signs
        if a == d == 0 and abs(b) == abs(c) == 1:  # displayed x comes from stored y: the axes swap
            return cls(transpose=True, flip_rows=b < 0, flip_columns=c < 0)
        if b == c == 0 and abs(a) == abs(d) == 1:
            return cls(transpose=False, flip_rows=d < 0, flip_columns=a < 0)
        return None

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_columns)

    @property
    def mirrored(self) -> bool:
        """Whether the picture is mirrored (an odd number of reflections: no rotation undoes it)."""
        return self.transpose != (self.flip_rows != self.flip_columns)

    @property
    def rotation(self) -> int:
        """Degrees counter-clockwise the picture turns on display; a mirrored picture is turned, then mirrored
        left-right (as ``set_display_rotation(degrees, hflip=True)`` writes it)."""
        probe = np.arange(6).reshape(2, 3)
        shown = self.apply(probe)
        for quarter_turns in range(4):
            turned = np.rot90(probe, quarter_turns)
            candidate = turned[:, ::-1] if self.mirrored else turned
            if candidate.shape == shown.shape and np.array_equal(candidate, shown):
                return 90 * quarter_turns
        raise AssertionError("unreachable: the eight orientations are rotations, mirrored or not")

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        """The displayed ``(width, height)`` of a stored ``width x height`` picture."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A stored ``(H, W, ...)`` picture as it is displayed (a view; copy it before writing in place)."""
        if self.transpose:
            image = image.swapaxes(0, 1)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_columns:
            image = image[:, ::-1]
        return image

    def describe(self) -> dict:
        """What ``summary.json`` records: the rotation and whether the picture was mirrored."""
        return {"rotation": self.rotation, "mirrored": self.mirrored}


UPRIGHT = Orientation()
