"""From clips to AuralSAM2's inputs: SAM 2's frames and one stereo VGGish example per frame.

Audio, as the release's ``dataloader/audio/audio_dataset.py``: each channel of the track on its own through
VGGish's log-mel front end (16 kHz, one 0.96-s example per frame, the last repeated when the track is short),
giving ``(T, 2, 96, 64)``. The left and right channels come from ``clip.channels`` (readers keep them with
``data.channels: 2``); a mono track, or a clip that carries only its mix, is duplicated into both (the release's
loader fails on mono files; duplicating gives each half of the embedding the same input, which is what a
centred mono source sounds like in stereo). A track of more than two channels uses its first two.

Ref-AVS: the clip's referring expression (the reader's ``meta["expression"]``, or ``avseg segment --expression``)
read by the model's frozen text encoder, :func:`expression_features`.

Frames: SAM 2's 1024x1024 ImageNet-normalised input, prepared as AV2T-SAM prepares it (PIL bilinear resize of
the uint8 frame), see :func:`avseg.models.av2t_sam.inputs.sam_pixels`.
"""

from __future__ import annotations

import numpy as np
import torch

from avseg.audio import frame_examples
from avseg.data.clip import Clip
from avseg.errors import AvsegError
from avseg.models.av2t_sam.inputs import sam_pixels


def stereo_examples(clip: Clip) -> torch.Tensor:
    """``(T, 2, 96, 64)`` log-mel examples: frame ``k`` hears example ``k`` of the left and of the right channel."""
    channels = clip.channels if clip.channels is not None else clip.waveform[None]
    pair = [channels[0], channels[0]] if len(channels) == 1 else [channels[0], channels[1]]
    windowed = "audio_span" in clip.meta  # avseg segment at a dense rate: one window per frame (see frame_examples)
    examples = [frame_examples(np.asarray(channel, dtype=np.float32), clip.sample_rate, clip.num_frames, windowed) for channel in pair]
    return torch.from_numpy(np.stack(examples, axis=1))


def clip_inputs(clip: Clip, image_size: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The model's inputs for the clip's real (non-padding) frames."""
    keep = torch.from_numpy(clip.frame_valid)
    frames = torch.from_numpy(clip.frames)[keep].to(device)
    return {"pixels": sam_pixels(frames, image_size), "spectrograms": stereo_examples(clip)[keep].to(device)}


def expression_features(model, clip: Clip, expression: str | None = None) -> torch.Tensor | None:
    """The Ref-AVS variant's expression features for ``clip`` (its ``meta["expression"]``, else ``expression``);
    None for the AVS models. A Ref-AVS model without an expression is one line."""
    if not model.config.referring:
        return None
    text = clip.meta.get("expression") or expression
    if not text or not str(text).strip():
        raise AvsegError(f"{clip.meta.get('id', 'clip')}: a Ref-AVS model segments what an expression refers to; pass --expression 'the dog on the left'")
    return model.read(str(text))
