"""Building and loading models by the names of the model table (:mod:`avseg.models.catalog`).

``load_model(folder)`` (from the catalog) reads the ``model`` field of ``config.json`` and loads the
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
from avseg.encoders.build import build_audio_encoder, build_image_encoder, build_text_encoder, minilm_offline_path
from avseg.errors import AvsegError, ConfigError
from avseg.loading import quiet_loading
from avseg.models.catalog import MODELS, available_models, load_model, model_entry

if TYPE_CHECKING:
    import torch

    from avseg.data.clip import Clip

__all__ = [
    "MODELS",
    "SYSTEM_FILE",
    "ZERO_SHOT_MODELS",
    "System",
    "available_models",
    "build_audio_encoder",  # kept here for callers of the old location; they live in avseg.encoders.build
    "build_image_encoder",
    "build_system",
    "build_text_encoder",
    "load_model",
    "load_system",
    "minilm_offline_path",
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
        raise ConfigError(f"model: {entry.name} segments sounding objects as one binary mask (S4, MS3, Ref-AVS); for AVSS use {binary}")
    system_class = entry.system_class()
    with quiet_loading():
        if entry.by_name:  # nothing trained: no model or cues to hand over
            return system_class.from_recipe(recipe, num_classes=num_classes)
        return system_class.from_recipe(recipe, model=model, num_classes=num_classes, cues=cues)


SYSTEM_FILE = "system.json"


def save_system_info(folder: Path, recipe: Recipe) -> None:
    """Record beside a saved model which frozen encoders it was trained with (``avseg segment`` reads it)."""
    info = {"model": recipe.model, "encoders": dataclasses.asdict(recipe.encoders), "sample_rate": recipe.data.sample_rate}
    (Path(folder) / SYSTEM_FILE).write_text(json.dumps(info, indent=1))


def read_system_info(folder: str | Path) -> dict[str, Any]:
    """``system.json`` of a trained model folder, checked: a known trained model's name, the encoders (the
    fields of a recipe's ``encoders``) and a positive integer sample rate; one-line errors naming the file."""
    path = Path(folder) / SYSTEM_FILE
    if not Path(folder).exists():
        by_name = ", ".join(name for name, entry in MODELS.items() if entry.by_name)
        raise AvsegError(f"{folder}: no such model folder, nor a model used by name ({by_name})")
    if not path.is_file():
        raise AvsegError(f"{path}: missing file (model folders written by avseg train have it)")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AvsegError(f"{path}: invalid JSON") from None
    if not isinstance(info, dict):
        raise AvsegError(f"{path}: expected a JSON object with model, encoders and sample_rate")
    missing = [key for key in ("model", "encoders", "sample_rate") if key not in info]
    if missing:
        raise AvsegError(f"{path}: {missing[0]}: missing key")
    entry = MODELS.get(info["model"]) if isinstance(info["model"], str) else None
    if entry is None or not entry.trainable:
        trained = ", ".join(name for name, e in MODELS.items() if e.trainable)
        raise AvsegError(f"{path}: model: {info['model']!r} is not a trained model (known: {trained})")
    if not isinstance(info["encoders"], dict):
        raise AvsegError(f"{path}: encoders: expected a mapping, got {type(info['encoders']).__name__}")
    encoders = build_config(EncodersConfig, info["encoders"], f"{path}: encoders")
    rate = info["sample_rate"]
    if type(rate) is not int or rate <= 0:
        raise AvsegError(f"{path}: sample_rate: expected a positive integer, got {rate!r}")
    return {**info, "encoders": dataclasses.asdict(encoders)}


def load_system(model: str | Path, cues, settings: dict[str, Any] | None = None) -> tuple[System, dict[str, Any]]:
    """A trained model folder with the encoders recorded in its ``system.json``, using ``cues``; or a
    by-name model (``zeroshot-sam3``) with ``settings``, its config fields. The info holds the model
    name, the audio sample rate it expects and its ``source`` (the folder, or the weights' names). A name
    of ``avseg models`` or a hub repo id (``org/name[@revision]``) is downloaded (and converted) first."""
    from avseg.hub.resolve import resolve_model

    model = resolve_model(model)
    entry = MODELS.get(str(model))
    if entry is not None and entry.by_name:
        config = build_config(entry.config_class(), settings or {}, f"{entry.name} settings: ")
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

