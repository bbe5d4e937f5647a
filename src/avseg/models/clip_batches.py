"""Whole clips in shuffled batches: the batching of the video models' training tasks (AuralSAM2, VCT)."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from avseg.data.clip import Clip


class ClipBatches:
    """``batch_clips`` clips per step, in an order drawn from ``(seed, epoch)`` alone, so a resumed run sees the
    same batches."""

    def __init__(self, model: Any, clips: Sequence[Clip], batch_clips: int = 1, seed: int = 0):
        self.model = model
        self.clips = list(clips)
        self.batch_clips = batch_clips
        self.seed = seed

    def __len__(self) -> int:
        return (len(self.clips) + self.batch_clips - 1) // self.batch_clips

    def batches(self, epoch: int) -> Iterator[list[Clip]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.clips))
        for start in range(0, len(order), self.batch_clips):
            yield [self.clips[i] for i in order[start : start + self.batch_clips]]
