"""EVF-SAM's early vision-language fusion: BEiT-3 over (frame, text) -> one SAM prompt token."""

from __future__ import annotations

import torch
from torch import nn

from avseg.models.av2t_sam.beit3 import BEiT3, BEiT3Config


class EVFPrompt(nn.Module):
    """BEiT-3 reads the frame (224x224, mean = std = 0.5) and the text tokens together; its
    vision-CLS output, through ``Linear(d, d), ReLU, Linear(d, prompt_dim)``, is SAM's sparse prompt.

    AV2T-SAM passes *pseudo* text tokens (the projector's output) in place of BEiT-3's word
    embeddings; the text positional embeddings are still added (BEiT-3's ``text_embeds`` path).
    BEiT-3 is frozen; the projection head is trained.
    """

    def __init__(self, beit3: BEiT3Config, prompt_dim: int = 256):
        super().__init__()
        self.beit3 = BEiT3(beit3)
        width = beit3.dim
        self.to_prompt = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, prompt_dim))

    def forward(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 224, 224)`` frames and ``(N, L, d)`` text tokens -> ``(N, 1, prompt_dim)`` prompts."""
        hidden = self.beit3(pixel_values, text_embeds=text_embeds)
        return self.to_prompt(hidden[:, :1])
