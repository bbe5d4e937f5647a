"""``zeroshot-sam3``'s propagator: SAM 3's own video tracker, fed the keyframe masks.

Decision: transformers ``Sam3TrackerVideoModel`` (SAM 3's tracker: SAM 2's memory attention, memory encoder and
object pointers on SAM 3's ViT features, the ``tracker_model.`` and ``tracker_neck.`` weights of the released
``Sam3VideoModel`` checkpoint) with the keyframe masks as mask prompts, the protocol of the SAM 2 propagator,
rather than ``Sam3VideoModel``'s detect-then-track loop. That loop re-detects the prompted classes on every
frame with the full detector: a frame would cost as much as per-frame inference, the detections follow the
text prompt and not the audio (the keyframe's CLAP decision could not be carried), and the keyframe mask could
not re-anchor anything. The tracker instead carries exactly the keyframe's mask (CLAP-chosen classes segmented
by SAM 3) until the next keyframe decides again.

Built from the SAM 3 folder or hub name ``zeroshot-sam3`` already uses (the released ``facebook/sam3`` is a
``sam3_video`` folder holding detector and tracker): transformers maps the detector's ViT and the tracker
neck onto the tracker's own vision encoder, so the ViT weights are the detector's. Every tracker weight must be
present (the detector's other weights are left out by design). A ``sam3`` image-model folder has no tracker
and is refused in one line. Preprocessing: SAM 3's video processor (``Sam2VideoVideoProcessor`` with mean = std
= 0.5 at 1008x1008), without torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avseg.errors import AvsegError
from avseg.loading import loading
from avseg.models.zero_shot.sam3_prompter import SAM3_MEAN, SAM3_STD

VIDEO_MODEL_TYPES = ("sam3_video", "sam3_tracker_video")


def load_sam3_tracker(name_or_folder: str) -> Any:
    """SAM 3's ``Sam3TrackerVideoModel`` from a ``sam3_video`` (or ``sam3_tracker_video``) folder or hub name;
    every tracker weight present, or one line naming what is missing."""
    from transformers import AutoConfig, Sam3TrackerVideoModel

    from avseg.models.av2t_sam.model import listed_problems

    local = Path(name_or_folder)
    if not local.is_dir() and (local.exists() or name_or_folder.startswith((".", "/", "~")) or name_or_folder.count("/") != 1):
        raise AvsegError(f"{name_or_folder}: no such SAM 3 folder (give a transformers folder, or a hub name such as facebook/sam3)")
    with loading(name_or_folder, "SAM 3's config"):
        config = AutoConfig.from_pretrained(name_or_folder)
    if config.model_type not in VIDEO_MODEL_TYPES:
        raise AvsegError(
            f"{name_or_folder} is not a SAM 3 video model (config model_type {config.model_type!r}, expected one of "
            f"{', '.join(VIDEO_MODEL_TYPES)}: the released facebook/sam3 holds the video tracker)"
        )
    with loading(name_or_folder, "SAM 3's video tracker"):
        model, info = Sam3TrackerVideoModel.from_pretrained(name_or_folder, output_loading_info=True)
    problems = listed_problems({"missing": sorted(info.get("missing_keys") or ()), "wrong shape": sorted(str(k) for k in info.get("mismatched_keys") or ())}, shown=3)
    if problems:
        raise AvsegError(f"{name_or_folder}: weights do not fit Sam3TrackerVideoModel; {problems}")
    return model.eval()


def sam3_propagator(name_or_folder: str, device: str = "cpu", max_keyframes: int = 1) -> Any:
    """A :class:`~avseg.propagation.sam2_video.MemoryPropagator` on SAM 3's tracker (see the module docstring)."""
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoInferenceSession,
    )

    from avseg.propagation.sam2_video import MemoryPropagator

    model = load_sam3_tracker(name_or_folder)
    source = f"Sam3TrackerVideoModel of {name_or_folder}"
    return MemoryPropagator(model, Sam3TrackerVideoInferenceSession, (SAM3_MEAN,) * 3, (SAM3_STD,) * 3, device, max_keyframes, source)


def tiny_sam3_video_config() -> Any:
    """A ``Sam3VideoConfig`` of the real classes at toy size: :func:`~avseg.models.zero_shot.tiny_sam3_config`'s
    detector with 128-wide features (the tracker's width: see :func:`~avseg.propagation.sam2_weights.tiny_video_sam2_config`)
    and a tracker on them."""
    from transformers import Sam3VideoConfig

    from avseg.models.zero_shot import tiny_sam3_config

    detector = tiny_sam3_config()
    detector.vision_config.fpn_hidden_size = width = 128
    size, grid = detector.image_size, detector.vision_config.backbone_feature_sizes[-1][0]
    tracker = {
        "vision_config": detector.vision_config.to_dict(),
        "prompt_encoder_config": {"hidden_size": width, "image_size": size, "patch_size": size // grid},
        "mask_decoder_config": {"hidden_size": width, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        "memory_attention_hidden_size": width,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": width,
        "mask_downsampler_embed_dim": width,
        "memory_fuser_embed_dim": width,
        "image_size": size,
    }
    return Sam3VideoConfig(detector_config=detector.to_dict(), tracker_config=tracker)
