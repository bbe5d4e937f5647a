"""``system.json``: which frozen encoders and audio rate a trained model folder needs (``avseg segment`` reads it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from avseg.config import EncodersConfig, Recipe, build_config
from avseg.errors import AvsegError
from avseg.files import write_json
from avseg.models.architectures import MODELS

SYSTEM_FILE = "system.json"


def save_system_info(folder: Path, recipe: Recipe) -> None:
    """Record beside a saved model which frozen encoders it was trained with (``avseg segment`` reads it)."""
    info = {"model": recipe.model, "encoders": dataclasses.asdict(recipe.encoders), "sample_rate": recipe.data.sample_rate}
    write_json(Path(folder) / SYSTEM_FILE, info)


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
