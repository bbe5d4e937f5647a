"""A parameter-free frame encoder: each frame's colour layout as a small thumbnail.

It stands in for CLIP offline, where no pretrained image network can be downloaded (as
:class:`~avseg.encoders.logmel.LogMelEncoder` stands in for the audio networks): the frame
is area-averaged to ``side x side`` RGB, centred on its mean and flattened. It tells the
synthetic benchmark's objects apart by colour and place; the paper recipes use CLIP.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


class ThumbnailEncoder:
    def __init__(self, side: int = 4):
        self.side = side
        self.dim = 3 * side * side

    def embed_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` -> ``(T, 3 * side * side)``."""
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        thumbnails = F.adaptive_avg_pool2d(images, self.side).flatten(1)
        return thumbnails - thumbnails.mean(1, keepdim=True)
