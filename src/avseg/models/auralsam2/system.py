"""AuralSAM2 as a system: the model (its VGGish inside), the segmenter over whole clips, and its training task.

The model needs no encoder outside it (its frozen VGGish and SAM 2 are part of its weights), so a recipe's
``encoders`` section is not read. Each clip is one call: its frames are one group for the AuralFuser and
one video for SAM 2's memory, tracked from the first frame (the release's inference, batch size 1; the Ref-AVS
variant from the middle frame, as its release).

The Ref-AVS variant (presets ``refavs``, ``tiny-refavs``) reads each clip's referring expression: a Ref-AVS reader's
``clip.meta["expression"]`` (the ``exp`` column), or for videos the one given to ``avseg segment --expression``
(:attr:`AuralSAM2Segmenter.expression`); without one it refuses in one line.
"""

from __future__ import annotations

from typing import Sequence

import torch

from avseg.config import ConfigError, Recipe, config_values
from avseg.data.clip import Clip
from avseg.models.architectures import load_start, model_entry
from avseg.models.auralsam2.convert import DEFAULT_SAM
from avseg.models.auralsam2.inputs import clip_inputs, expression_features
from avseg.models.auralsam2.model import (
    DEFAULT_TEXT_ENCODER,
    AuralSAM2,
    check_mode,
    tiny_tokenizer,
)


def auralsam2_model(recipe: Recipe) -> AuralSAM2:
    """A new model for ``recipe``: from ``model_config.init`` (a converted folder) when given, else the preset's
    architecture with random weights (only sensible for the tiny presets); the presets ``refavs`` and ``tiny-refavs``
    build the Ref-AVS variant (``text``: its text encoder's hub name or folder, default the release's DistilRoBERTa)."""
    entry = model_entry(recipe.model)
    settings = dict(recipe.model_config)
    init = settings.pop("init", None)
    if init is not None:
        mode = settings.pop("inference_mode", None)
        model = load_start(init, settings, AuralSAM2, "AuralSAM2")
        if mode is not None:
            model.inference_mode = model.config.inference_mode = check_mode(mode, "model_config.inference_mode")
        return model
    sam = settings.pop("sam", None)
    text = settings.pop("text", None)
    settings = config_values(entry.config_class(), settings, f"{recipe.source or 'recipe'}: model_config")
    model = AuralSAM2(entry.preset_config(recipe.preset, **settings))
    if text is not None and not model.config.referring:
        raise ConfigError(f"model_config.text: only the Ref-AVS variant has a text encoder (preset refavs), not preset {recipe.preset}")
    if recipe.preset.startswith("tiny"):
        if sam is not None or text is not None:
            raise ConfigError(f"model_config.{'sam' if sam is not None else 'text'}: the tiny presets train from random weights; remove it")
        model.tokenizer = tiny_tokenizer() if model.config.referring else None
        return model
    return with_pretrained_backbones(model, sam or DEFAULT_SAM, recipe.encoders.audio_weights, text or DEFAULT_TEXT_ENCODER)


def with_pretrained_backbones(model: AuralSAM2, sam: str, vggish_weights: str | None, text: str = DEFAULT_TEXT_ENCODER) -> AuralSAM2:
    """A new model's frozen parts from their releases, as the release starts training: SAM 2.0 Hiera-L (transformers'
    ``sam``, strictly), VGGish (``encoders.audio_weights``, ``vggish-10086976.pth``) and, for Ref-AVS, the text
    encoder and tokenizer (``text``); the AuralFuser stays new."""
    from avseg.encoders.vggish import VGGish
    from avseg.models.auralsam2.convert import transformers_sam, transformers_text
    from avseg.models.auralsam2.model import load_tokenizer
    from avseg.models.av2t_sam.model import load_strict

    if vggish_weights is None:
        raise ConfigError("encoders.audio_weights: the VGGish weights file (vggish-10086976.pth) is required to train AuralSAM2")
    state = {key[len("sam.") :]: value for key, value in transformers_sam(sam).items()}
    load_strict(model.sam, state, sam)
    load_strict(model.vggish, VGGish.from_official(vggish_weights, model.vggish.config).state_dict(), vggish_weights)
    if model.text_encoder is not None:
        load_strict(model.text_encoder, {key[len("text_encoder.") :]: value for key, value in transformers_text(text).items()}, text)
        model.tokenizer = load_tokenizer(text)
    return model


class AuralSAM2Segmenter:
    """Runs an :class:`AuralSAM2` on whole clips; logits of each clip's real frames (none for AVSS's padding frames,
    as :mod:`avseg.engine.evaluate` scores them) at its mask size (or frame size)."""

    audio_channels = 2
    """it hears stereo: ``avseg segment`` and the app decode a video's two channels (a mono track duplicated)"""

    def __init__(self, model: AuralSAM2, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.device = device
        self.expression: str | None = None
        """Ref-AVS: the expression for clips that carry none (``avseg segment --expression``)."""

    @torch.no_grad()
    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        outputs = []
        for clip in clips:
            size = tuple(clip.masks.shape[1:]) if clip.masks is not None else tuple(clip.frames.shape[1:3])
            expression = expression_features(self.model, clip, self.expression)
            output = self.model(**clip_inputs(clip, self.model.image_size, self.device), expression=expression)
            outputs.append(self.model.select(output, size).float().cpu())
        return outputs


class AuralSAM2System:
    def __init__(self, model: AuralSAM2):
        self.model = model

    @classmethod
    def from_recipe(cls, recipe: Recipe, model: AuralSAM2 | None = None, num_classes: int = 2, cues=None) -> AuralSAM2System:
        """The signature is the model table's: ``num_classes`` must be 2 (one binary mask) and ``cues`` empty."""
        if cues:
            raise ConfigError(f"cues: {recipe.model} takes no text cues (only TeSO does)")
        if num_classes != 2:
            raise ConfigError(f"model: {recipe.model} segments sounding objects as one binary mask, not {num_classes} classes")
        return cls(model or auralsam2_model(recipe))

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int):
        from avseg.models.auralsam2.training import AuralSAM2Task

        return AuralSAM2Task(self.model, clips, batch_clips, seed)

    def segmenter(self, device: str | torch.device = "cpu") -> AuralSAM2Segmenter:
        return AuralSAM2Segmenter(self.model, device)
