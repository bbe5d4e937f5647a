"""The vision-centric transformer decoder: the queries fetch audio and visual information in turn.

The release's ``MultiScaleMaskedVCTDecoder``: Mask2Former's masked-attention decoder with a fourth memory, the audio
tokens, in front of its three visual levels. Layer ``i`` (9 of them) attends to memory ``i % 4``: audio (6 x 4 tokens,
no mask), res5, res4, res3 (each masked by the previous prediction, as Mask2Former: pixels whose sigmoid is below 0.5
are hidden, and a query that would see nothing sees everything). Each layer is transformers'
``Mask2FormerMaskedAttentionDecoderLayer`` (post-norm: masked cross-attention, self-attention, FFN 2048, 8 heads).

    queries   = query_feat + PPQG(mask features)                     (Q, B, C)
    predict   : decoder_norm -> class (num_classes + 1) and mask (MLP . mask features), before the first layer and
                after each, so 10 predictions (the last is the output, the others auxiliary)
    memories  = [audio tokens, res5, res4, res3], each ``input_proj`` the identity (widths equal, as released),
                + sine positions (normalised) on the queries' keys, + a learned level embedding

With prototypes, the prototype-audio embeddings for the loss: ``audio_proj(mean of the audio tokens)`` and
``proto_proj(prototypes)``, both L2-normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoderLayer,
    Mask2FormerMaskPredictor,
    Mask2FormerSinePositionEmbedding,
)

from avseg.models.vct.query_generation import QueryGeneration

MEMORIES = 4
"""Audio, res5, res4, res3."""


@dataclass
class DecoderOutput:
    class_logits: list[Tensor]
    """``(B, Q, num_classes + 1)`` per prediction, the first from the generated queries, the last the output."""
    mask_logits: list[Tensor]
    """``(B, Q, h, w)`` at the mask features' stride 4, per prediction."""
    audio_embedding: Tensor | None
    """``(B, C)`` L2-normalised, for the prototype-audio loss (None without prototypes)."""
    prototype_embedding: Tensor | None
    """``(B, K, C)`` L2-normalised."""


class VisionCentricDecoder(nn.Module):
    def __init__(
        self,
        width: int,
        num_classes: int,
        num_queries: int,
        num_pixels: int,
        num_prototypes: int,
        layers: int = 9,
        heads: int = 8,
        feedforward: int = 2048,
    ):
        super().__init__()
        config = Mask2FormerConfig(hidden_dim=width, num_attention_heads=heads, dim_feedforward=feedforward, dropout=0.0, pre_norm=False)
        self.heads = heads
        self.position = Mask2FormerSinePositionEmbedding(num_position_features=width // 2, normalize=True)
        self.layers = nn.ModuleList(Mask2FormerMaskedAttentionDecoderLayer(config) for _ in range(layers))
        for layer in self.layers:  # the release's SelfAttentionLayer / CrossAttentionLayer / FFNLayer initialisation
            for parameter in layer.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)
        self.decoder_norm = nn.LayerNorm(width)
        self.query_feat = nn.Embedding(num_queries, width)
        self.query_embed = nn.Embedding(num_queries, width)
        self.level_embed = nn.Embedding(MEMORIES, width)
        self.class_embed = nn.Linear(width, num_classes + 1)
        self.mask_predictor = Mask2FormerMaskPredictor(width, heads, width)
        self.query_generation = QueryGeneration(width, num_pixels, num_queries, num_prototypes)
        if num_prototypes:
            self.audio_proj = nn.Linear(width, width, bias=False)
            self.proto_proj = nn.Linear(width, width, bias=False)
            nn.init.normal_(self.audio_proj.weight, std=width**-0.5)
            nn.init.normal_(self.proto_proj.weight, std=width**-0.5)
            # The prototype-audio loss's learned temperature (CLIP's, from log(1/0.07)). The release keeps it in its
            # criterion (``criterion.logit_scale``), a submodule of the model, so it is trained and saved with the weights.
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def memory(self, level: int, feature: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, h, w)`` -> tokens and their positions, ``(h*w, B, C)`` each."""
        position = self.position(feature.shape, feature.device, feature.dtype).flatten(2).permute(2, 0, 1)
        tokens = (feature.flatten(2) + self.level_embed.weight[level][None, :, None]).permute(2, 0, 1)
        return tokens, position

    def predict(self, queries: Tensor, mask_features: Tensor, attention_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        normed = self.decoder_norm(queries)
        mask_logits, attention_mask = self.mask_predictor(normed, mask_features, attention_size)
        return self.class_embed(normed.transpose(0, 1)), mask_logits, attention_mask

    def forward(self, audio_tokens: Tensor, multi_scale: list[Tensor], mask_features: Tensor) -> DecoderOutput:
        """``(B, C, 6, 4)`` audio tokens, res5/res4/res3 ``(B, C, h_l, w_l)``, mask features ``(B, C, H/4, W/4)``."""
        batch = len(mask_features)
        levels = [audio_tokens, *multi_scale]
        memories = [self.memory(level, feature) for level, feature in enumerate(levels)]
        tokens, positions = [m[0] for m in memories], [m[1] for m in memories]
        sizes = [tuple(feature.shape[-2:]) for feature in levels]

        query_positions = self.query_embed.weight[:, None].repeat(1, batch, 1)
        generated, prototypes = self.query_generation(mask_features)
        queries = self.query_feat.weight[:, None].repeat(1, batch, 1) + generated

        class_logits, mask_logits, attention_mask = self.predict(queries, mask_features, sizes[0])
        all_classes, all_masks = [class_logits], [mask_logits]
        for index, layer in enumerate(self.layers):
            level = index % MEMORIES
            if level == 0:  # the audio tokens: no mask
                attention_mask = torch.zeros_like(attention_mask)
            else:
                attention_mask = attention_mask & (attention_mask.sum(-1) != attention_mask.shape[-1])[..., None]
            queries = layer(
                queries,
                level,
                None,
                positions,
                query_positions,
                tokens,
                encoder_attention_mask=attention_mask,
            )[0]
            class_logits, mask_logits, attention_mask = self.predict(queries, mask_features, sizes[(index + 1) % MEMORIES])
            all_classes.append(class_logits)
            all_masks.append(mask_logits)

        audio_embedding = prototype_embedding = None
        if prototypes is not None:
            audio = self.audio_proj(audio_tokens.mean(2).mean(2))
            proto = self.proto_proj(prototypes.transpose(0, 1))
            audio_embedding = audio / audio.norm(dim=-1, keepdim=True)
            prototype_embedding = proto / proto.norm(dim=-1, keepdim=True)
        return DecoderOutput(all_classes, all_masks, audio_embedding, prototype_embedding)
