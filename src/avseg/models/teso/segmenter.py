"""TeSO as a segmenter: clips in, per-frame logits out (used by evaluation and segmentation)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from avseg.data.clip import Clip
from avseg.errors import AvsegError
from avseg.models.teso.inputs import FrameBatch, TeSOInputs
from avseg.models.teso.model import TeSO
from avseg.silence import SilenceGated, silent_seconds


class TeSOSegmenter(SilenceGated):
    """Runs a :class:`TeSO` on whole clips with its frozen encoders and a cue table, then its silence gate.

    Args:
        cues: per clip id, one list of cue names per frame (from ``avseg cues``
            or the synthetic oracle). A clip without an entry is an error: a
            model silently run without its cues would be a different model.
    """

    def __init__(self, model: TeSO, inputs: TeSOInputs, cues: Mapping[str, Sequence[Sequence[str]]], device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.inputs = inputs
        self.cues = cues
        self.device = device
        self.silence_gate_dbfs = model.config.silence_gate_dbfs

    def frame_cues(self, clip: Clip) -> Sequence[Sequence[str]]:
        if clip.id not in self.cues:
            raise AvsegError(f"no text cues for clip {clip.id!r}; generate them with `avseg cues`")
        return self.cues[clip.id]

    @torch.no_grad()
    def predict_ungated(self, clips: Sequence[Clip]) -> tuple[list[torch.Tensor], list]:
        batches = [self.inputs.frames(clip, self.frame_cues(clip)) for clip in clips]
        outputs = self.model(**FrameBatch.concat(batches).model_inputs(self.device))
        logits, silent, start = [], [], 0
        for clip, batch in zip(clips, batches):
            size = clip.masks.shape[1:] if clip.masks is not None else clip.frames.shape[1:3]
            logits.append(self.model.segmentation_logits(outputs, tuple(size), slice(start, start + len(batch))).cpu())
            silent.append(silent_seconds(batch.audio_level_db.numpy(), self.silence_gate_dbfs))
            start += len(batch)
        return logits, silent
