"""Building and loading models by the names of the model table (:mod:`avseg.models.architectures`).

``load_model(folder)`` (the architecture table's, after resolving names and hub repos) reads the ``model`` field of ``config.json`` and loads the
table's model class strictly. A *system* is what a recipe needs around a model to train and evaluate it:
its frozen encoders, its cues and its data task; ``build_system`` makes one from a recipe, ``load_system``
from a trained model folder (its ``system.json`` records the encoders) or a by-name model. Every build and
load here runs in :func:`avseg.loading.quiet_loading`, so no encoder or system load prints third-party noise.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from avseg.config import DataConfig, EncodersConfig, Recipe, build_config
from avseg.errors import AvsegError, ConfigError
from avseg.loading import quiet_loading
from avseg.models import architectures
from avseg.models.architectures import MODELS, available_models, model_entry
from avseg.models.system_info import SYSTEM_FILE, read_system_info, save_system_info
from avseg.silence import legacy_gate_setting

if TYPE_CHECKING:
    import torch

    from avseg.data.clip import Clip

__all__ = [
    "MODELS",
    "SYSTEM_FILE",
    "ZERO_SHOT_MODELS",
    "System",
    "available_models",
    "build_system",
    "load_model",
    "load_system",
    "read_system_info",
    "save_system_info",
]

ZERO_SHOT_MODELS = tuple(name for name, entry in MODELS.items() if entry.by_name)
"""Models used by name, without training (no model folder)."""


class System(Protocol):
    """A model with everything it needs to train and to segment clips."""

    model: torch.nn.Module

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int) -> Any: ...

    def segmenter(self, device: str | torch.device) -> Any: ...


def build_system(recipe: Recipe, num_classes: int = 2, model: torch.nn.Module | None = None, cues=None) -> System:
    """The recipe's model (new, or the trained ``model``) with its encoders, cues (TeSO) and task."""
    entry = model_entry(recipe.model)
    if entry.binary and num_classes != 2:
        binary = ", ".join(name for name, e in MODELS.items() if not e.binary)
        raise ConfigError(
            f"model: {entry.name} segments sounding objects as one binary mask (S4, MS3, Ref-AVS); for AVSS's {num_classes} classes use {binary}, "
            "or set data.foreground: true (every sounding class as foreground)"
        )
    system_class = entry.system_class()
    with quiet_loading():
        if entry.by_name:  # nothing trained: no model or cues to hand over
            return system_class.from_recipe(recipe, num_classes=num_classes)
        return system_class.from_recipe(recipe, model=model, num_classes=num_classes, cues=cues)


def load_system(model: str | Path, cues, settings: dict[str, Any] | None = None) -> tuple[System, dict[str, Any]]:
    """A trained model folder with the encoders recorded in its ``system.json``, using ``cues``; or a
    by-name model (``zeroshot-sam3``) with ``settings``, its config fields. The info holds the model
    name, the audio sample rate it expects and its ``source`` (the folder, or the weights' names). A name
    of ``avseg models`` or a hub repo id (``org/name[@revision]``) is downloaded (and converted) first."""
    from avseg.hub.resolve import resolve_model

    model = resolve_model(model)
    entry = MODELS.get(str(model))
    if entry is not None and entry.by_name:
        config = build_config(entry.config_class(), legacy_gate_setting(settings or {}), f"{entry.name} settings: ")
        with quiet_loading():
            system = entry.system_class().from_pretrained(config)
        source = " + ".join(str(value) for key, value in dataclasses.asdict(config).items() if key.endswith("_model"))
        return system, {"model": entry.name, "sample_rate": system.sample_rate, "source": source}
    if settings:
        raise ConfigError(f"{', '.join(settings)}: settings of a by-name model, but {model} is a trained model folder")
    info = {**read_system_info(model), "source": str(model)}
    recipe = Recipe(model=info["model"], encoders=EncodersConfig(**info["encoders"]), data=DataConfig(sample_rate=info["sample_rate"]))
    trained = load_model(Path(model))
    return build_system(recipe, num_classes=trained.config.num_classes, model=trained, cues=cues), info


def load_model(path: str | Path) -> Any:
    """Load a saved model folder (``config.json`` + ``model.safetensors``) strictly; a name of ``avseg models``
    or a hub repo id (``org/name[@revision]``) is downloaded (and converted) first."""
    from avseg.hub.resolve import resolve_model

    return architectures.load_model(resolve_model(path))
