"""The one representation every reader yields and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Clip:
    """T frames of a video with their sound and (optionally) their masks.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB.
        waveform: float32 ``(S,)`` mono in [-1, 1].
        sample_rate: rate of ``waveform`` in Hz.
        masks: ``(T, H, W)`` uint8 ground truth, or None for unlabelled video.
            Binary tasks store 0/1; AVSS stores class indices (0 = background).
            Frames without an annotation hold zeros; see ``mask_valid``.
        mask_valid: bool ``(T,)``, True where a frame has a ground-truth mask
            (S4 train: only frame 0).
        frame_valid: bool ``(T,)``, False for padding frames (AVSS v1 clips
            have 5 real frames padded to 10 with black frames).
        meta: identifiers and annotations that are not arrays: ``id``,
            ``subset``, ``split``, ``category``, ``expression`` (Ref-AVS), ...
            ``sounding_labels``: one list of category names per frame (padding
            frames included, empty there), what sounds in it, for TeSO's
            InfoNCE; absent where the dataset does not say (each reader
            documents where its names come from).
        channels: float32 ``(C, S)``, the track's own channels at ``sample_rate``
            (``waveform`` is their mix), read when a recipe asks for them
            (``data.channels: 2``, AuralSAM2's stereo VGGish); None otherwise.
            Replacing the sound (:meth:`with_audio`) drops them.
    """

    frames: np.ndarray
    waveform: np.ndarray
    sample_rate: int
    masks: np.ndarray | None = None
    mask_valid: np.ndarray | None = None
    frame_valid: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    channels: np.ndarray | None = None

    def __post_init__(self) -> None:
        num_frames = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T,H,W,3), got {self.frames.dtype} {self.frames.shape}")
        if self.waveform.ndim != 1:
            raise ValueError(f"waveform must be mono (S,), got shape {self.waveform.shape}")
        if self.channels is not None and (self.channels.ndim != 2 or self.channels.shape[1] != len(self.waveform)):
            raise ValueError(f"channels must be (C, {len(self.waveform)}), got shape {self.channels.shape}")
        if self.frame_valid is None:
            self.frame_valid = np.ones(num_frames, dtype=bool)
        if self.masks is not None:
            if self.masks.shape[0] != num_frames or self.masks.ndim != 3:
                raise ValueError(f"masks must be (T,H,W) with T={num_frames}, got {self.masks.shape}")
            if self.mask_valid is None:
                self.mask_valid = self.frame_valid.copy()
        elif self.mask_valid is None:
            self.mask_valid = np.zeros(num_frames, dtype=bool)

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def duration(self) -> float:
        return len(self.waveform) / self.sample_rate

    def with_audio(self, waveform: np.ndarray, sample_rate: int | None = None) -> Clip:
        """A copy with its sound replaced (used by the perturbations)."""
        return replace(self, waveform=waveform, sample_rate=sample_rate or self.sample_rate, meta=dict(self.meta), channels=None)
