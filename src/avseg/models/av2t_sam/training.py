"""What a training loop needs from AV2T-SAM and AV2T-SAM3: shuffled batches of frame rows, and their loss.

Silence augmentation (``train.mute_probability``, as TeSO's): with that probability a clip's audio is
replaced by the encoder's embedding of digital silence and its targets by empty masks. The paper trains
without it (avseg's default for AV2T-SAM recipes is the recipe's value; 0 reproduces the paper); with it
the model learns that silence means nothing to segment, instead of never seeing silence at all.
"""

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

    def __init__(
        self,
        model: AV2TSAM | AV2TSAM3,
        inputs: AV2TInputs,
        clips: Sequence[Clip],
        batch_clips: int = 8,
        seed: int = 0,
        mute_probability: float = 0.0,
    ):
        self.model = model
        self.inputs = inputs
        self.batch_clips = batch_clips
        self.seed = seed
        self.mute_probability = mute_probability
        self.rows, self._silent = [], []
        for clip in clips:
            annotated = torch.from_numpy(clip.mask_valid[clip.frame_valid])
            self.rows.append(inputs.rows(clip).select(annotated))
            if mute_probability > 0:
                silence = inputs.audio_embeddings(np.zeros_like(clip.waveform), clip.sample_rate, clip.num_frames)
                self._silent.append(silence[torch.from_numpy(clip.frame_valid)][annotated])

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_clips - 1) // self.batch_clips

    def batches(self, epoch: int) -> Iterator[list[FrameRows]]:
        """Shuffled from ``(seed, epoch)`` alone, so a resumed run sees the same batches."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.rows))
        for start in range(0, len(order), self.batch_clips):
            chosen = order[start : start + self.batch_clips]
            if self.mute_probability == 0:  # no draw: batches stay those of a run without the option
                yield [self.rows[i] for i in chosen]
                continue
            mute = rng.random(len(chosen)) < self.mute_probability
            yield [self._muted(i) if m else self.rows[i] for i, m in zip(chosen, mute)]

    def _muted(self, index: int) -> FrameRows:
        rows = self.rows[index]
        return FrameRows(rows.frames, rows.clip, self._silent[index], torch.zeros_like(rows.masks))

    def loss(self, clips: list[FrameRows], device: torch.device | str = "cpu", forward=None) -> dict[str, torch.Tensor]:
        rows = FrameRows.concat(clips)
        logits = (forward or self.model)(**self.inputs.model_inputs(rows, device), size=tuple(rows.masks.shape[1:]))
        return bce_soft_iou_loss(logits, rows.masks.to(device))
