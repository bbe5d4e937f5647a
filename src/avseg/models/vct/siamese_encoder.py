"""The Siamese encoder (COMBO's, which VCT keeps): two Swin-B, one for the frame and one for its mask image.

Per level ``l`` of the two pyramids (res2..res5)::

    features_l = frame_l + ChannelWeighting_l(mask_image_l) * mask_image_l

The two Swins share nothing (the release's ``pre_sam_backbone`` is a second ``build_backbone``). Both are
transformers' ``SwinBackbone``, which runs as Mask2Former's ``D2SwinTransformer``: shifted windows at every stage
(``always_partition``, so the 12x12 last stage at 384 keeps its 12-window and its 6-shift with the cyclic mask, as
the release does, where a plain ``SwinModel`` would drop the shift), the stage outputs taken before patch merging and
normalised by one LayerNorm per stage (the release's ``norm0..norm3``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import SwinBackbone, SwinConfig

STAGES = ("stage1", "stage2", "stage3", "stage4")


def swin_backbone(config: dict[str, Any]) -> SwinBackbone:
    """A ``SwinBackbone`` with the four stages out; the final LayerNorm of ``SwinModel`` (unused by a backbone, absent
    from the release) is removed, so every weight has a counterpart in the release's checkpoints."""
    backbone = SwinBackbone(SwinConfig(**{**config, "out_features": list(STAGES)}))
    backbone.swin.layernorm = nn.Identity()
    return backbone


class ChannelWeighting(nn.Module):
    """The release's ``channel_weighted_block``: squeeze-and-excitation weights, ``sigmoid(fc2(relu(fc1(avgpool(x)))))``
    of shape ``(B, C, 1, 1)``, reduction 16."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(channels, int(channels / reduction))
        self.fc2 = nn.Linear(int(channels / reduction), channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=(2, 3))
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled))))[:, :, None, None]


class SiameseEncoder(nn.Module):
    def __init__(self, swin: dict[str, Any]):
        super().__init__()
        self.frame_encoder = swin_backbone(swin)
        self.mask_encoder = swin_backbone(swin)
        self.weightings = nn.ModuleList(ChannelWeighting(channels) for channels in self.frame_encoder.channels)

    @property
    def channels(self) -> list[int]:
        return list(self.frame_encoder.channels)

    def forward(self, pixels: Tensor, mask_images: Tensor) -> list[Tensor]:
        """``(N, 3, S, S)`` normalised frames and mask images -> res2..res5, ``(N, C_l, S/4/2^l, S/4/2^l)``."""
        frames = self.frame_encoder(pixels).feature_maps
        masks = self.mask_encoder(mask_images).feature_maps
        return [frame + weighting(mask) * mask for frame, mask, weighting in zip(frames, masks, self.weightings)]
