"""The text-prompted SAMs under AV2T-SAM: SAM 2 (EVF-SAM2) and SAM (EVF-SAM), from transformers.

Each is driven the way EVF-SAM drives it: no points, boxes or mask input; one sparse prompt
token per frame (EVF's projection of BEiT-3's vision CLS); the dense prompt is
``no_mask_embed``; the mask decoder runs in multimask mode. The trained parts are the
mask decoder and ``no_mask_embed``; everything else stays frozen.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Sam2Model, SamModel


class OneTokenPrompt:
    """What EVF-style prompting shares across SAM versions (mixed into a transformers SAM model)."""

    @property
    def prompt_dim(self) -> int:
        return self.config.mask_decoder_config.hidden_size

    def trainable(self) -> list[nn.Parameter]:
        return [*self.mask_decoder.parameters(), self.prompt_encoder.no_mask_embed.weight]

    def decode(self, image_embedding: torch.Tensor, prompt: torch.Tensor, **features) -> tuple[torch.Tensor, torch.Tensor]:
        """Multimask logits ``(N, 3, h, w)`` and predicted IoUs ``(N, 3)`` for one sparse prompt token per frame,
        with ``no_mask_embed`` as the dense prompt."""
        batch = image_embedding.shape[0]
        dense = self.prompt_encoder.no_mask_embed.weight.view(1, -1, 1, 1).expand(batch, -1, *image_embedding.shape[-2:])
        masks, iou, *_ = self.mask_decoder(
            image_embeddings=image_embedding,
            image_positional_embeddings=self.get_image_wide_positional_embeddings().expand(batch, -1, -1, -1),
            sparse_prompt_embeddings=prompt.unsqueeze(1),
            dense_prompt_embeddings=dense,
            multimask_output=True,
            **features,
        )
        return masks[:, 0], iou[:, 0]


def predict_iou_in_fp32(head: nn.Module) -> None:
    """Run SAM's IoU-prediction head in fp32 whatever autocast says (its input is cast up; it is a small MLP).

    AV2T-SAM keeps the candidate mask with the highest predicted IoU. Under bf16 autocast the head's
    sigmoid scores would fall on bf16's grid (steps of 1/256 between 0.5 and 1), so candidates closer
    than a step tie and ``argmax`` takes the first: a different mask from fp32's. Measured on the tiny
    AV2T-SAM trained 60 epochs on synthetic MS3 (``benchmarks/precision_agreement.py``), whose head scores
    its candidates 0.5000 / 0.5000 / 0.5002: bf16 chose another mask on all 80 test frames.
    """
    forward = head.forward

    def forward_in_fp32(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return forward(hidden.float())

    head.forward = forward_in_fp32


class PromptedSam2(OneTokenPrompt, Sam2Model):
    """SAM 2 (transformers :class:`Sam2Model`, unchanged) prompted by one token per frame, with :meth:`segment`.

    As SAM 2 does for a single image, ``no_memory_embedding`` is added to the lowest-resolution
    feature map, and the two higher-resolution levels (after the decoder's ``conv_s0`` /
    ``conv_s1``) feed the decoder's upscaling.
    """

    @property
    def image_size(self) -> int:
        return self.config.vision_config.backbone_config.image_size[0]

    @property
    def blocks(self) -> nn.ModuleList:
        return self.vision_encoder.backbone.blocks

    @property
    def block_widths(self) -> list[int]:
        """Input width of every Hiera block: a stage's first block still takes the previous stage's width."""
        hiera = self.config.vision_config.backbone_config
        widths = [hiera.hidden_size]
        for stage, blocks in enumerate(hiera.blocks_per_stage):
            widths += [hiera.embed_dim_per_stage[stage]] * blocks
        return widths[: sum(hiera.blocks_per_stage)]

    def segment(self, pixel_values: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3, S, S)`` normalised frames and ``(N, 1, prompt_dim)`` prompts -> multimask
        low-resolution logits ``(N, 3, S/4, S/4)`` and predicted IoUs ``(N, 3)``."""
        batch = pixel_values.shape[0]
        levels = self.get_image_features(pixel_values).fpn_hidden_states
        levels[-1] = levels[-1] + self.no_memory_embedding
        levels = [level.permute(1, 2, 0).view(batch, -1, *size) for level, size in zip(levels, self.backbone_feature_sizes)]
        return self.decode(levels[-1], prompt, high_resolution_features=levels[:-1])

    def upsample(self, low_res: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Low-resolution logits ``(N, 1, h, w)`` -> ``(N, 1, *size)``, bilinear, as EVF-SAM2."""
        return F.interpolate(low_res, size, mode="bilinear", align_corners=False)


class PromptedSam(OneTokenPrompt, SamModel):
    """SAM ViT-H (transformers :class:`SamModel`, unchanged) prompted by one token per frame (EVF-SAM), with :meth:`segment`."""

    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size

    @property
    def blocks(self) -> nn.ModuleList:
        return self.vision_encoder.layers

    @property
    def block_widths(self) -> list[int]:
        vision = self.config.vision_config
        return [vision.hidden_size] * vision.num_hidden_layers

    def segment(self, pixel_values: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.vision_encoder(pixel_values).last_hidden_state, prompt)

    def upsample(self, low_res: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """As SAM's ``postprocess_masks`` for a square, unpadded input: bilinear to the input size, then to ``size``."""
        full = F.interpolate(low_res, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return F.interpolate(full, size, mode="bilinear", align_corners=False)
