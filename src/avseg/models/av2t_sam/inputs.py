"""From clips to AV2T-SAM's per-frame inputs.

Frozen encoders run once per clip and their outputs are kept (the audio one per distinct
waveform): f_CLIP from each frame, f_CLAP from each frame's second of audio. Frames are
kept as uint8 and only become pixel tensors (AV2T-SAM: SAM's 1024x1024 ImageNet-normalised
frame and BEiT-3's 224x224 frame with mean = std = 0.5; AV2T-SAM3: SAM 3's 1008x1008 frame)
when a batch is assembled, so a dataset never sits in memory at 1024x1024.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from avseg.data.clip import Clip
from avseg.encoders import IMAGENET_MEAN, IMAGENET_STD, AudioEncoder, ImageEncoder
from avseg.encoders.cache import MemoryCache


def sam_pixels(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, size, size)`` for SAM, as the release prepares them: PIL bilinear
    resize of the uint8 frame (so the result is rounded to uint8), then ImageNet mean/std on the 0-255 scale.
    The release resizes the longest side and never pads, so only square frames fit its SAM 2; we resize
    every frame to the square, which equals the release on AVSBench's square frames."""
    resized = np.stack([np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR)) for frame in frames.cpu().numpy()])
    images = torch.from_numpy(resized).to(frames.device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device)[:, None, None] * 255
    std = torch.tensor(IMAGENET_STD, device=frames.device)[:, None, None] * 255
    return (images - mean) / std


def evf_pixels(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, size, size)`` for BEiT-3, as the release: to [0, 1], bicubic resize of
    the float image without antialiasing or clamping (the identity for frames already at ``size``), mean = std = 0.5."""
    images = frames.permute(0, 3, 1, 2).float() / 255.0
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
    return (images - 0.5) / 0.5


@dataclass
class FrameRows:
    """Frames of one or more clips, one row each."""

    frames: torch.Tensor
    """uint8 ``(N, H, W, 3)``."""
    clip: torch.Tensor
    clap: torch.Tensor
    masks: torch.Tensor | None = None
    """``(N, H, W)`` 0/1 ground truth, or None."""

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, rows: torch.Tensor) -> FrameRows:
        return FrameRows(self.frames[rows], self.clip[rows], self.clap[rows], None if self.masks is None else self.masks[rows])

    @staticmethod
    def concat(parts: Sequence[FrameRows]) -> FrameRows:
        masks = None if any(p.masks is None for p in parts) else torch.cat([p.masks for p in parts])
        return FrameRows(torch.cat([p.frames for p in parts]), torch.cat([p.clip for p in parts]), torch.cat([p.clap for p in parts]), masks)


class AV2TInputs:
    """Turns clips into :class:`FrameRows` with the frozen CLIP and CLAP encoders, and rows into model inputs.

    ``prepare_sam`` makes SAM's frames at ``sam_size`` from uint8 frames (by default :func:`sam_pixels`);
    ``evf_size`` is BEiT-3's frame size, None for a model without BEiT-3 (AV2T-SAM3).
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        audio_encoder: AudioEncoder,
        sam_size: int,
        evf_size: int | None,
        prepare_sam: Callable[[torch.Tensor, int], torch.Tensor] = sam_pixels,
    ):
        self.image_encoder = image_encoder
        self.audio_encoder = audio_encoder
        self.sam_size = sam_size
        self.evf_size = evf_size
        self.prepare_sam = prepare_sam
        self._encoded = MemoryCache()

    def audio_embeddings(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        """``(T, D)``, computed once per distinct waveform (validation reruns the same clips every epoch)."""
        return self._encoded.get(("audio", waveform, sample_rate, num_seconds), lambda: self.audio_encoder.embed(waveform, sample_rate, num_seconds).float().cpu())

    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """``(T, D)``, computed once per distinct clip (validation reruns the same clips every epoch)."""
        return self._encoded.get(("image", frames, frames.shape), lambda: self.image_encoder.embed_frames(frames).float().cpu())

    def rows(self, clip: Clip) -> FrameRows:
        """The clip's real (non-padding) frames as rows; masks are binarised (any object is foreground)."""
        keep = torch.from_numpy(clip.frame_valid)
        rows = FrameRows(
            frames=torch.from_numpy(clip.frames),
            clip=self.image_embeddings(clip.frames),
            clap=self.audio_embeddings(clip.waveform, clip.sample_rate, clip.num_frames),
            masks=torch.from_numpy(clip.masks > 0).float() if clip.masks is not None else None,
        )
        return rows.select(keep)

    def model_inputs(self, rows: FrameRows, device: torch.device | str) -> dict[str, torch.Tensor]:
        frames = rows.frames.to(device)
        inputs = {"sam_pixels": self.prepare_sam(frames, self.sam_size), "clip": rows.clip.to(device), "clap": rows.clap.to(device)}
        if self.evf_size is not None:
            inputs["evf_pixels"] = evf_pixels(frames, self.evf_size)
        return inputs
