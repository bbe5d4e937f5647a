"""Semantic-SAM as the automatic mask generator runs it: Swin -> MaskDINO encoder -> interactive decoder on clicks.

The release's ``GeneralizedMaskDINO.evaluate_demo`` (``architectures/interactive_mask_dino.py``), per image::

    pixels   = pad((frame - mean) / std) to a multiple of 32 (bottom and right, zeros)      (detectron2's ImageList)
    pyramid  = Swin(pixels)                          res2..res5, the four stage outputs, each LayerNorm'd
    features = MaskDinoEncoder(pyramid)              computed once per image            (encoder.py)
    masks, iou = InteractiveDecoder(features, click boxes (x, y, 0.005, 0.005) scaled from the image to the padded
                                     input, the size too, as the release scales them)              (decoder.py)
    masks    = bilinear(masks, padded size)[:H, :W]  (the release's ``sem_seg_postprocess``, then no resize)

The Swin is transformers' ``SwinBackbone`` as VCT's port runs it (:func:`avseg.models.vct.siamese_encoder.swin_backbone`:
the release's backbone is the same detectron2 ``D2SwinTransformer``, ``norm0..3`` on the stage outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers.initialization import no_init_weights

from avseg.errors import AvsegError
from avseg.models.av2t_sam.model import (
    load_strict,
    read_model_folder,
    save_model_folder,
)
from avseg.models.semantic_sam.config import PIXEL_MEAN, PIXEL_STD, SemanticSamConfig
from avseg.models.semantic_sam.decoder import InteractiveDecoder
from avseg.models.semantic_sam.encoder import MaskDinoEncoder
from avseg.models.vct.siamese_encoder import swin_backbone

CLICK_SIZE = 0.005
"""The width and height of a click's box, relative to the image (the generator's ``points.new_tensor([[0.005, 0.005]])``)."""


@dataclass
class ImageFeatures:
    """One image's encoder outputs, reused by every batch of clicks."""

    mask_features: Tensor
    levels: list[Tensor]
    image_size: tuple[int, int]
    padded_size: tuple[int, int]


class SemanticSam(nn.Module):
    name = "semantic-sam"

    def __init__(self, config: SemanticSamConfig | None = None):
        super().__init__()
        self.config = config = config or SemanticSamConfig()
        if config.width % 32 or config.width % config.heads:
            raise AvsegError(f"semantic-sam: width {config.width} must be a multiple of 32 (GroupNorm) and of heads ({config.heads})")
        self.backbone = swin_backbone(config.swin)
        self.encoder = MaskDinoEncoder(list(self.backbone.channels), config.width, config.encoder_layers, config.heads, config.points, config.feedforward)
        self.decoder = InteractiveDecoder(config.width, config.decoder_layers, config.heads, config.points, config.feedforward, config.mask_tokens)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN)[:, None, None], persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD)[:, None, None], persistent=False)

    def image_features(self, frame: Tensor) -> ImageFeatures:
        """A ``(3, H, W)`` RGB frame on the 0-255 scale (any dtype) -> its :class:`ImageFeatures`."""
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise AvsegError(f"semantic-sam: a frame is (3, H, W) RGB, got shape {tuple(frame.shape)}")
        height, width = frame.shape[-2:]
        divisor = self.config.size_divisibility
        padded = (-(-height // divisor) * divisor, -(-width // divisor) * divisor)
        pixels = (frame.to(self.pixel_mean) - self.pixel_mean) / self.pixel_std
        pixels = F.pad(pixels, (0, padded[1] - width, 0, padded[0] - height))[None]
        pyramid = self.backbone(pixels).feature_maps
        mask_features, levels = self.encoder(list(pyramid))
        return ImageFeatures(mask_features, levels, (height, width), padded)

    def predict(self, features: ImageFeatures, clicks: Tensor, granularity: list[int]) -> tuple[Tensor, Tensor]:
        """``clicks`` ``(P, 2)``: x, y in [0, 1] of the image -> mask logits ``(P * G, H, W)`` at the image's size (click
        major, then granularity) and IoU scores ``(P, G)``."""
        (height, width), (padded_height, padded_width) = features.image_size, features.padded_size
        size, padded = clicks.new_tensor([width, height] * 2), clicks.new_tensor([padded_width, padded_height] * 2)
        boxes = torch.cat([clicks, clicks.new_full((len(clicks), 2), CLICK_SIZE)], -1) * size / padded  # in the release's float32 order
        masks, iou_scores = self.decoder(features.levels, features.mask_features, boxes[None], granularity)
        masks = F.interpolate(masks[0].flatten(0, 1)[None], size=features.padded_size, mode="bilinear", align_corners=False)[0]
        return masks[:, :height, :width], iou_scores[0]

    def save_pretrained(self, folder: str | Path) -> None:
        save_model_folder(self, self.config.to_dict(), folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> SemanticSam:
        return cls.from_state(*read_model_folder(folder, SemanticSamConfig))

    @classmethod
    def from_state(cls, config: SemanticSamConfig, state: dict[str, Tensor], source: str) -> SemanticSam:
        """A model of ``config`` holding exactly ``state`` (every key, of the right shape, or one line naming what differs)."""
        with no_init_weights():
            model = cls(config)
        load_strict(model, state, source)
        return model
