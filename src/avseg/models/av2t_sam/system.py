"""AV2T-SAM and AV2T-SAM3 with what a recipe needs around them: the frozen CLIP and CLAP encoders, the training
task, the segmenter."""

from __future__ import annotations

from typing import Sequence

import torch

from avseg.config import ConfigError, Recipe, config_values
from avseg.data.clip import Clip
from avseg.encoders.build import build_audio_encoder, build_image_encoder
from avseg.models.architectures import load_start, model_entry
from avseg.models.av2t_sam.inputs import AV2TInputs
from avseg.models.av2t_sam.model import AV2TSAM
from avseg.models.av2t_sam.sam3 import AV2TSAM3, sam3_pixels
from avseg.models.av2t_sam.training import AV2TTask


def av2t_sam_model(recipe: Recipe, audio_dim: int, vision_dim: int) -> AV2TSAM | AV2TSAM3:
    """A new model for ``recipe``: from ``model_config.init`` (a converted EVF-SAM / AV2T-SAM folder, or an
    AV2T-SAM3 folder from :meth:`AV2TSAM3.from_sam3`) when given, else the preset's architecture with random
    weights (only sensible for the tiny preset)."""
    entry = model_entry(recipe.model)
    model_class, config_class = entry.model_class(), entry.config_class()
    settings = dict(recipe.model_config)
    init = settings.pop("init", None)
    if init is not None:
        return load_start(init, settings, model_class, recipe.model)
    settings = config_values(config_class, settings, f"{recipe.source or 'recipe'}: model_config")
    return model_class(entry.preset_config(recipe.preset, **{"audio_dim": audio_dim, "vision_dim": vision_dim, **settings}))


class AV2TSAMSegmenter:
    """Runs an :class:`AV2TSAM` or :class:`AV2TSAM3` on whole clips; logits of each clip's real frames (none for
    AVSS's padding frames, as :mod:`avseg.engine.evaluate` scores them) at its mask size (or frame size)."""

    def __init__(self, model: AV2TSAM | AV2TSAM3, inputs: AV2TInputs, device: str | torch.device = "cpu", frames_per_call: int = 8):
        self.model = model.eval().to(device)
        self.inputs = inputs
        self.device = device
        self.frames_per_call = frames_per_call

    @torch.no_grad()
    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        outputs = []
        for clip in clips:
            rows = self.inputs.rows(clip)
            size = tuple(clip.masks.shape[1:]) if clip.masks is not None else tuple(clip.frames.shape[1:3])
            parts = [
                self.model(**self.inputs.model_inputs(rows.select(torch.arange(s, min(s + self.frames_per_call, len(rows)))), self.device), size=size).float().cpu()
                for s in range(0, len(rows), self.frames_per_call)
            ]
            outputs.append(torch.cat(parts))
        return outputs


class AV2TSAMSystem:
    def __init__(self, model: AV2TSAM | AV2TSAM3, inputs: AV2TInputs, mute_probability: float = 0.0):
        self.model = model
        self.inputs = inputs
        self.mute_probability = mute_probability

    @classmethod
    def from_recipe(cls, recipe: Recipe, model: AV2TSAM | AV2TSAM3 | None = None, num_classes: int = 2, cues=None) -> AV2TSAMSystem:
        """Encoders from the recipe; a new model unless ``model`` (a trained one) is given. The signature is
        the model table's: ``num_classes`` must be 2 (one binary mask) and ``cues`` empty (text cues are TeSO's)."""
        if cues:
            raise ConfigError(f"cues: {recipe.model} takes no text cues (only TeSO does)")
        if num_classes != 2:
            raise ConfigError(f"model: {recipe.model} segments sounding objects as one binary mask, not {num_classes} classes")
        audio_encoder = build_audio_encoder(recipe.encoders)
        image_encoder = build_image_encoder(recipe.encoders)
        if recipe.encoders.cache is not None:
            from avseg.encoders.cache import CachedAudioEncoder, FeatureCache

            audio_encoder = CachedAudioEncoder(audio_encoder, FeatureCache(recipe.encoders.cache))
        model = model or av2t_sam_model(recipe, audio_encoder.dim, image_encoder.dim)
        config = model.config
        if (config.audio_dim, config.vision_dim) != (audio_encoder.dim, image_encoder.dim):
            raise ConfigError(
                f"encoders give {audio_encoder.dim}-d audio and {image_encoder.dim}-d image embeddings, "
                f"but the model expects {config.audio_dim} and {config.vision_dim}"
            )
        if isinstance(model, AV2TSAM3):
            inputs = AV2TInputs(image_encoder, audio_encoder, model.sam.image_size, None, sam3_pixels)
        else:
            inputs = AV2TInputs(image_encoder, audio_encoder, model.sam.image_size, config.beit3_config().img_size)
        return cls(model, inputs, recipe.train.mute_probability)

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int) -> AV2TTask:
        return AV2TTask(self.model, self.inputs, clips, batch_clips, seed, self.mute_probability)

    def segmenter(self, device: str | torch.device = "cpu") -> AV2TSAMSegmenter:
        return AV2TSAMSegmenter(self.model, self.inputs, device)


