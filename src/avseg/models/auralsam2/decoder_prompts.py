"""The AuralFuser's prompts inside SAM 2's mask decoder: no point, box or mask prompt, only feature residuals.

SAM 2's two-way transformer (transformers' ``Sam2VideoTwoWayTransformer``, unchanged weights) runs on the
six output tokens (object score, IoU, four mask tokens) and the frame's 64x64 image tokens. Before each
of its two layers, and before the final token -> image attention, one level of prompts is added, deepest
level first: the visual prompt to the image keys, the audio prompt to the four mask tokens
(the release's ``transformer.py``: ``keys + visual_res[i]``, ``queries[:, 2:6] + audio_res[i]``).

Decision, from the release's arithmetic: its first audio residual is added *in place* to the token tensor
that is also the tokens' positional embedding (``queries`` is ``point_embedding`` before the first layer),
so from then on the positional embedding of the mask tokens carries that first residual too. We add it
out of place to both, which gives the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.models.sam2_video.modeling_sam2_video import (
    Sam2VideoTwoWayTransformer,
)

MASK_TOKENS = slice(2, 6)
"""Where the four mask tokens sit among SAM 2's output tokens (after the object-score and IoU tokens)."""


def with_mask_token_residual(tokens: Tensor, residual: Tensor) -> Tensor:
    """``tokens (..., 6, C)`` with ``residual (..., C)`` added to the four mask tokens."""
    return torch.cat([tokens[..., : MASK_TOKENS.start, :], tokens[..., MASK_TOKENS, :] + residual[..., None, :], tokens[..., MASK_TOKENS.stop :, :]], dim=-2)


class PromptedTwoWayTransformer(Sam2VideoTwoWayTransformer):
    """SAM 2's two-way transformer taking the AuralFuser's residual prompts (see the module docstring).

    Called by transformers' ``Sam2VideoMaskDecoder`` with two extra keyword arguments:
    ``visual_prompts``, one ``(B, H*W, C)`` residual per layer plus one for the final attention, and
    ``audio_prompts``, one ``(B, C)`` residual each, both deepest level first. Without them it is
    transformers' transformer (no ``target_embedding``, which AuralSAM2 never uses).
    """

    def forward(
        self,
        point_embeddings: Tensor,
        image_embeddings: Tensor,
        image_positional_embeddings: Tensor,
        attention_similarity: Tensor | None = None,
        target_embedding=None,
        visual_prompts: list[Tensor] | None = None,
        audio_prompts: list[Tensor] | None = None,
        **kwargs,
    ) -> tuple[Tensor, Tensor]:
        if visual_prompts is None or audio_prompts is None:
            return super().forward(point_embeddings, image_embeddings, image_positional_embeddings, attention_similarity, target_embedding, **kwargs)
        if len(visual_prompts) != len(self.layers) + 1 or len(audio_prompts) != len(self.layers) + 1:
            raise ValueError(f"{len(self.layers) + 1} prompt levels expected (one per layer and one for the final attention)")
        keys = image_embeddings.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C): one point batch
        key_positions = image_positional_embeddings.flatten(2).transpose(1, 2).unsqueeze(1)
        visual = [prompt[:, None] for prompt in visual_prompts]
        audio = [prompt[:, None] for prompt in audio_prompts]
        query_positions = queries = with_mask_token_residual(point_embeddings, audio[0])
        for index, layer in enumerate(self.layers):
            if index > 0:
                queries = with_mask_token_residual(queries, audio[index])
            queries, keys, _ = layer(
                queries=queries,
                keys=keys + visual[index],
                query_point_embedding=query_positions,
                key_point_embedding=key_positions,
                attention_similarity=attention_similarity,
                **kwargs,
            )
        queries = with_mask_token_residual(queries, audio[-1])
        keys = keys + visual[-1]
        attn_out, _ = self.final_attn_token_to_image(query=queries + query_positions, key=keys + key_positions, value=keys)
        return self.layer_norm_final_attn(queries + attn_out), keys
