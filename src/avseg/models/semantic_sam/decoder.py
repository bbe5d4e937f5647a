"""Semantic-SAM's interactive decoder, the inference path of point prompts (the release's
``body/decoder/interactive_mask_dino.py``, ``IMaskDINODecoder`` with ``task='demo'``, and
``decoder/utils/dino_decoder.py``).

Per click at ``(x, y)`` (normalised to the padded input), ``K`` queries (``K`` = 6 granularity levels)::

    content_k   = label_enc[0] + pb_embedding[0] + mask_tokens[k]       (a point prompt: label 0, "point" 0)
    box         = the click's box (x, y, w, h), the reference box of all K queries
    9 x { position = MLP(sine(box));  query = DeformableDetrDecoderLayer(query, position, box);
          box = sigmoid(box_head(query) + logit(box)) }                 (DINO's iterative box refinement)
    query       = decoder_norm(decoder_norm(query))                     (see below)
    mask_k      = MLP(query_k) . mask features                          (N, clicks, K, H/4, W/4)
    iou_k       = MLP(query_k)                                          (N, clicks, K)

Only what the automatic generator reads is computed: the last layer's masks and IoU scores (the release predicts them
after every layer, and boxes, for its training losses), and only for the requested levels (each query's mask is its
own product with the mask features, so selecting first changes nothing).

Kept as the release does it, deliberately:

* **Clicks see each other.** The demo path builds no self-attention mask (``prepare_for_dn_mo_infer`` sets
  ``attn_mask = None``), so every query attends to the queries of every other click of the same batch, and a click's
  masks depend on which clicks share its batch (the release's training masks clicks from each other). The mask images
  VCT was trained on were made that way, in the generator's batches of 200 clicks, so the port keeps it.
* **The last output is normalised twice.** The decoder's ``norm`` and ``decoder_norm`` are one LayerNorm; the decoder
  returns ``norm(query)`` and the prediction heads apply ``decoder_norm`` again. The weights were trained so.

The layers are transformers' ``DeformableDetrDecoderLayer``: self-attention with the position added to queries and
keys (the release's ``nn.MultiheadAttention`` with ``q = k = tgt + pos``), deformable cross-attention on the
reference boxes (``offsets / points * wh * 0.5``), feed-forward, each post-norm, as ``DeformableTransformerDecoderLayer``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrDecoderLayer,
    DeformableDetrMLPPredictionHead,
    inverse_sigmoid,
)

from avseg.models.semantic_sam.encoder import LEVELS, deformable_config
from avseg.models.vct.pixel_decoder import reset_deformable_attention


def box_sine_embedding(boxes: Tensor, width: int) -> Tensor:
    """DINO's ``gen_sineembed_for_position`` for ``(..., 4)`` boxes: sine features of y, x, w, h (``width // 2`` each,
    in that order) -> ``(..., 2 * width)``."""
    half = width // 2
    frequencies = 10000 ** (2 * (torch.arange(half, dtype=torch.float32, device=boxes.device) // 2) / half)
    features = []
    for coordinate in (1, 0, 2, 3):
        angles = boxes[..., coordinate, None] * (2 * math.pi) / frequencies
        features.append(torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), -1).flatten(-2))
    return torch.cat(features, -1)


class InteractiveDecoder(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, points: int, feedforward: int, mask_tokens: int):
        super().__init__()
        self.width = width
        config = deformable_config(width, heads, points, feedforward)
        self.layers = nn.ModuleList(DeformableDetrDecoderLayer(config) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.position_head = DeformableDetrMLPPredictionHead(2 * width, width, width, 2)
        self.box_head = DeformableDetrMLPPredictionHead(width, width, 4, 3)
        self.mask_embed = DeformableDetrMLPPredictionHead(width, width, width, 3)
        self.iou_head = DeformableDetrMLPPredictionHead(width, width, 1, 3)
        self.mask_tokens = nn.Embedding(mask_tokens, width)
        self.prompt_kind = nn.Embedding(2, width)
        """The release's ``pb_embedding``: 0 a point, 1 a box."""
        self.label = nn.Embedding(2, width)
        """The release's ``label_enc``; prompts are always label 0."""
        self.initialise()

    def initialise(self) -> None:
        """The release's initialisation (``TransformerDecoder._reset_parameters``; the box head's last layer at 0)."""
        for parameter in [*self.layers.parameters(), *self.position_head.parameters()]:
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for layer in self.layers:
            reset_deformable_attention(layer.encoder_attn)
        nn.init.zeros_(self.box_head.layers[-1].weight)
        nn.init.zeros_(self.box_head.layers[-1].bias)

    @property
    def num_mask_tokens(self) -> int:
        return self.mask_tokens.num_embeddings

    def forward(self, levels: list[Tensor], mask_features: Tensor, clicks: Tensor, granularity: list[int]) -> tuple[Tensor, Tensor]:
        """``levels``: the encoder's four levels (res3, res4, res5, extra); ``clicks``: ``(N, P, 4)`` boxes x, y, w, h
        in [0, 1] of the padded input; ``granularity``: which of the mask tokens to predict (the generator's ``level``
        after its ``prompt_switch``) -> mask logits ``(N, P, G, H/4, W/4)`` and IoU scores ``(N, P, G)``."""
        batch, clicks_per_image = clicks.shape[:2]
        tokens = self.num_mask_tokens
        memory_levels = levels[::-1]  # the decoder reads the lowest resolution first
        shapes = [tuple(level.shape[-2:]) for level in memory_levels]
        memory = torch.cat([level.flatten(2).transpose(1, 2) for level in memory_levels], 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=memory.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))

        prompt = self.label.weight[0] + self.prompt_kind.weight[0]
        queries = (prompt + self.mask_tokens.weight).repeat(batch, clicks_per_image, 1)
        boxes = inverse_sigmoid(clicks).repeat_interleave(tokens, 1).sigmoid()
        for layer in self.layers:
            position = self.position_head(box_sine_embedding(boxes, self.width))
            queries = layer(
                queries,
                object_queries_position_embeddings=position,
                reference_points=boxes[:, :, None].expand(-1, -1, LEVELS, -1),
                spatial_shapes=spatial_shapes,
                spatial_shapes_list=shapes,
                level_start_index=level_start_index,
                encoder_hidden_states=memory,
            )
            boxes = (self.box_head(queries) + inverse_sigmoid(boxes)).sigmoid()
        queries = self.norm(self.norm(queries)).view(batch, clicks_per_image, tokens, -1)
        iou_scores = self.iou_head(queries).squeeze(-1)
        selected = torch.as_tensor(granularity, dtype=torch.long, device=queries.device)
        masks = torch.einsum("npgc,nchw->npghw", self.mask_embed(queries[:, :, selected]), mask_features)
        return masks, iou_scores[:, :, selected]
