"""The simplest propagator: each frame between keyframes shows the last keyframe's mask.

``--propagator hold --keyframes 1`` is what ``avseg segment`` did before dense
output (one mask per second, held over the second), at every frame's own time:
the baseline a tracking propagator has to beat.
"""

from __future__ import annotations

import numpy as np


class HoldPropagator:
    def __init__(self) -> None:
        self.mask: np.ndarray | None = None

    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        self.mask = np.asarray(mask, dtype=bool).copy() if np.any(mask) else None

    def step(self, frame: np.ndarray) -> np.ndarray:
        if self.mask is None:
            return np.zeros(frame.shape[:2], dtype=np.float32)
        return self.mask.astype(np.float32)

    def memory_entries(self) -> int:
        return 0 if self.mask is None else 1
