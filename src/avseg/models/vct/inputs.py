"""From clips to VCT's inputs: 384 x 384 frames and mask images, one VGGish log-mel example per frame.

Frames: the release's ``generate_data_384`` resizes each AVSBench frame to 384 x 384 with PIL bilinear and the model
subtracts ImageNet's mean and divides by its std on the 0-255 scale: :func:`avseg.models.av2t_sam.inputs.sam_pixels`
does exactly that. Mask images (:mod:`.mask_images`): the published ones where the clip's reader found them, else
made by the generator; normalised like the frames (the release's ``pre_sam_masks`` go through the same
``(x - pixel_mean) / pixel_std``). Audio: VGGish's log-mel front end (16 kHz, one 0.96-s example per frame, the last
repeated when the track is short), as AVSBench's ``audio_log_mel`` pickles the release reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avseg.audio import frame_examples
from avseg.data.clip import Clip
from avseg.errors import AvsegError
from avseg.models.av2t_sam.inputs import sam_pixels
from avseg.models.vct import mask_images


def published_mask_image_files(clip: Clip) -> list[str] | None:
    """The clip's published mask image files (its reader's ``mask_image_files``) when every real frame has one."""
    files = clip.meta.get("mask_image_files")
    real = int(clip.frame_valid.sum())
    if not files or len(files) < real or not all(Path(file).is_file() for file in files[:real]):
        return None
    return list(files[:real])


def mask_generator(name: str, device: str | torch.device = "cpu"):
    """The generator ``mask_generator`` names: Semantic-SAM (a released name, a converted folder or an official
    ``.pth``), else SAM 2 (a transformers hub name or folder)."""
    from avseg.hub.download import is_hub_name
    from avseg.models.semantic_sam.convert import is_semantic_sam, load_semantic_sam
    from avseg.models.semantic_sam.generator import SemanticSamMaskGenerator

    if is_semantic_sam(name):
        return SemanticSamMaskGenerator(load_semantic_sam(name), name, device=device)
    if not Path(name).exists() and not is_hub_name(name):
        raise AvsegError(
            f"mask_generator {name}: no such file or folder (use semantic-sam-l, semantic-sam-t, a Semantic-SAM .pth or "
            "converted folder, or a SAM 2 hub name or folder)"
        )
    return mask_images.Sam2MaskGenerator(name, device=device)


def clip_images(clip: Clip, image_size: int, generator) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The clip's real frames and their mask images, uint8 ``(T, S, S, 3)`` (frames PIL bilinear to ``S``, as
    ``generate_data_384``), and the generator that made the mask images (None: published).

    ``generator`` is a callable returning a mask generator (:func:`mask_generator`), called only when the clip has
    no published mask images (loading one is not free)."""
    real = clip.frames[clip.frame_valid]
    frames = np.stack([np.asarray(Image.fromarray(frame).resize((image_size, image_size), Image.BILINEAR)) for frame in real])
    files = published_mask_image_files(clip)
    if files is not None:
        return frames, mask_images.read_published(files, image_size), None
    maker = generator()
    return frames, np.stack([maker.mask_image(frame, image_size) for frame in real]), maker.name


def model_inputs(clip: Clip, frames: np.ndarray, images: np.ndarray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The model's inputs from the clip's real frames and mask images (uint8 ``(T, S, S, 3)``) and its audio."""
    size = frames.shape[1]
    examples = frame_examples(np.asarray(clip.waveform, dtype=np.float32), clip.sample_rate, clip.num_frames, windowed="audio_span" in clip.meta)
    return {
        "pixels": sam_pixels(torch.from_numpy(frames).to(device), size),
        "mask_images": sam_pixels(torch.from_numpy(images).to(device), size),
        "spectrograms": torch.from_numpy(examples)[torch.from_numpy(clip.frame_valid)].to(device),
    }


def clip_inputs(clip: Clip, image_size: int, generator, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], str | None]:
    """The model's inputs for the clip's real frames, and the generator that made its mask images (None: published)."""
    frames, images, made_by = clip_images(clip, image_size, generator)
    return model_inputs(clip, frames, images, device), made_by
