"""SeDAM: semantics-driven audio modelling (TeSO, ECCV 2024).

Text cues name the objects that *could* sound in a frame; SeDAM lets the
audio choose among them. Queries are the cue tokens, keys and values the
audio tokens (cross-attention, then self-attention among cues, then an FFN,
repeated ``layers`` times).

Design decisions the paper leaves open:

* **Audio tokens.** Frame ``t`` attends to the audio embeddings of seconds
  ``t - w .. t + w`` (``audio_window = w``), each with a learned relative
  position, plus a learned *null* token. With a single audio token the
  softmax over keys is identically 1 and the attention ignores its query,
  the degenerate attention of the official release; the window and the
  null token ("this cue hears nothing") make the attention informative.
* **Dynamic mask.** A cue slot is kept only if (1) it holds a real cue (not
  padding or an empty string) and (2) a learned gate, the affinity between the
  attended cue and the frame's own audio, says the audio supports it. During
  training the gate is soft (it scales the cue tokens, so it receives
  gradients); at inference cues with gate < 0.5 are masked. The paper's
  "silent audio masks every cue" is not a level rule inside the network here:
  it is the silence gate (:mod:`avseg.silence`), applied to the output, so it
  can be switched off and the network's own answer to silence measured (the
  network learns it from the muted training clips).
* **Gate supervision.** Without per-cue labels, the gate is weakly supervised
  from the masks: on a frame whose ground truth is empty, every gate should be
  closed; on a frame with a sounding object, the most open gate should be open
  (a multiple-instance BCE). See :func:`gate_loss`.
* **InfoNCE.** :func:`info_nce` is a supervised contrastive loss on the
  projected audio embedding of each frame: positives are the other frames of
  the batch that share a sounding category, the rest of the batch are
  negatives, anchors without a positive are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SeDAMOutput:
    tokens: torch.Tensor
    """``(N, K, dim)`` cue tokens after attending to the audio, scaled by their gates."""
    keep: torch.Tensor
    """bool ``(N, K)``: the dynamic mask, True for cues that prompt the decoder."""
    gates: torch.Tensor
    """``(N, K)`` in [0, 1]: the learned audio support of each cue."""
    audio_embedding: torch.Tensor
    """``(N, dim)``: the frame's own projected audio token (for InfoNCE and the adapters)."""


class SeDAMLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, cues: torch.Tensor, cue_padding: torch.Tensor, audio: torch.Tensor, audio_padding: torch.Tensor) -> torch.Tensor:
        cues = self.cross_norm(cues + self.cross(cues, audio, audio, key_padding_mask=audio_padding, need_weights=False)[0])
        # A frame may have no cue at all; let its padded slots attend to themselves rather than to nothing.
        self_padding = cue_padding & ~cue_padding.all(1, keepdim=True)
        cues = self.self_norm(cues + self.self_attn(cues, cues, cues, key_padding_mask=self_padding, need_weights=False)[0])
        return self.ffn_norm(cues + self.ffn(cues))


class SeDAM(nn.Module):
    def __init__(
        self,
        text_dim: int,
        audio_dim: int,
        dim: int,
        layers: int = 2,
        heads: int = 8,
        audio_window: int = 1,
    ):
        super().__init__()
        self.audio_window = audio_window
        self.cue_proj = nn.Linear(text_dim, dim)
        self.audio_proj = nn.Linear(audio_dim, dim)
        self.relative_position = nn.Embedding(2 * audio_window + 1, dim)
        self.null_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.layers = nn.ModuleList(SeDAMLayer(dim, heads) for _ in range(layers))
        self.gate_cue = nn.Linear(dim, dim)
        self.gate_audio = nn.Linear(dim, dim)
        self.gate_bias = nn.Parameter(torch.zeros(()))
        self.scale = dim**-0.5

    def forward(
        self,
        cues: torch.Tensor,
        cue_valid: torch.Tensor,
        audio: torch.Tensor,
        audio_valid: torch.Tensor,
    ) -> SeDAMOutput:
        """
        Args:
            cues: ``(N, K, text_dim)`` cue embeddings; ``cue_valid`` bool ``(N, K)``.
            audio: ``(N, 2w+1, audio_dim)`` embeddings of seconds ``t-w..t+w``;
                ``audio_valid`` bool ``(N, 2w+1)`` (False past the clip's ends).
        """
        num_frames, window = audio.shape[:2]
        audio_tokens = self.audio_proj(audio) + self.relative_position.weight[None, :window]
        null = self.null_token.expand(num_frames, 1, -1)
        keys = torch.cat([audio_tokens, null], dim=1)
        key_padding = torch.cat([~audio_valid, torch.zeros_like(audio_valid[:, :1])], dim=1)

        tokens = self.cue_proj(cues)
        for layer in self.layers:
            tokens = layer(tokens, ~cue_valid, keys, key_padding)

        own_audio = audio_tokens[:, self.audio_window]
        affinity = (self.gate_cue(tokens) * self.gate_audio(own_audio)[:, None]).sum(-1) * self.scale
        gates = torch.sigmoid(affinity + self.gate_bias)
        keep = cue_valid
        if not self.training:
            keep = keep & (gates > 0.5)
        return SeDAMOutput(tokens * gates[..., None], keep, gates, own_audio)


def gate_loss(gates: torch.Tensor, cue_valid: torch.Tensor, has_object: torch.Tensor) -> torch.Tensor:
    """Multiple-instance BCE: all gates closed on empty frames, the strongest gate open otherwise.

    Frames without any cue carry no signal and are skipped.
    """
    usable = cue_valid.any(1)
    if not usable.any():
        return gates.sum() * 0.0
    strongest = gates.masked_fill(~cue_valid, 0.0).amax(1)
    return nn.functional.binary_cross_entropy(strongest[usable].clamp(1e-6, 1 - 1e-6), has_object[usable].float())


def info_nce(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised InfoNCE over a batch of frame audio embeddings.

    Args:
        embeddings: ``(N, D)``.
        labels: bool ``(N, L)`` multi-hot sounding categories; frames sharing
            one are positives of each other.
    """
    z = nn.functional.normalize(embeddings, dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positives = (labels.float() @ labels.float().T > 0) & ~self_mask
    anchors = positives.any(1)
    if not anchors.any():
        return embeddings.sum() * 0.0
    log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(1)
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1).clamp(min=1))
    return per_anchor[anchors].mean()
