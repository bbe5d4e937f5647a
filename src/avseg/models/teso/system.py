"""TeSO with what a recipe needs around it: frozen encoders, cues, the training task, the segmenter."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import torch

from avseg.config import ConfigError, Recipe, config_values
from avseg.data.clip import Clip
from avseg.encoders.build import build_audio_encoder, build_text_encoder
from avseg.models.architectures import model_entry
from avseg.models.teso.inputs import TeSOInputs
from avseg.models.teso.model import TeSO, TeSOConfig
from avseg.models.teso.segmenter import TeSOSegmenter
from avseg.models.teso.training import TeSOTask
from avseg.silence import legacy_gate_setting


def teso_config(recipe: Recipe, text_dim: int, audio_dim: int, num_classes: int) -> TeSOConfig:
    config = model_entry("teso").preset_config(recipe.preset)
    model_config = legacy_gate_setting(recipe.model_config) if isinstance(recipe.model_config, dict) else recipe.model_config
    settings = config_values(TeSOConfig, model_config, f"{recipe.source or 'recipe'}: model_config")
    settings.update(text_dim=text_dim, audio_dim=audio_dim, num_classes=num_classes)
    return dataclasses.replace(config, **settings)


class TeSOSystem:
    def __init__(
        self,
        model: TeSO,
        inputs: TeSOInputs,
        cues: Mapping[str, Sequence[Sequence[str]]],
        mute_probability: float = 0.1,
    ):
        self.model = model
        self.inputs = inputs
        self.cues = cues
        self.mute_probability = mute_probability

    @classmethod
    def from_recipe(
        cls,
        recipe: Recipe,
        model: TeSO | None = None,
        num_classes: int = 2,
        cues: Mapping[str, Sequence[Sequence[str]]] | None = None,
    ) -> TeSOSystem:
        """Encoders and cues from the recipe; a new model unless ``model`` (a trained one) is given,
        and the recipe's cues unless ``cues`` are given (``avseg segment --cues``).

        InfoNCE's sounding categories come with the clips (``clip.meta["sounding_labels"]``, filled by the
        dataset readers), never from the dataset's files here.
        """
        from avseg.cues.pipeline import load_cues, oracle_cues

        audio_encoder = build_audio_encoder(recipe.encoders)
        text_encoder = build_text_encoder(recipe.encoders)
        if recipe.encoders.cache is not None:
            from avseg.encoders.cache import (
                CachedAudioEncoder,
                CachedTextEncoder,
                FeatureCache,
            )

            cache = FeatureCache(recipe.encoders.cache)
            audio_encoder, text_encoder = CachedAudioEncoder(audio_encoder, cache), CachedTextEncoder(text_encoder, cache)
        if model is None:
            model = TeSO(teso_config(recipe, text_encoder.dim, audio_encoder.dim, num_classes))
        config = model.config
        if (config.text_dim, config.audio_dim) != (text_encoder.dim, audio_encoder.dim):
            raise ConfigError(
                f"encoders give {text_encoder.dim}-d text and {audio_encoder.dim}-d audio, "
                f"but the model expects {config.text_dim} and {config.audio_dim}"
            )
        inputs = TeSOInputs(audio_encoder, text_encoder, config.text_dim, config.image_size, config.audio_window)
        if cues is not None:
            return cls(model, inputs, cues, recipe.train.mute_probability)
        if recipe.data.cues == "none":  # the cue-less ablation: every cue slot empty
            cues = {clip: [[] for _ in frames] for clip, frames in oracle_cues(recipe.data.root).items()}
        else:
            cues = oracle_cues(recipe.data.root) if recipe.data.cues == "oracle" else load_cues(recipe.data.cues)
        return cls(model, inputs, cues, recipe.train.mute_probability)

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int) -> TeSOTask:
        return TeSOTask(self.model, self.inputs, clips, self.cues, batch_clips, self.mute_probability, seed)

    def segmenter(self, device: str | torch.device = "cpu") -> TeSOSegmenter:
        return TeSOSegmenter(self.model, self.inputs, self.cues, device)
