"""The frozen frame encoder of AV2T-SAM: CLIP ViT-B/32 image embeddings (f_CLIP).

AV2T-SAM gates its audio feature with the frame's OpenAI CLIP ViT-B/32 image embedding
(``openai/clip-vit-base-patch32``, ``get_image_features``, 512-d). CLIP's own preprocessing
is used: shortest side to 224 (bicubic), centre crop 224, CLIP mean/std. transformers'
PIL image processor does it without torchvision. The embedding is returned as CLIP gives it
(unnormalised); the projector L2-normalises.
"""

from __future__ import annotations

import numpy as np
import torch

from avseg.errors import ConfigError
from avseg.loading import load_pretrained, loading

DEFAULT_IMAGE_ENCODER = "openai/clip-vit-base-patch32"


class ClipImageEncoder:
    """Frames ``(T, H, W, 3)`` uint8 -> ``(T, dim)`` float32 CLIP image embeddings.

    Args:
        model: a transformers ``CLIPModel``.
        processor: its image processor.
        name: recorded for feature caches.
    """

    def __init__(self, model, processor, name: str | None = None, batch_size: int = 64):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name or model.config.name_or_path or type(model).__name__
        self.batch_size = batch_size
        self.dim = model.config.projection_dim

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_IMAGE_ENCODER, device: str | None = None) -> ClipImageEncoder:
        from transformers import CLIPModel
        from transformers.models.clip.image_processing_pil_clip import (
            CLIPImageProcessorPil,
        )

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with loading(name_or_path, "a CLIP image encoder", ConfigError):
            model = load_pretrained(CLIPModel, name_or_path, "a CLIP image encoder")
            processor = CLIPImageProcessorPil.from_pretrained(name_or_path)
        return cls(model.to(device), processor, str(name_or_path))

    @torch.inference_mode()
    def embed_frames(self, frames: np.ndarray) -> torch.Tensor:
        device = self.model.device
        rows = []
        for start in range(0, len(frames), self.batch_size):
            pixels = self.processor(images=list(frames[start : start + self.batch_size]), return_tensors="pt")["pixel_values"]
            rows.append(self.model.get_image_features(pixel_values=pixels.to(device)).pooler_output.float())
        return torch.cat(rows)
