"""What a training loop needs from AV2T-SAM and AV2T-SAM3: shuffled batches of frame rows, and their loss."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from avseg.data.clip import Clip
from avseg.models.av2t_sam.inputs import AV2TInputs, FrameRows
from avseg.models.av2t_sam.model import AV2TSAM
from avseg.models.av2t_sam.sam3 import AV2TSAM3


def bce_soft_iou_loss(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The paper's loss, BCE-with-logits + soft IoU (1:1), both averaged over frames.

    Soft IoU per frame is ``1 - (I + 1) / (U + 1)`` with ``I = sum(s g)``, ``U = sum(s) +
    sum(g) - I`` and ``s = sigmoid(logits)``. The one-pixel smoothing is our change: the
    release's ``1 - I / U`` is NaN when the ground truth is empty and the prediction
    underflows to zero, and on an empty ground truth it is a constant with no gradient; with
    the smoothing it is ``U / (U + 1)`` there, which pulls the prediction to empty. On an object
    of a few hundred pixels the two differ by well under 1%.
    """
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    probabilities = logits.sigmoid().flatten(1)
    targets = masks.flatten(1)
    intersection = (probabilities * targets).sum(1)
    union = probabilities.sum(1) + targets.sum(1) - intersection
    iou = (1 - (intersection + 1) / (union + 1)).mean()
    return {"total": bce + iou, "bce": bce, "soft_iou": iou}


class AV2TTask:
    """Training batches over the annotated frames of ``clips`` (S4's train split: its one annotated
    frame per clip, T = 1; MS3: all five)."""

    def __init__(self, model: AV2TSAM | AV2TSAM3, inputs: AV2TInputs, clips: Sequence[Clip], batch_clips: int = 8, seed: int = 0):
        self.model = model
        self.inputs = inputs
        self.batch_clips = batch_clips
        self.seed = seed
        self.rows = []
        for clip in clips:
            rows = inputs.rows(clip)
            self.rows.append(rows.select(torch.from_numpy(clip.mask_valid[clip.frame_valid])))

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_clips - 1) // self.batch_clips

    def batches(self, epoch: int) -> Iterator[list[FrameRows]]:
        """Shuffled from ``(seed, epoch)`` alone, so a resumed run sees the same batches."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        for start in range(0, len(order), self.batch_clips):
            yield [self.rows[i] for i in order[start : start + self.batch_clips]]

    def loss(self, clips: list[FrameRows], device: torch.device | str = "cpu", forward=None) -> dict[str, torch.Tensor]:
        rows = FrameRows.concat(clips)
        logits = (forward or self.model)(**self.inputs.model_inputs(rows, device), size=tuple(rows.masks.shape[1:]))
        return bce_soft_iou_loss(logits, rows.masks.to(device))
