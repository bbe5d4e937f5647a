"""PMQS: prompting mask queries with semantics (TeSO, ECCV 2024).

Mask2Former's learned mask-query features attend to the prompt tokens before
they enter the masked-attention decoder: ``layers`` blocks of cross-attention
(query = mask queries, key/value = prompts) and an FFN, with residuals, so
queries that find no prompt keep their pretrained content.

The prompt tokens are the SeDAM cue tokens the dynamic mask keeps, the frame's
own audio token and a learned null token that is always there. The null token
keeps the attention defined when the dynamic mask keeps no cue: the queries
then see only the audio and "nothing sounds". The audio token lets the decoder use the sound
directly too, which also makes the cue-less ablation (no cues at all) a
model that still hears.
"""

from __future__ import annotations

import torch
from torch import nn


class PMQSLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, prompts: torch.Tensor, prompt_padding: torch.Tensor) -> torch.Tensor:
        attended = self.cross(queries, prompts, prompts, key_padding_mask=prompt_padding, need_weights=False)[0]
        queries = self.cross_norm(queries + attended)
        return self.ffn_norm(queries + self.ffn(queries))


class PMQS(nn.Module):
    def __init__(self, dim: int, layers: int = 2, heads: int = 8):
        super().__init__()
        self.null_prompt = nn.Parameter(torch.zeros(1, 1, dim))
        self.layers = nn.ModuleList(PMQSLayer(dim, heads) for _ in range(layers))

    def forward(
        self,
        queries: torch.Tensor,
        cue_tokens: torch.Tensor,
        cue_keep: torch.Tensor,
        audio_token: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            queries: ``(N, Q, dim)`` mask-query features.
            cue_tokens: ``(N, K, dim)`` with ``cue_keep`` bool ``(N, K)``.
            audio_token: ``(N, dim)``, always kept.

        Returns:
            ``(N, Q, dim)`` prompted query features.
        """
        num_frames = queries.shape[0]
        prompts = torch.cat([cue_tokens, audio_token[:, None], self.null_prompt.expand(num_frames, 1, -1)], dim=1)
        keep = torch.cat([cue_keep, torch.ones_like(cue_keep[:, :2])], dim=1)
        for layer in self.layers:
            queries = layer(queries, prompts, ~keep)
        return queries
