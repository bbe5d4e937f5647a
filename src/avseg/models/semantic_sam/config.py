"""Semantic-SAM's sizes: the release's ``configs/semantic_sam_only_sa-1b_swin{L,T}.yaml`` (UX-Decoder/Semantic-SAM at
e11f8b5), the SA-1B-only models its README publishes (``swin{l,t}_only_sam_many2many.pth``).

The two files differ only in the Swin (L: 192 wide, depths 2-2-18-2, window 12, ImageNet-22K at 384; T: 96 wide,
2-2-6-2, window 7, at 224). Everything else is shared: ``encoder_deform`` (MaskDINO's encoder) over res3..res5 plus one
extra level made from res5 by a stride-2 conv (``TOTAL_NUM_FEATURE_LEVELS: 4``), 6 layers, width 256, 8 heads,
4 points, feed-forward ``DIM_FEEDFORWARD`` 2048 (this encoder reads it, unlike Mask2Former's); the interactive decoder
with 9 layers, 6 mask tokens a click (``NUM_INTERACTIVE_TOKENS``), no learned queries; inputs padded to a multiple of
32, normalised by ImageNet's mean and std on the 0-255 scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from avseg.config import build_config, checked

SWIN_L_384 = {
    "image_size": 384,
    "patch_size": 4,
    "embed_dim": 192,
    "depths": [2, 2, 18, 2],
    "num_heads": [6, 12, 24, 48],
    "window_size": 12,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "drop_path_rate": 0.0,
    "use_absolute_embeddings": False,
}
"""``MODEL.BACKBONE.SWIN`` of ``semantic_sam_only_sa-1b_swinL.yaml`` (drop path is a training setting: 0 at inference)."""

SWIN_T_224 = {**SWIN_L_384, "image_size": 224, "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}
"""``MODEL.BACKBONE.SWIN`` of ``semantic_sam_only_sa-1b_swinT.yaml``."""

PIXEL_MEAN = (123.675, 116.280, 103.530)
PIXEL_STD = (58.395, 57.120, 57.375)


@dataclass
class SemanticSamConfig:
    """Sizes of a :class:`~avseg.models.semantic_sam.model.SemanticSam`; the defaults are the released Swin-L's."""

    swin: dict[str, Any] = field(default_factory=lambda: dict(SWIN_L_384))
    """A transformers ``SwinConfig`` as a dict (``image_size`` is only the pretraining size: any input size runs)."""
    width: int = checked(256, min=32)
    """``CONVS_DIM`` = ``MASK_DIM`` = ``HIDDEN_DIM``; a multiple of 32 (GroupNorm(32))."""
    heads: int = checked(8, min=1)
    points: int = checked(4, min=1)
    """Sampling points per head and level of every deformable attention (the release's default 4)."""
    encoder_layers: int = checked(6, min=1)
    decoder_layers: int = checked(9, min=1)
    feedforward: int = checked(2048, min=1)
    """``DIM_FEEDFORWARD``: encoder and decoder layers alike."""
    mask_tokens: int = checked(6, min=1)
    """``NUM_INTERACTIVE_TOKENS``: masks (granularity levels) predicted per click."""
    size_divisibility: int = checked(32, min=1)

    @classmethod
    def large(cls, **changes: Any) -> SemanticSamConfig:
        return cls(**changes)

    @classmethod
    def t(cls, **changes: Any) -> SemanticSamConfig:
        return cls(**{"swin": dict(SWIN_T_224), **changes})

    @classmethod
    def tiny(cls, **changes: Any) -> SemanticSamConfig:
        """The same classes at toy size: a Swin 16 wide, one block a stage, window 4; width 64 (GroupNorm(32) needs two
        channels a group where a tiny frame's extra level is 1 x 1), 2 heads, 2 layers each."""
        swin = {**SWIN_T_224, "embed_dim": 16, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 2, 2], "window_size": 4}
        sizes = {"swin": swin, "width": 64, "heads": 2, "points": 2, "encoder_layers": 2, "decoder_layers": 2, "feedforward": 64}
        return cls(**{**sizes, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {"model": "semantic-sam", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config.json: ") -> SemanticSamConfig:
        return build_config(cls, {k: v for k, v in values.items() if k != "model"}, where)
