"""What a training loop needs from TeSO: shuffled batches of frame rows, and their loss.

Frozen encoders run once per clip (:class:`~avseg.models.teso.inputs.TeSOInputs`)
and their outputs are kept, so an epoch only runs the trainable model.

Silence augmentation: with probability ``mute_probability`` a clip's audio is
replaced by digital silence (the encoder's embedding of zeros, a level of
-200 dBFS) and its targets by empty masks. The synthetic and real training
sets rarely contain true silence, and without it the network never learns to
answer silence with an empty mask. The silence gate (:mod:`avseg.silence`) is
not applied in training: it is a rule on the output, with no gradient, so the
muted clips teach the network itself (``mute_probability: 0`` turns that off).

Sounding labels for InfoNCE come from ``clip.meta["sounding_labels"]`` (one
list of category names per frame, filled by the dataset readers; see
:mod:`avseg.data.reader`): frames that share a name are positives. Clips
without labels (MS3) carry none, and a batch holding such a clip has no
InfoNCE term.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from avseg.data.clip import Clip
from avseg.models.teso.inputs import (
    FrameBatch,
    TeSOInputs,
    audio_windows,
    matched_targets,
)
from avseg.models.teso.model import TeSO
from avseg.silence import DIGITAL_SILENCE_DBFS


class TeSOTask:
    def __init__(
        self,
        model: TeSO,
        inputs: TeSOInputs,
        clips: Sequence[Clip],
        cues: Mapping[str, Sequence[Sequence[str]]],
        batch_clips: int = 4,
        mute_probability: float = 0.1,
        seed: int = 0,
    ):
        self.model = model
        self.inputs = inputs
        self.batch_clips = batch_clips
        self.mute_probability = mute_probability
        self.seed = seed
        labels = sounding_label_rows(clips)
        self.rows = [inputs.frames(clip, cues[clip.id], rows) for clip, rows in zip(clips, labels)]
        self.rows = [rows.select(rows.mask_valid) for rows in self.rows]
        num_seconds = max(len(r) for r in self.rows)
        silent = inputs.audio_embeddings(np.zeros(16000 * num_seconds, np.float32), 16000, num_seconds)
        self._silent_audio = audio_windows(silent, inputs.audio_window)[0]

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_clips - 1) // self.batch_clips

    def batches(self, epoch: int) -> Iterator[list[FrameBatch]]:
        """One epoch of batches of ``batch_clips`` clips (one :class:`FrameBatch` per clip), shuffled
        and augmented from ``(seed, epoch)`` alone, so a resumed run sees the same batches."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.rows))
        for start in range(0, len(order), self.batch_clips):
            chosen = [self.rows[i] for i in order[start : start + self.batch_clips]]
            mute = rng.random(len(chosen)) < self.mute_probability
            yield [self._muted(rows) if m else rows for rows, m in zip(chosen, mute)]

    def _muted(self, rows: FrameBatch) -> FrameBatch:
        muted = rows.select(torch.arange(len(rows)))
        muted.audio = self._silent_audio[: len(rows)].clone()
        muted.audio_level_db = torch.full_like(rows.audio_level_db, DIGITAL_SILENCE_DBFS)
        muted.masks = torch.zeros_like(rows.masks)
        if muted.sound_labels is not None:
            muted.sound_labels = torch.zeros_like(rows.sound_labels)
        return muted

    def loss(self, clips: list[FrameBatch], device: torch.device | str = "cpu", forward=None) -> dict[str, torch.Tensor]:
        """Losses of a list of clips' rows; ``forward`` is the module to run (a DDP wrapper of the model)."""
        batch = FrameBatch.concat(clips)
        outputs = (forward or self.model)(**batch.model_inputs(device))
        mask_labels, class_labels = matched_targets(batch.masks, self.model.config.image_size)
        has_object = (batch.masks.flatten(1) > 0).any(1)
        sound_labels = None if batch.sound_labels is None else batch.sound_labels.to(device)
        return self.model.loss(
            outputs,
            [m.to(device) for m in mask_labels],
            [c.to(device) for c in class_labels],
            has_object.to(device),
            sound_labels,
        )


def sounding_label_rows(clips: Sequence[Clip]) -> list[torch.Tensor | None]:
    """Per clip, bool ``(T, L)`` multi-hot sounding categories over the names of all ``clips`` (sorted), or None
    for a clip whose reader gives no labels."""
    names = sorted({name for clip in clips for frame in clip.meta.get("sounding_labels") or () for name in frame})
    index = {name: k for k, name in enumerate(names)}
    rows = []
    for clip in clips:
        labels = clip.meta.get("sounding_labels")
        if labels is None:
            rows.append(None)
            continue
        multi_hot = torch.zeros(clip.num_frames, len(names), dtype=torch.bool)
        for t, frame in enumerate(labels):
            multi_hot[t, [index[name] for name in frame]] = True
        rows.append(multi_hot)
    return rows
