"""VCT as a system: the model (its VGGish inside), the mask-image generator, the segmenter over whole clips.

The model needs no encoder outside it (VGGish is part of its weights), so a recipe's ``encoders`` section is not read.
Each clip's real frames are one batch (the release runs 5 or 10 frames at once; frames do not interact).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from avseg.config import ConfigError, Recipe, config_values
from avseg.data.clip import Clip
from avseg.models.architectures import load_start, model_entry
from avseg.models.vct.inputs import clip_inputs, mask_generator
from avseg.models.vct.mask_images import RememberedMaskImages, describe
from avseg.models.vct.model import VCT


def vct_model(recipe: Recipe, num_classes: int) -> VCT:
    """A new model for ``recipe``: from ``model_config.init`` (a converted folder) when given, else the preset's
    architecture with random weights (only sensible for the tiny preset)."""
    settings = dict(recipe.model_config)
    init = settings.pop("init", None)
    if init is not None:
        model = load_start(init, settings, VCT, "VCT")
    else:
        entry = model_entry(recipe.model)
        settings = config_values(entry.config_class(), settings, f"{recipe.source or 'recipe'}: model_config")
        model = VCT(entry.preset_config(recipe.preset, **{"num_classes": num_classes, **settings}))
        if model.config.swin_start is not None:
            with_pretrained_backbones(model, model.config.swin_start, recipe.encoders.audio_weights)
    return checked_classes(model, num_classes)


def checked_classes(model: VCT, num_classes: int) -> VCT:
    """``model``, refused in one line when its classes are not the data's (a binary S4/MS3 VCT on AVSS's 71)."""
    if model.num_classes != num_classes:
        raise ConfigError(f"model: this VCT has {model.num_classes} classes but the data has {num_classes} (vct-s4 and vct-ms3 are binary, vct-avss has AVSS's 71)")
    return model


def with_pretrained_backbones(model: VCT, swin: str, vggish_weights: str | None) -> VCT:
    """A new model's starting weights, as the release starts training: both Swins from ``swin`` (an ImageNet Swin in
    transformers' layout; its classifier and final LayerNorm are not part of a backbone, the four stage norms stay
    new, as the release's ``norm0..3``) and VGGish from ``encoders.audio_weights`` (``vggish-10086976.pth``)."""
    from transformers import SwinModel

    from avseg.encoders.vggish import VGGish
    from avseg.hub.locations import hub_cache_dir
    from avseg.loading import load_pretrained, loading
    from avseg.models.av2t_sam.model import load_strict

    if vggish_weights is None:
        raise ConfigError("encoders.audio_weights: the VGGish weights file (vggish-10086976.pth) is required to train VCT")
    with loading(swin, "the Swin VCT starts from"):
        start = load_pretrained(SwinModel, swin, "the Swin VCT starts from", cache_dir=str(hub_cache_dir()))
    state = {f"swin.{key}": value for key, value in start.state_dict().items() if not key.startswith(("layernorm.", "pooler."))}
    for encoder in (model.encoder.frame_encoder, model.encoder.mask_encoder):
        state.update({key: value for key, value in encoder.state_dict().items() if key.startswith("hidden_states_norms.")})
        load_strict(encoder, state, swin)
    load_strict(model.audio.vggish, VGGish.from_official(vggish_weights, model.audio.vggish.config).state_dict(), vggish_weights)
    return model


class VCTSegmenter:
    """Runs a :class:`VCT` on whole clips; logits of each clip's real frames (none for AVSS's padding frames, as
    :mod:`avseg.engine.evaluate` scores them) at its mask size (or frame size).

    Every frame's summary row says where its mask image came from (published, or the generator; SAM 2's are approximate)."""

    def __init__(self, model: VCT, device: str | torch.device = "cpu", generator=None):
        """``generator``: a mask generator to use instead of loading the one the model's ``mask_generator`` names."""
        self.model = model.eval().to(device)
        self.device = device
        self._generator = None if generator is None else RememberedMaskImages(generator)
        self.generators_used: set[str] = set()
        self.published_used = False

    def generator(self):
        if self._generator is None:
            self._generator = RememberedMaskImages(mask_generator(self.model.config.mask_generator, device=self.device))
        return self._generator

    def prepare_for_videos(self) -> None:
        """Load the mask-image generator now (``avseg segment``, the app): a video has no published mask images, so
        every one needs it, and a generator that cannot load is then one line before the first video instead of a
        failure per video of a corpus. ``avseg evaluate`` loads it only when a clip lacks published ones."""
        self.generator()

    @torch.no_grad()
    def predict_with_details(self, clips: Sequence[Clip]) -> tuple[list[torch.Tensor], list[list[dict]]]:
        outputs, details = [], []
        for clip in clips:
            size = tuple(clip.masks.shape[1:]) if clip.masks is not None else tuple(clip.frames.shape[1:3])
            inputs, made_by = clip_inputs(clip, self.model.image_size, self.generator, self.device)
            output = self.model(**inputs)
            if made_by is None:
                self.published_used = True
            else:
                self.generators_used.add(made_by)
            outputs.append(self.model.segmentation_logits(output, size).float().cpu())
            details.append([describe(made_by)] * len(outputs[-1]))
        return outputs, details

    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        return self.predict_with_details(clips)[0]

    def report_fields(self) -> dict[str, object]:
        """What ``report.json`` records about the mask images of an evaluation."""
        fields: dict[str, object] = {"mask_images": [], "approximate": any(describe(name)["approximate"] for name in self.generators_used)}
        if self.published_used:
            fields["mask_images"].append(describe(None)["mask_images"])
        fields["mask_images"] += [describe(name)["mask_images"] for name in sorted(self.generators_used)]
        return fields


class VCTSystem:
    def __init__(self, model: VCT, augmentation: str = "none", layout: str | None = None):
        self.model = model
        self.augmentation = augmentation
        self.layout = layout

    @classmethod
    def from_recipe(cls, recipe: Recipe, model: VCT | None = None, num_classes: int = 2, cues=None) -> VCTSystem:
        if cues:
            raise ConfigError(f"cues: {recipe.model} takes no text cues (only TeSO does)")
        return cls(checked_classes(model, num_classes) if model is not None else vct_model(recipe, num_classes), recipe.data.augmentation, recipe.data.layout)

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int):
        from avseg.models.vct.training import VCTTask

        return VCTTask(self.model, clips, batch_clips, seed, self.augmentation, augment_from_short_side=self.layout == "avss")

    def segmenter(self, device: str | torch.device = "cpu") -> VCTSegmenter:
        return VCTSegmenter(self.model, device)
