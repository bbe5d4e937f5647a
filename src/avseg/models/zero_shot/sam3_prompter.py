"""SAM 3 prompted with object names: its input pixels, and one mask-logit map per prompted class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAM3_IMAGE_SIZE = 1008
SAM3_MEAN = SAM3_STD = 0.5
EMPTY_LOGIT = -100.0


def sam3_pixel_values(frames: np.ndarray, size: int = SAM3_IMAGE_SIZE) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` frames -> float ``(T, 3, size, size)``, as ``Sam3ImageProcessor`` without torchvision.

    The official processor resizes the uint8 image to 1008x1008 (bilinear with antialiasing, aspect ratio
    not kept), so the result is rounded to whole grey levels, then rescales by 1/255 and normalises with
    mean = std = 0.5. Here the resize runs in float and is rounded the same way; torchvision's fixed-point
    uint8 kernel can differ by one grey level.
    """
    return resized_pixel_values(frames, size, (SAM3_MEAN,) * 3, (SAM3_STD,) * 3)


def resized_pixel_values(frames: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(T, 3, size, size)``: the square resize of :func:`sam3_pixel_values`
    (bilinear, antialiased, rounded to whole grey levels), rescaled by 1/255 and normalised per channel."""
    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    images = images.round().clamp(0, 255)
    return (images / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class Sam3Prompter(nn.Module):
    """SAM 3 prompted with the vocabulary's object names (tokenised once, here), several classes per frame."""

    def __init__(self, model: nn.Module, tokenizer: Any, prompts: Sequence[str], query_threshold: float):
        super().__init__()
        self.model = model.eval()
        self.tokenizer, self.query_threshold = tokenizer, query_threshold
        length = model.config.text_config.max_position_embeddings  # SAM 3's processor pads every prompt to it
        tokens = tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)

    def with_prompts(self, prompts: Sequence[str]) -> Sam3Prompter:
        """The same SAM 3 prompted with ``prompts`` instead."""
        return Sam3Prompter(self.model, self.tokenizer, prompts, self.query_threshold)

    @torch.no_grad()
    def vision_features(self, frames: np.ndarray) -> Any:
        """uint8 ``(T, H, W, 3)`` frames -> SAM 3's vision features of all of them, in one pass of its image encoder."""
        device = self.input_ids.device
        pixels = sam3_pixel_values(frames, self.model.config.image_size).to(device, self.model.dtype)
        return self.model.get_vision_features(pixel_values=pixels)

    @torch.no_grad()
    def class_logits(self, vision: Any, row: int, classes: Sequence[int]) -> torch.Tensor:
        """Frame ``row`` of :meth:`vision_features` -> ``(len(classes), h, w)`` mask logits at SAM 3's mask
        resolution. The frame's features are shared by its prompts (views, not copies); the decoder runs per
        frame because each frame has its own prompts."""
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        shared = Sam3VisionEncoderOutput(
            fpn_hidden_states=tuple(h[row : row + 1].expand(len(classes), -1, -1, -1) for h in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(p[row : row + 1].expand(len(classes), -1, -1, -1) for p in vision.fpn_position_encoding),
        )
        index = torch.as_tensor(list(classes), device=self.input_ids.device)
        outputs = self.model(vision_embeds=shared, input_ids=self.input_ids[index], attention_mask=self.attention_mask[index])
        scores = outputs.pred_logits.sigmoid() * outputs.presence_logits.sigmoid()
        rejected = (scores <= self.query_threshold)[..., None, None]
        return outputs.pred_masks.masked_fill(rejected, EMPTY_LOGIT).amax(1)


def tiny_sam3_config(image_size: int = 112) -> Any:
    """A ``Sam3Config`` of the real classes at toy width: a 2-layer ViT on ``image_size`` (a multiple of 56)."""
    from transformers import Sam3Config

    grid = image_size // 14
    layer = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    backbone = {
        "model_type": "sam3_vit_model", **layer, "num_hidden_layers": 2, "image_size": image_size, "patch_size": 14,
        "window_size": grid // 2, "global_attn_indexes": [1], "pretrain_image_size": image_size // 2,
    }  # fmt: skip
    text = {"vocab_size": 256, "projection_dim": 32, "num_hidden_layers": 1, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    return Sam3Config(
        vision_config={"backbone_config": backbone, "fpn_hidden_size": 32, "backbone_feature_sizes": [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2]},
        text_config={**layer, **text},
        geometry_encoder_config={**layer, "num_layers": 1},
        detr_encoder_config={**layer, "num_layers": 1},
        detr_decoder_config={**layer, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
