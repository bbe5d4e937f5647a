"""Mask2Former's multi-scale deformable-attention pixel decoder: transformers' ``Mask2FormerPixelDecoder``.

Its deformable attention is transformers' pure-PyTorch ``multi_scale_deformable_attention`` (``grid_sample``), the
function the release falls back to on CPU (``ms_deform_attn_core_pytorch``); no custom CUDA op. The release's
settings (``MSDeformAttnPixelDecoder``): 6 encoder layers over res3..res5, 8 heads, 4 points, feed-forward 1024 (its
``from_config`` fixes 1024 whatever ``DIM_FEEDFORWARD`` says), dropout 0, GroupNorm(32), one FPN level (res2) at
stride 4, a 1x1 mask projection. Outputs: the mask features at stride 4 and the three multi-scale maps, lowest
resolution first (res5, res4, res3).

Built outside a ``PreTrainedModel``, so the release's initialisation is applied here (:func:`initialise`); a
converted checkpoint overwrites it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
)


def pixel_decoder(channels: list[int], width: int, layers: int, heads: int, feedforward: int) -> Mask2FormerPixelDecoder:
    config = Mask2FormerConfig(
        feature_size=width,
        mask_feature_size=width,
        encoder_layers=layers,
        num_attention_heads=heads,
        encoder_feedforward_dim=feedforward,
        dropout=0.0,
        common_stride=4,
        feature_strides=[4, 8, 16, 32],
    )
    decoder = Mask2FormerPixelDecoder(config, feature_channels=channels)
    initialise(decoder)
    return decoder


def c2_xavier_fill(conv: nn.Conv2d) -> None:
    """detectron2's ``c2_xavier_fill``: Kaiming-uniform with ``a=1``, bias 0."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def reset_deformable_attention(attention: Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention) -> None:
    """Deformable DETR's ``MSDeformAttn._reset_parameters``: offsets start on a ring of directions, uniform weights."""
    nn.init.zeros_(attention.sampling_offsets.weight)
    thetas = torch.arange(attention.n_heads, dtype=torch.float32) * (2.0 * math.pi / attention.n_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(attention.n_heads, 1, 1, 2).repeat(1, attention.n_levels, attention.n_points, 1)
    for point in range(attention.n_points):
        grid[:, :, point, :] *= point + 1
    with torch.no_grad():
        attention.sampling_offsets.bias.copy_(grid.view(-1))
    nn.init.zeros_(attention.attention_weights.weight)
    nn.init.zeros_(attention.attention_weights.bias)
    nn.init.xavier_uniform_(attention.value_proj.weight)
    nn.init.zeros_(attention.value_proj.bias)
    nn.init.xavier_uniform_(attention.output_proj.weight)
    nn.init.zeros_(attention.output_proj.bias)


def initialise(decoder: Mask2FormerPixelDecoder) -> None:
    """The release's ``MSDeformAttnPixelDecoder`` initialisation (``level_embed`` is otherwise uninitialised memory)."""
    for parameter in decoder.encoder.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
    for module in decoder.encoder.modules():
        if isinstance(module, Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
            reset_deformable_attention(module)
    nn.init.normal_(decoder.level_embed)
    for projection in decoder.input_projections:
        nn.init.xavier_uniform_(projection[0].weight, gain=1)
        nn.init.zeros_(projection[0].bias)
    c2_xavier_fill(decoder.mask_projection)
    for conv in [*decoder.lateral_convolutions, *decoder.output_convolutions]:
        c2_xavier_fill(conv[0])
