"""Gumbel grouping (GroupViT's ``AssignAttention``, one head, as VCT uses it): every pixel is assigned to one query.

    logits  = q(queries) k(pixels)^T / sqrt(C)                 (B, Q, P)
    assign  = one-hot over the *queries* (dim -2) of each pixel: training: Gumbel-softmax, hard, straight-through
              (``logits + Gumbel(0, 1)`` noise, temperature 1); inference: the hard argmax, straight-through
    assign  = assign / (assign.sum(pixels) + 1)                (each query averages its pixels; eps 1)
    out     = proj(assign @ v(pixels))                         (B, Q, C)

At inference the straight-through ``hard - soft.detach() + soft`` is kept as written, not replaced by ``hard``: it
differs from the one-hot by float rounding, and the release's logits carry that rounding. The noise is drawn with
``torch.distributions.Gumbel(0, 1).sample``, as the release draws it, so equal seeds give equal training steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def straight_through_one_hot(soft: Tensor, dim: int) -> Tensor:
    index = soft.max(dim, keepdim=True)[1]
    hard = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return hard - soft.detach() + soft


class GumbelGrouping(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.scale = width**-0.5
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)

    def assignment(self, logits: Tensor) -> Tensor:
        if self.training:
            gumbel = torch.distributions.gumbel.Gumbel(torch.tensor(0.0, device=logits.device, dtype=logits.dtype), torch.tensor(1.0, device=logits.device, dtype=logits.dtype))
            logits = logits + gumbel.sample(logits.shape)
        return straight_through_one_hot(logits.softmax(-2), dim=-2)

    def forward(self, queries: Tensor, pixels: Tensor) -> Tensor:
        """``(B, Q, C)`` queries, ``(B, P, C)`` pixels -> ``(B, Q, C)`` the mean of each query's pixels, projected."""
        logits = self.q_proj(queries) @ self.k_proj(pixels).transpose(-2, -1) * self.scale
        assign = self.assignment(logits)
        assign = assign / (assign.sum(dim=-1, keepdim=True) + 1.0)
        return self.proj(assign @ self.v_proj(pixels))
