"""Mask propagation between keyframes: ``avseg segment --propagator``.

A :class:`Propagator` is started on a keyframe (its frame and the AVS model's
mask, which re-anchors the track; an all-False mask ends it) and then stepped
on each following frame in decode order. :func:`load_propagator` turns the
``--propagator`` option into one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from avseg.errors import ConfigError

class Propagator(Protocol):
    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        """Keyframe: ``(H, W, 3)`` uint8 frame and ``(H, W)`` bool mask; re-anchors the track; all False ends it."""

    def step(self, frame: np.ndarray) -> np.ndarray:
        """The next (non-key) frame -> ``(H, W)`` float32 foreground probability (zeros when no track)."""

    def memory_entries(self) -> int:
        """Frames held in the memory bank."""


def load_propagator(spec: str, model_folder: str | Path | None, system_info: dict, device: str) -> Propagator | None:
    """``"none"`` -> None (the model on every frame); ``"hold"`` -> :class:`~avseg.propagation.hold.HoldPropagator`.
    SAM 2 / SAM 3 video propagators (``"auto"``, a hub name or a SAM 2 folder) come with the propagation models."""
    if spec == "none":
        return None
    if spec == "hold":
        from avseg.propagation.hold import HoldPropagator

        return HoldPropagator()
    raise ConfigError(f"--propagator {spec}: SAM 2 / SAM 3 video propagation is not available in this build (use none or hold)")
