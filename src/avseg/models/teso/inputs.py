"""From clips to TeSO's per-frame inputs and targets.

A clip of T frames becomes T rows. Frozen encoders run here, once per clip:
the audio encoder embeds each second (``embed(waveform, rate, T) -> (T, D)``)
and the text encoder embeds cue names (``encode(names) -> (n, D)``, each
distinct name once, on its own so its embedding does not depend on the batch).

Per frame ``t``:

* ``pixel_values``: the frame resized to ``image_size`` (bilinear) and
  normalised with the ImageNet mean and std, as Mask2Former's Swin expects;
* ``audio``: the embeddings of seconds ``t-w..t+w`` (zeros and
  ``audio_valid=False`` past the clip's ends); for a dense clip of
  ``avseg segment`` (``meta["audio_span"]``, whose frames are not a second
  apart) the 1-second windows centred at ``t-w..t+w`` seconds, cut from the
  span (:meth:`TeSOInputs.span_windows`);
* ``audio_level_db``: the level of second ``t`` in dBFS
  (:func:`avseg.silence.robust_level_db`), for the silence gate; not a
  network input;
* ``cues``: up to ``max_cues`` cue embeddings with ``cue_valid``;
* targets: per-class masks for Mask2Former's matched loss (background
  included, empty classes left out), ``has_object`` and the label-size mask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch
from torch import nn

from avseg.data.audio_span import AudioSpan
from avseg.data.clip import Clip
from avseg.encoders import IMAGENET_MEAN, IMAGENET_STD, AudioEncoder
from avseg.encoders.cache import MemoryCache
from avseg.errors import ConfigError
from avseg.silence import robust_level_db


class TextEncoder(Protocol):
    def encode(self, texts: list[str]) -> torch.Tensor: ...


def pixel_values(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> normalised float ``(T, 3, S, S)``."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    images = nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std


def audio_windows(embeddings: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T, D)`` -> ``(T, 2w+1, D)`` neighbourhoods and their validity ``(T, 2w+1)``."""
    num_seconds = len(embeddings)
    offsets = torch.arange(-window, window + 1)
    index = torch.arange(num_seconds)[:, None] + offsets[None]
    valid = (index >= 0) & (index < num_seconds)
    gathered = embeddings[index.clamp(0, num_seconds - 1)] * valid[..., None]
    return gathered, valid


@dataclass
class FrameBatch:
    """Rows of frames ready for :class:`~avseg.models.teso.model.TeSO` (tensors on CPU)."""

    pixel_values: torch.Tensor
    audio: torch.Tensor
    audio_valid: torch.Tensor
    audio_level_db: torch.Tensor
    """``(N,)`` the level of each frame's second, for the silence gate (not a network input)."""
    cues: torch.Tensor
    cue_valid: torch.Tensor
    masks: torch.Tensor | None = None
    """``(N, H, W)`` label-size ground truth (class indices or 0/1)."""
    mask_valid: torch.Tensor | None = None
    sound_labels: torch.Tensor | None = None
    """bool ``(N, L)`` sounding categories for InfoNCE, if known."""

    def model_inputs(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        names = ("pixel_values", "audio", "audio_valid", "cues", "cue_valid")
        return {name: getattr(self, name).to(device) for name in names}

    def __len__(self) -> int:
        return len(self.pixel_values)

    def select(self, rows: torch.Tensor) -> FrameBatch:
        return FrameBatch(**{k: (v[rows] if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()})

    @staticmethod
    def concat(batches: Sequence[FrameBatch]) -> FrameBatch:
        fields = vars(batches[0]).keys()
        joined = {}
        for name in fields:
            values = [getattr(b, name) for b in batches]
            joined[name] = None if any(v is None for v in values) else torch.cat(values)
        return FrameBatch(**joined)


class TeSOInputs:
    """Turns clips into :class:`FrameBatch` rows with frozen audio and text encoders."""

    def __init__(
        self,
        audio_encoder: AudioEncoder,
        text_encoder: TextEncoder,
        text_dim: int,
        image_size: int,
        audio_window: int = 1,
        max_cues: int = 4,
    ):
        self.audio_encoder = audio_encoder
        self.text_encoder = text_encoder
        self.text_dim = text_dim
        self.image_size = image_size
        self.audio_window = audio_window
        self.max_cues = max_cues
        self._cue_cache: dict[str, torch.Tensor] = {}
        self._audio_cache = MemoryCache()
        self._recent_windows: dict[tuple[str, int], torch.Tensor] = {}

    def cue_embeddings(self, frame_cues: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame cue names -> ``(T, K, D)`` embeddings and ``(T, K)`` validity."""
        names = sorted({n for cues in frame_cues for n in cues[: self.max_cues] if n.strip()} - self._cue_cache.keys())
        # One name per call: batched with whichever names happen to be new at the same time (padding,
        # batch position), a name would round differently in a resumed run or in another process.
        with torch.no_grad():
            for name in names:
                self._cue_cache[name] = self.text_encoder.encode([name])[0]
        embeddings = torch.zeros(len(frame_cues), self.max_cues, self.text_dim)
        valid = torch.zeros(len(frame_cues), self.max_cues, dtype=torch.bool)
        for t, cues in enumerate(frame_cues):
            for k, name in enumerate(n for n in cues if n.strip()):
                if k == self.max_cues:
                    break
                embeddings[t, k], valid[t, k] = self._cue_cache[name], True
        return embeddings, valid

    def audio_embeddings(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        """``(T, D)`` per-second embeddings, computed once per distinct waveform (validation runs every
        epoch on the same clips; perturbed audio hashes differently)."""
        return self._audio_cache.get((waveform, sample_rate, num_seconds), lambda: self.audio_encoder.embed(waveform, sample_rate, num_seconds).float())

    def span_windows(self, span: AudioSpan) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense clips: per frame the embeddings of the windows centred at ``t-w .. t+w`` seconds
        (:mod:`avseg.data.audio_span`), ``(T, 2w+1, D)`` and validity ``(T, 2w+1)``; a window holding no
        sample of the track is zeros and invalid, as a second past a clip's end is.

        Each window is embedded on its own (``embed(window, rate, 1)``): VGGish's examples are 0.96 s, so
        the second ``i`` of a longer waveform would not be the window. A window is embedded once per call
        and reused by the next call (frames a whole number of seconds apart share windows); only those two
        calls' windows are kept, so memory stays bounded over a long video."""
        if self.audio_window > span.context:
            raise ConfigError(f"TeSO's audio_window of {self.audio_window} s is more than the {span.context} s of audio context a dense clip carries")
        offsets = range(-self.audio_window, self.audio_window + 1)
        starts = [[span.window_start(frame, offset) for offset in offsets] for frame in range(len(span.times))]
        valid = torch.tensor([[span.holds_track(first) for first in row] for row in starts])
        embeddings, recent = {}, {}
        for first in sorted({first for row in starts for first in row if span.holds_track(first)}):
            window = span.window(first)
            key = (hashlib.sha1(window.tobytes()).hexdigest(), span.sample_rate)
            if key not in recent:
                recent[key] = self._recent_windows.get(key)
                if recent[key] is None:
                    with torch.no_grad():
                        recent[key] = self.audio_encoder.embed(window, span.sample_rate, 1)[0].float().cpu()
            embeddings[first] = recent[key]
        self._recent_windows = recent
        zeros = torch.zeros(self.audio_encoder.dim)
        audio = torch.stack([torch.stack([embeddings.get(first, zeros) for first in row]) for row in starts])
        return audio, valid

    def frames(self, clip: Clip, frame_cues: Sequence[Sequence[str]], sound_labels: torch.Tensor | None = None) -> FrameBatch:
        """The valid frames of ``clip`` as rows; ``frame_cues`` has one list of names per frame."""
        keep = torch.from_numpy(clip.frame_valid)
        num_seconds = clip.num_frames
        span = clip.meta.get("audio_span")
        if span is None:
            embeddings = self.audio_embeddings(clip.waveform, clip.sample_rate, num_seconds)
            audio, audio_valid = audio_windows(embeddings, self.audio_window)
        else:
            audio, audio_valid = self.span_windows(span)
        frame_cues = list(frame_cues)[:num_seconds]
        cues, cue_valid = self.cue_embeddings(frame_cues + [[]] * (num_seconds - len(frame_cues)))
        levels = torch.from_numpy(robust_level_db(clip.waveform, clip.sample_rate, num_seconds)).float()
        batch = FrameBatch(
            pixel_values=pixel_values(clip.frames, self.image_size),
            audio=audio,
            audio_valid=audio_valid,
            audio_level_db=levels,
            cues=cues,
            cue_valid=cue_valid,
            masks=torch.from_numpy(clip.masks).long() if clip.masks is not None else None,
            mask_valid=torch.from_numpy(clip.mask_valid) if clip.masks is not None else None,
            sound_labels=sound_labels,
        )
        return batch.select(keep)


def matched_targets(masks: torch.Tensor, image_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Label maps ``(N, H, W)`` -> per-frame (class masks, class ids) at the model's input size.

    Every class present in a frame, background included, becomes one target.
    """
    resized = nn.functional.interpolate(masks[:, None].float(), size=(image_size, image_size), mode="nearest")[:, 0].long()
    mask_labels, class_labels = [], []
    for frame in resized:
        classes = torch.unique(frame)
        mask_labels.append(torch.stack([(frame == c).float() for c in classes]))
        class_labels.append(classes)
    return mask_labels, class_labels
