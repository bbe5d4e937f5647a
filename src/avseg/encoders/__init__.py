"""Frozen pretrained encoders (audio, text, vision) that the segmentation models build on.

The interfaces the models rely on are below; any object with these methods serves (a
pretrained network, a parameter-free front end, or a feature cache in front of either).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AudioEncoder(Protocol):
    dim: int

    def embed(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        """``(num_seconds, dim)``: one embedding per second of a mono waveform."""
        ...


class ImageEncoder(Protocol):
    dim: int

    def embed_frames(self, frames: np.ndarray) -> torch.Tensor:
        """``(T, dim)`` from uint8 ``(T, H, W, 3)`` frames."""
        ...
