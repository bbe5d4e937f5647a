"""Temporal propagation between keyframes: masks carried from frame to frame by a video model's memory.

The AVS model segments keyframes (audio-conditioned); in between, a propagator tracks the keyframe's mask
through the frames (``avseg segment``'s dense mode calls it). Each keyframe re-anchors the track; an empty
keyframe (nothing sounds) ends it. Propagators:

* ``Sam2VideoModel`` (:mod:`avseg.propagation.sam2_video`): AV2T-SAM's own SAM 2 (the same weights its
  converted folder holds, :mod:`avseg.propagation.sam2_weights`) or any transformers SAM 2 video folder
  or hub name (``facebook/sam2.1-hiera-large``);
* SAM 3's tracker (:mod:`avseg.propagation.sam3_video`) for ``zeroshot-sam3``, from its SAM 3 folder;
* ``hold`` (:mod:`avseg.propagation.hold`): no tracking, the keyframe's mask held (the baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from avseg.errors import ConfigError

AUTO, NONE, HOLD = "auto", "none", "hold"


class Propagator(Protocol):
    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        """A keyframe: ``(H, W, 3)`` uint8 frame (video resolution) and the AVS model's ``(H, W)`` bool mask;
        re-anchors the track; an all-False mask ends it."""

    def step(self, frame: np.ndarray) -> np.ndarray:
        """The next non-key frame in decode order -> ``(H, W)`` float32 foreground probability in [0, 1]
        (all zeros when no track)."""

    def memory_entries(self) -> int:
        """Frames held in the memory bank."""


def load_propagator(spec: str, model_folder: str | Path | None, system_info: dict[str, Any], device: str = "cpu") -> Propagator | None:
    """The propagator ``spec`` names for a loaded model (``system_info``: the segmenter's info, with ``model``).

    ``none``: None (per-frame inference only). ``hold``: each keyframe's mask held until the next
    (:class:`~avseg.propagation.hold.HoldPropagator`, the one-mask-per-second baseline). ``auto``: the model's own: AV2T-SAM on SAM 2 (EVF-SAM2
    weights): the SAM 2 of its folder; ``zeroshot-sam3``: SAM 3's tracker from its SAM 3 weights
    (``system_info["sam3_model"]``, else ``model_folder``, else the zero-shot default ``facebook/sam3``);
    every other model (TeSO, AV2T-SAM on SAM ViT-H, AV2T-SAM3, AuralSAM2, VCT): None. Anything else: a transformers
    ``Sam2VideoModel`` folder or hub name (``facebook/sam2.1-hiera-large``). Loads are strict; problems are
    one-line errors."""
    from avseg.propagation.sam2_weights import load_sam2_video, sam2_video_from_av2t

    spec = str(spec).strip()
    if not spec:
        raise ConfigError("--propagator: empty; use auto, none, hold, a SAM 2 video folder or a hub name such as facebook/sam2.1-hiera-large")
    if spec == NONE:
        return None
    if spec == HOLD:
        from avseg.propagation.hold import HoldPropagator

        return HoldPropagator()
    if spec != AUTO:
        return sam2_propagator(load_sam2_video(spec), device, source=f"Sam2VideoModel {spec}")
    model = system_info.get("model")
    if model == "zeroshot-sam3":
        from avseg.models.zero_shot import ZeroShotConfig
        from avseg.propagation.sam3_video import sam3_propagator

        return sam3_propagator(str(system_info.get("sam3_model") or model_folder or ZeroShotConfig.sam3_model), device)
    if model == "av2t-sam":
        if model_folder is None:
            raise ConfigError("--propagator auto: AV2T-SAM's propagator is the SAM 2 of its model folder; none was given")
        video_model = sam2_video_from_av2t(model_folder)
        return sam2_propagator(video_model, device, source=f"Sam2VideoModel of {model_folder}") if video_model is not None else None
    return None


def sam2_propagator(model: Any, device: str = "cpu", max_keyframes: int = 1, source: str = "Sam2VideoModel") -> Propagator:
    """A :class:`~avseg.propagation.sam2_video.MemoryPropagator` on a loaded ``Sam2VideoModel`` (ImageNet mean/std)."""
    from transformers.models.sam2_video.modeling_sam2_video import (
        Sam2VideoInferenceSession,
    )

    from avseg.encoders import IMAGENET_MEAN, IMAGENET_STD
    from avseg.propagation.sam2_video import MemoryPropagator

    return MemoryPropagator(model, Sam2VideoInferenceSession, IMAGENET_MEAN, IMAGENET_STD, device, max_keyframes, source)


__all__ = ["AUTO", "HOLD", "NONE", "Propagator", "load_propagator", "sam2_propagator"]
