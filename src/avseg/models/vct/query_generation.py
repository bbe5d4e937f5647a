"""Prototype Prompted Query Generation (PPQG): vision-derived queries from the pixel decoder's stride-4 map.

    pixels   = conv1x1 -> ReLU -> conv3x3 -> ReLU -> conv1x1 (mask features)      (B, C, H/4 * W/4)
    queries  = MLP over the pixel axis (H/4*W/4 -> 256 -> 256 -> Q)               (Q, B, C)   "query mixer"
    queries  = post-norm cross-attention of the queries to the class prototypes   (S4, AVSS; 4 heads)
    queries += GumbelGrouping(queries, pixels)                                    "pixel context grouping"

With prototypes (the release's ``ProtoVCQ``) the prototypes are returned too, for the prototype-audio loss; without
(``VCQ``, the MS3 model) there is no prototype attention. The query mixer is a linear map over pixel positions, so the
model runs at one input size only: (image_size / 4)^2 inputs, 96 x 96 at the release's 384.
The release fixes the mixer's and the projection's hidden width at 256; here it is ``width`` (256 in every released model).
"""

from __future__ import annotations

from torch import Tensor, nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMLPPredictionHead,
)

from avseg.models.vct.grouping import GumbelGrouping


class PrototypeAttention(nn.Module):
    """The release's post-norm ``CrossAttentionLayer``: ``norm(queries + MHA(queries, prototypes, prototypes))``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(width, heads)
        self.norm = nn.LayerNorm(width)

    def forward(self, queries: Tensor, prototypes: Tensor) -> Tensor:
        return self.norm(queries + self.multihead_attn(queries, prototypes, prototypes)[0])


class QueryGeneration(nn.Module):
    def __init__(self, width: int, num_pixels: int, num_queries: int, num_prototypes: int, prototype_heads: int = 4):
        super().__init__()
        self.pre_proj = nn.Sequential(
            nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 1)
        )
        self.query_mixer = Mask2FormerMLPPredictionHead(num_pixels, width, num_queries, 3)
        if num_prototypes:
            self.prototype = nn.Embedding(num_prototypes, width)
            self.pre_attn = PrototypeAttention(width, prototype_heads)
        else:
            self.prototype = None
        self.assign_attn = GumbelGrouping(width)

    def forward(self, mask_features: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(B, C, h, w)`` -> queries ``(Q, B, C)`` and prototypes ``(K, B, C)`` (None without prototypes)."""
        batch = len(mask_features)
        pixels = self.pre_proj(mask_features).flatten(2)  # (B, C, P)
        queries = self.query_mixer(pixels).permute(2, 0, 1)  # (Q, B, C)
        prototypes = None
        if self.prototype is not None:
            prototypes = self.prototype.weight[:, None].repeat(1, batch, 1)
            queries = self.pre_attn(queries, prototypes)
        queries = queries.transpose(0, 1)
        queries = queries + self.assign_attn(queries, pixels.transpose(1, 2))
        return queries.transpose(0, 1), prototypes
