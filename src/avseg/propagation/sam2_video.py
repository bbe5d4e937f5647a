"""Streaming mask propagation with SAM 2's video memory (transformers ``Sam2VideoModel``; SAM 3's tracker too).

Frames arrive one at a time, in decode order, and are never kept: each goes through the model's streaming
``forward(session, frame_idx, frame)``, which encodes it, conditions its features on the memory bank (memory
attention over the encoded memories of earlier frames, plus their object pointers), decodes the mask and
encodes the result into a new memory. One object is tracked: the union of the sounding objects.

* **Keyframes.** :meth:`MemoryPropagator.start` gives the AVS model's mask as a mask prompt on its frame
  (SAM 2 takes a mask prompt as the frame's output and encodes it as a conditioning memory), so every keyframe
  re-anchors the track. An all-False keyframe ends the track: the session is reset and :meth:`step` returns
  zeros until the next non-empty keyframe, so a source that stops sounding is not tracked on.
* **Bounded memory.** After every frame the session is pruned to what the next frames can use:
  the newest ``max_keyframes`` conditioning frames; the memories of the last ``num_maskmem - 1`` tracked
  frames (SAM 2 attends to no older ones); the object pointers of the last ``max_object_pointers_in_encoder - 1``
  tracked frames (small vectors; the mask memories of those older frames are dropped); nothing else: no
  decoded frame, no cached vision features, no used mask prompt. The bank thus holds at most
  ``max_keyframes + num_maskmem - 1`` frames (1 + 6 = SAM 2's usual 7 by default) whatever the video's length.
* **One keyframe by default.** Decision: ``max_keyframes = 1``. The newest keyframe is the AVS model's current
  verdict on what sounds; an older one can show an object that has since gone silent, and as a conditioning
  memory (always attended to, at temporal distance 0) it would pull the track back to that object. SAM 2
  itself, streaming forward, would use every keyframe it was given, without bound.
* **Preprocessing without torchvision**, as ``Sam2VideoVideoProcessor`` (SAM 3's tracker: its own mean/std):
  the frame resized to the model's square input by :func:`resized_pixel_values`; the mask prompt resized to
  it bilinearly (antialiased) and thresholded at 0.5, as ``Sam2VideoProcessor`` does; the low-resolution mask
  logits resized back to the input size, then to the frame's, as its ``post_process_masks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from avseg.models.zero_shot.sam3_prompter import resized_pixel_values

OBJECT_ID = 1
"""The one tracked object: the union of the sounding objects."""


class MemoryPropagator:
    """The :class:`~avseg.propagation.Propagator` on a SAM 2-style video model (``Sam2VideoModel`` or
    ``Sam3TrackerVideoModel``: the same streaming session API)."""

    def __init__(
        self,
        model: Any,
        session_class: type,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        max_keyframes: int = 1,
    ):
        if max_keyframes < 1:
            raise ValueError(f"max_keyframes must be at least 1, got {max_keyframes}")
        self.model = model.eval().to(device)
        self.session_class = session_class
        self.mean, self.std = tuple(mean), tuple(std)
        self.device = torch.device(device)
        self.max_keyframes = max_keyframes
        config = model.config
        self.image_size = int(config.image_size)
        self.recent_memories = config.num_maskmem - 1
        self.recent_pointers = max(config.max_object_pointers_in_encoder - 1, self.recent_memories)
        self.frame_index = -1
        self.session = self._new_session()
        self.tracking = False

    def _new_session(self) -> Any:
        dtype = next(self.model.parameters()).dtype
        return self.session_class(inference_device=self.device, inference_state_device=self.device, video_storage_device=self.device, dtype=dtype)

    def memory_bound(self) -> int:
        """The most frames :meth:`memory_entries` can ever report."""
        return self.max_keyframes + self.recent_memories

    @torch.inference_mode()
    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        """A keyframe: ``(H, W, 3)`` uint8 frame and its ``(H, W)`` bool mask from the AVS model."""
        self.frame_index += 1
        if mask.shape != frame.shape[:2]:
            raise ValueError(f"keyframe mask of shape {mask.shape} for a frame of shape {frame.shape[:2]}")
        if not mask.any():
            self.session = self._new_session()
            self.tracking = False
            return
        prompt = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
        prompt = F.interpolate(prompt, (self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        object_index = self.session.obj_id_to_idx(OBJECT_ID)
        self.session.add_mask_inputs(object_index, self.frame_index, (prompt >= 0.5).float())
        self.session.remove_point_inputs(object_index, self.frame_index)
        self.session.obj_with_new_inputs = [OBJECT_ID]
        self.model(inference_session=self.session, frame_idx=self.frame_index, frame=self._pixels(frame))
        self.tracking = True
        self._forget()

    @torch.inference_mode()
    def step(self, frame: np.ndarray) -> np.ndarray:
        """The next non-key frame -> ``(H, W)`` float32 foreground probability (zeros when no track)."""
        self.frame_index += 1
        height, width = frame.shape[:2]
        if not self.tracking:
            return np.zeros((height, width), dtype=np.float32)
        output = self.model(inference_session=self.session, frame_idx=self.frame_index, frame=self._pixels(frame))
        self._forget()
        logits = output.pred_masks[:1, :1].float()
        logits = F.interpolate(logits, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
        return logits[0, 0].sigmoid().cpu().numpy().astype(np.float32)

    def memory_entries(self) -> int:
        """Frames whose encoded memory is in the bank (conditioning keyframes and recent tracked frames)."""
        if not self.session.output_dict_per_obj:
            return 0
        outputs = self.session.output_dict_per_obj[0]
        tracked = sum("maskmem_features" in out for out in outputs["non_cond_frame_outputs"].values())
        return len(outputs["cond_frame_outputs"]) + tracked

    def _pixels(self, frame: np.ndarray) -> torch.Tensor:
        return resized_pixel_values(frame[None], self.image_size, self.mean, self.std).to(self.device)

    def _forget(self) -> None:
        """Prune the session to what later frames can use (see the module docstring)."""
        session, now = self.session, self.frame_index
        session.processed_frames = {}
        session.cache.clear_all()
        for per_frame in (*session.mask_inputs_per_obj.values(), *session.point_inputs_per_obj.values()):
            per_frame.clear()
        for outputs in session.output_dict_per_obj.values():
            keyframes = outputs["cond_frame_outputs"]
            for old in sorted(keyframes)[: -self.max_keyframes]:
                del keyframes[old]
            tracked = outputs["non_cond_frame_outputs"]
            for index in list(tracked):
                if index <= now - self.recent_pointers:
                    del tracked[index]
                elif index <= now - self.recent_memories:
                    for key in ("maskmem_features", "maskmem_pos_enc", "pred_masks"):
                        tracked[index].pop(key, None)
            for out in (*keyframes.values(), *tracked.values()):
                out.pop("high_res_masks", None)
        for frames in session.frames_tracked_per_obj.values():
            for index in [i for i in frames if i <= now - self.recent_pointers]:
                del frames[index]
