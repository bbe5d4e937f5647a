"""MaskDINO's encoder (the release's ``body/encoder/encoder_deform.py``, ``MaskDINOEncoder``): a multi-scale
deformable-attention encoder over res3..res5 and one extra level, then one FPN step to res2 for the mask features.

Per image::

    levels   = GN(1x1 conv(res3)), GN(1x1 conv(res4)), GN(1x1 conv(res5)), GN(3x3 stride-2 conv(res5))   high-res first
    memory   = 6 Deformable-DETR encoder layers over the four levels (+ sine positions + a learned level embedding)
    fpn      = relu(GN(3x3 conv(GN(1x1 conv(res2)) + bilinear(memory at res3's level))))
    outputs  = 1x1 conv(fpn) as the mask features (stride 4), and the four encoded levels (res3, res4, res5, extra)

The layers are transformers' ``DeformableDetrEncoderLayer`` (post-norm, ReLU feed-forward, the release's
``MSDeformAttnTransformerEncoderLayer`` exactly), whose deformable attention is transformers' pure-PyTorch
``MultiScaleDeformableAttention`` (``grid_sample``), the function the release falls back to without its CUDA op. No
padding mask: the release builds one only when a level is not a multiple of 32, which its padded inputs never have.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import DeformableDetrConfig
from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrEncoderLayer,
)
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerSinePositionEmbedding,
)

from avseg.models.vct.pixel_decoder import c2_xavier_fill, reset_deformable_attention

LEVELS = 4
"""``TOTAL_NUM_FEATURE_LEVELS``: res3, res4, res5 and one made from res5."""


def deformable_config(width: int, heads: int, points: int, feedforward: int) -> DeformableDetrConfig:
    """transformers' Deformable-DETR settings of the release's layers (no dropout at inference, ReLU, 4 levels)."""
    config = DeformableDetrConfig(
        d_model=width,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_n_points=points,
        decoder_n_points=points,
        encoder_ffn_dim=feedforward,
        decoder_ffn_dim=feedforward,
        num_feature_levels=LEVELS,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="relu",
        use_pretrained_backbone=False,
    )
    config._attn_implementation = "sdpa"
    return config


def norm_conv(channels: int, width: int, kernel: int = 1, stride: int = 1, bias: bool = True) -> nn.Sequential:
    """A conv then GroupNorm(32) (the release's ``nn.Sequential(Conv2d, GroupNorm)`` and detectron2's ``Conv2d(norm=)``)."""
    return nn.Sequential(nn.Conv2d(channels, width, kernel, stride=stride, padding=kernel // 2, bias=bias), nn.GroupNorm(32, width))


def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """Every position's centre, normalised to [0, 1], repeated for each level: ``(1, sum HW, levels, 2)`` (the
    release's ``get_reference_points`` with no padding, so every valid ratio is 1)."""
    points = []
    for height, width in shapes:
        y, x = torch.meshgrid(
            torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device) / height,
            torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device) / width,
            indexing="ij",
        )
        points.append(torch.stack((x.reshape(-1), y.reshape(-1)), -1))
    return torch.cat(points)[None, :, None].expand(-1, -1, len(shapes), -1)


class MaskDinoEncoder(nn.Module):
    def __init__(self, channels: list[int], width: int, layers: int, heads: int, points: int, feedforward: int):
        """``channels``: the backbone's res2..res5 widths."""
        super().__init__()
        res2, res3, res4, res5 = channels
        self.input_projections = nn.ModuleList(
            [norm_conv(res3, width), norm_conv(res4, width), norm_conv(res5, width), norm_conv(res5, width, kernel=3, stride=2)]
        )
        self.level_embed = nn.Parameter(torch.empty(LEVELS, width))
        config = deformable_config(width, heads, points, feedforward)
        self.layers = nn.ModuleList(DeformableDetrEncoderLayer(config) for _ in range(layers))
        self.position = Mask2FormerSinePositionEmbedding(num_position_features=width // 2, normalize=True)
        self.lateral = norm_conv(res2, width, bias=False)
        self.output = norm_conv(width, width, kernel=3, bias=False)
        self.mask_projection = nn.Conv2d(width, width, 1)
        self.initialise()

    def initialise(self) -> None:
        """The release's initialisation (``MaskDINOEncoder.__init__`` and ``MSDeformAttnTransformerEncoderOnly``)."""
        for parameter in self.layers.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for layer in self.layers:
            reset_deformable_attention(layer.self_attn)
        nn.init.normal_(self.level_embed)
        for projection in self.input_projections:
            nn.init.xavier_uniform_(projection[0].weight, gain=1)
            nn.init.zeros_(projection[0].bias)
        for conv in (self.lateral[0], self.output[0], self.mask_projection):
            c2_xavier_fill(conv)

    def forward(self, pyramid: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """res2..res5 ``(N, C_l, H_l, W_l)`` -> mask features ``(N, width, H/4, W/4)`` and the four encoded levels
        (res3, res4, res5, extra; the decoder reads them)."""
        res2, res3, res4, res5 = (level.float() for level in pyramid)
        projections = self.input_projections
        levels = [projections[0](res3), projections[1](res4), projections[2](res5), projections[3](res5)]
        shapes = [tuple(level.shape[-2:]) for level in levels]
        sources = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], 1)
        positions = torch.cat(
            [
                (self.position(level.shape, level.device, level.dtype).flatten(2).transpose(1, 2) + self.level_embed[index])
                for index, level in enumerate(levels)
            ],
            1,
        )
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=sources.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
        points = reference_points(shapes, sources.device).expand(len(sources), -1, -1, -1)
        memory = sources
        for layer in self.layers:
            memory = layer(
                memory,
                attention_mask=None,
                spatial_position_embeddings=positions,
                reference_points=points,
                spatial_shapes=spatial_shapes,
                spatial_shapes_list=shapes,
                level_start_index=level_start_index,
            )
        encoded = [
            part.transpose(1, 2).reshape(len(memory), -1, *shape)
            for part, shape in zip(memory.split([h * w for h, w in shapes], 1), shapes)
        ]
        lateral = self.lateral(res2)
        fpn = F.relu(self.output(lateral + F.interpolate(encoded[0], size=lateral.shape[-2:], mode="bilinear", align_corners=False)))
        return self.mask_projection(fpn), encoded
