"""AV2T-SAM's projector: audio (and the frame's look) into a text-prompted SAM's word-embedding space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MODES = ("mul", "clap", "clip")


class AudioVisualProjector(nn.Module):
    """``f = A(l2(f_CLAP)) ⊙ V(l2(f_CLIP))``, then an MLP to ``num_tokens`` pseudo word embeddings.

    Modes (the paper's ablation):

    - ``mul``: the paper's feature, the audio projection gated by the frame's CLIP projection;
    - ``clap``: audio only, ``A(f_CLAP)``;
    - ``clip``: vision only, ``V(f_CLIP)`` (no audio at all; the "vision bias in S4" baseline).

    Only ``mul`` L2-normalises its inputs. The paper gives the formula for ``mul`` alone; the release
    projects the raw embeddings in the two ablation modes, and its ``clap``/``clip`` checkpoints were
    trained that way, so avseg does the same to reproduce them.

    Only the projections a mode uses are built, so every parameter is trained. Weights start as
    the release does: Kaiming-normal matrices, zero biases.
    """

    def __init__(self, mode: str = "mul", audio_dim: int = 1024, vision_dim: int = 512, common_dim: int = 512, num_tokens: int = 3, token_dim: int = 1024):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"projector mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.num_tokens, self.token_dim = num_tokens, token_dim
        self.audio_proj = nn.Linear(audio_dim, common_dim) if mode in ("mul", "clap") else None
        self.vision_proj = nn.Linear(vision_dim, common_dim) if mode in ("mul", "clip") else None
        self.to_tokens = nn.Sequential(nn.Linear(common_dim, common_dim), nn.ReLU(), nn.Linear(common_dim, num_tokens * token_dim))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def fuse(self, audio: torch.Tensor | None, vision: torch.Tensor | None) -> torch.Tensor:
        """The fused ``(N, common_dim)`` feature of CLAP ``(N, audio_dim)`` and CLIP ``(N, vision_dim)`` embeddings."""
        if self.mode == "clap":
            return self.audio_proj(audio)
        if self.mode == "clip":
            return self.vision_proj(vision)
        return self.audio_proj(F.normalize(audio, dim=-1)) * self.vision_proj(F.normalize(vision, dim=-1))

    def tokens(self, fused: torch.Tensor) -> torch.Tensor:
        """``(N, num_tokens, token_dim)`` pseudo text tokens from the fused feature."""
        return self.to_tokens(fused).view(fused.shape[0], self.num_tokens, self.token_dim)
