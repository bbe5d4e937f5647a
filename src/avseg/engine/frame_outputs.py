"""What ``avseg segment`` writes for each output frame, written by a background thread.

Masks go to ``masks/00000.png, ...`` (0/255) or, with ``--format rle``, to one
``masks.jsonl`` line per frame (``{"mask", "frame", "time", "size", "counts"}``,
COCO RLE: :mod:`avseg.engine.rle`); summary rows are streamed into ``summary.json``
in the layout ``json.dumps(summary, indent=1)`` gives, so nothing grows with the
video's length; overlay frames are drawn (:func:`avseg.viz.draw_mask`) and encoded as
they come, each at its own time.

One meaning per key in every output: ``mask`` is the mask's number (the PNG's
name, the line of ``masks.jsonl``, the row of ``summary.json``), ``frame`` the
video frame it was made from (0-based among the decoded frames, in presentation
order), ``time`` that frame's presentation time in seconds.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avseg.engine import rle
from avseg.engine.memory import release_freed_memory_between_model_calls
from avseg.media import VideoWriter
from avseg.viz import draw_mask

MASK_FORMATS = ("png", "rle")


class FrameOutputs:
    """Masks, summary rows and overlay frames of one video into ``folder`` (see the module doc)."""

    def __init__(
        self, folder: Path, video: Path, fps: float, size: tuple[int, int], has_audio: bool, header: dict[str, Any],
        mask_format: str = "png", time_base: Fraction | None = None,
    ):  # fmt: skip
        self.mask_format = mask_format
        if mask_format == "png":
            self.masks_dir = folder / "masks"
            self.masks_dir.mkdir()
        else:
            self.masks_file = open(folder / "masks.jsonl", "w")
        self.summary = open(folder / "summary.json", "w")
        head = json.dumps({**header, "frames": []}, indent=1, allow_nan=False)
        self.summary.write(head[: head.rindex("[]") + 1])  # '... "frames": [' : rows follow
        self.rows = 0
        self.overlay = VideoWriter(folder / "overlay.mp4", fps, *size, audio_from=video if has_audio else None, time_base=time_base)
        self.overlay_frames, self.frames_per_release = 0, max(1, round(fps))

    def handle(self, item: tuple) -> None:
        """``("mask", index, frame, time, mask, row)`` or ``("overlay", image, time, mask)``."""
        if item[0] == "mask":
            self.write_mask(*item[1:])
        else:
            self.write_overlay(*item[1:])

    def write_mask(self, index: int, frame: int, time: float, mask: np.ndarray, row: dict[str, Any]) -> None:
        if self.mask_format == "png":
            Image.fromarray(mask.astype(np.uint8) * 255).save(self.masks_dir / f"{index:05d}.png")
        else:
            self.masks_file.write(json.dumps({"mask": index, "frame": frame, "time": time, **rle.encode(mask)}) + "\n")
        text = json.dumps(row, indent=1, allow_nan=False).replace("\n", "\n  ")
        self.summary.write(f"{',' if self.rows else ''}\n  {text}")
        self.rows += 1

    def write_overlay(self, image: np.ndarray, time: float, mask: np.ndarray) -> None:
        self.overlay.write_frame(draw_mask(image, mask), time)
        self.overlay_frames += 1
        if self.overlay_frames % self.frames_per_release == 0:
            release_freed_memory_between_model_calls()  # about once a second: every frame passes through the heap here

    def close(self) -> None:
        self.summary.write("\n ]\n}" if self.rows else "]\n}")
        self._close_files()
        self.overlay.close()

    def abort(self) -> None:
        self._close_files()
        self.overlay.abort()

    def _close_files(self) -> None:
        self.summary.close()
        if self.mask_format == "rle":
            self.masks_file.close()
