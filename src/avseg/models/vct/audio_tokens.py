"""Audio tokens: VGGish's convolutional map of each frame's 0.96-s log-mel example, ``(512, 6, 4)``, each of its 24
positions turned by a three-layer MLP (512 -> 4096 -> 4096 -> 256, ReLU between) into one token.

The release's ``audio_mlp`` runs on the map transposed to ``(B, 4, 6, 512)`` and transposes back; the MLP is
position-wise, so this is the same as running it on every position of the ``(6, 4)`` map, which is what is written
here. VGGish is frozen and runs without gradients (its fully connected ``embeddings`` are loaded with the
checkpoint but unused, as in the release).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avseg.encoders.vggish import VGGish, VGGishConfig


class AudioTokens(nn.Module):
    def __init__(self, vggish: VGGishConfig, width: int, hidden: int = 4096):
        super().__init__()
        self.vggish = VGGish(vggish)
        self.vggish.requires_grad_(False)
        self.mlp = nn.Sequential(
            nn.Linear(vggish.channels[-1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, width)
        )

    def forward(self, examples: Tensor) -> Tensor:
        """``(N, 96, 64)`` log-mel examples -> ``(N, width, 6, 4)`` token map."""
        with torch.no_grad():
            conv_map = self.vggish.features(examples[:, None])
        return self.mlp(conv_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
