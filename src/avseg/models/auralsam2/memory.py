"""SAM 2's video memory over one clip, as the release tracks without prompts (``forward_tracking_wo_prompt``).

The conditioning frame (the first at inference, the middle one in the release's training) is decoded
first from its own features plus ``no_memory_embedding``; then every other frame, in order, from its
features conditioned by memory attention on:

- the spatial memory of the conditioning frame (temporal slot 0) and of the six most recent earlier
  frames already decoded (slots by distance, SAM 2's ``maskmem_tpos_enc``);
- the object pointers of the conditioning frame when it lies in the past, and of up to
  ``min(frames, 16) - 1`` earlier frames, each split into 64-d tokens, with no temporal encoding.

That is ``SAM2Base._prepare_memory_conditioned_features`` in evaluation mode (the release keeps its SAM 2
in evaluation mode during training too: ``freeze_sam_parameters``), with SAM 2.0 Hiera-L's settings
(``only_obj_ptrs_in_the_past_for_eval``, no temporal encoding of pointers).

A frame's memory is encoded from its best-IoU mask **binarised** (the release passes a non-None dummy
as point inputs, ``666.``, with ``binarize_mask_from_pts_for_mem_enc=true``, and SAM 2 is in evaluation
mode), scaled to +-10, and its raw lowest-level features. transformers' ``_encode_new_memory`` is not
used: it stores the memory in bfloat16, which the release's training model does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MEMORY_SCALE, MEMORY_BIAS = 20.0, -10.0
"""SAM 2's ``sigmoid_scale_for_mem_enc`` / ``sigmoid_bias_for_mem_enc`` (sam2_hiera_l.yaml)."""


@dataclass
class FrameMemory:
    features: Tensor
    """``(1, mem_dim, h, w)`` encoded memory."""
    positions: Tensor
    """``(1, mem_dim, h, w)`` its spatial positional encoding."""
    pointer: Tensor
    """``(1, hidden)`` object pointer."""


class ClipMemory:
    """The memory bank of one clip being tracked by a ``Sam2VideoModel`` (its memory modules only)."""

    def __init__(self, sam, num_frames: int, conditioning_frame: int):
        self.sam = sam
        self.num_frames = num_frames
        self.conditioning_frame = conditioning_frame
        self.frames: dict[int, FrameMemory] = {}

    def condition(self, frame: int, features: Tensor, positions: Tensor) -> Tensor:
        """The frame's lowest-level features ``(HW, 1, C)`` conditioned on the memory -> ``(1, C, h, w)``."""
        sam = self.sam
        height, width = sam.backbone_feature_sizes[-1]
        channels = features.shape[-1]
        if frame == self.conditioning_frame:
            return (features + sam.no_memory_embedding).permute(1, 2, 0).reshape(1, channels, height, width)
        memories, memory_positions = [], []
        slots = [(0, self.frames[self.conditioning_frame])]
        for distance in range(sam.num_maskmem - 1, 0, -1):
            earlier = self.frames.get(frame - distance)
            if earlier is not None and frame - distance != self.conditioning_frame:
                slots.append((distance, earlier))
        for distance, memory in slots:
            memories.append(memory.features.flatten(2).permute(2, 0, 1))
            memory_positions.append(memory.positions.flatten(2).permute(2, 0, 1) + sam.memory_temporal_positional_encoding[distance - 1])
        pointers = self._pointers(frame)
        pointer_tokens = 0
        if pointers:
            tokens, token_positions = self._pointer_tokens(pointers, channels)
            memories.append(tokens)
            memory_positions.append(token_positions)
            pointer_tokens = len(tokens)
        conditioned = sam.memory_attention(
            current_vision_features=features,
            current_vision_position_embeddings=positions,
            memory=torch.cat(memories),
            memory_posision_embeddings=torch.cat(memory_positions),  # transformers' spelling
            num_object_pointer_tokens=pointer_tokens,
        )
        return conditioned[0].transpose(1, 2).reshape(1, channels, height, width)

    def _pointers(self, frame: int) -> list[Tensor]:
        pointers = []
        if self.conditioning_frame <= frame:  # only pointers from the past (evaluation mode)
            pointers.append(self.frames[self.conditioning_frame].pointer)
        for distance in range(1, min(self.num_frames, self.sam.config.max_object_pointers_in_encoder)):
            earlier = frame - distance
            if earlier < 0:
                break
            if earlier in self.frames and earlier != self.conditioning_frame:
                pointers.append(self.frames[earlier].pointer)
        return pointers

    def _pointer_tokens(self, pointers: list[Tensor], channels: int) -> tuple[Tensor, Tensor]:
        """Pointers ``(P, 1, C)`` split into ``C / mem_dim`` tokens each, with zero positions (no temporal encoding)."""
        memory_dim = self.sam.mem_dim
        stacked = torch.stack(pointers)  # (P, 1, C)
        tokens = stacked.reshape(len(pointers), 1, channels // memory_dim, memory_dim).permute(0, 2, 1, 3).flatten(0, 1)
        return tokens, tokens.new_zeros(tokens.shape)

    def remember(self, frame: int, features: Tensor, best_mask: Tensor, object_score: Tensor, pointer: Tensor) -> None:
        """Encode the frame's memory from its raw lowest-level features ``(HW, 1, C)`` and its best mask logits
        ``(1, 1, S, S)`` at the input size (SAM 2.1's occlusion embedding added when the object score says absent)."""
        height, width = self.sam.backbone_feature_sizes[-1]
        pixels = features.permute(1, 2, 0).reshape(1, -1, height, width)
        mask = (best_mask > 0).to(pixels.dtype) * MEMORY_SCALE + MEMORY_BIAS
        encoded, positions = self.sam.memory_encoder(pixels, mask)
        occlusion = self.sam.occlusion_spatial_embedding_parameter
        if occlusion is not None:
            absent = (object_score <= 0).to(encoded.dtype)
            encoded = encoded + absent[..., None, None] * occlusion[..., None, None]
        self.frames[frame] = FrameMemory(encoded, positions, pointer)
