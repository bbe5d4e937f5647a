"""Training checkpoints: safetensors and JSON only, written atomically.

A checkpoint is a folder ``checkpoints/step-000123/`` holding

* ``model.safetensors`` + ``config.json``: the model (loadable by ``avseg.load_model``);
* ``optimizer.safetensors``: every tensor of the optimizer state, flattened to
  ``state.<param index>.<name>``;
* ``trainer.json``: optimizer hyper-parameters, scheduler state, epoch and
  step counters, the best validation score, and the recipe;
* ``rng.safetensors``: the torch CPU generator state.

It is written under a temporary name and renamed into place, then the file
``checkpoints/latest`` (also replaced atomically) is pointed at it, so a
crash at any moment leaves the previous checkpoint intact and ``latest``
naming a complete one. No pickle is involved at any step. Files get the
usual umask's mode (:mod:`avseg.files`), so others can read a shared run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from avseg.errors import AvsegError
from avseg.files import save_tensors, write_json

LATEST = "latest"
CHECKPOINT_NAME = re.compile(r"step-\d{8,}(-end)?(-\d+)?")
"""The names :func:`save_checkpoint` gives; only folders named so are ever rotated out (deleted)."""


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"state.{index}.{name}"] = torch.as_tensor(value).contiguous()
    return tensors, state["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    folder: Path,
    model,
    optimizer: torch.optim.Optimizer,
    scheduler,
    progress: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``folder/step-<global step>`` atomically and point ``folder/latest`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    # Names are never reused, so the checkpoint `latest` points to is never deleted or overwritten
    # (an epoch-end checkpoint can share its step with a mid-epoch one, and a resumed run replays steps).
    base = f"step-{progress['global_step']:08d}" + ("-end" if progress["step_in_epoch"] == 0 else "")
    name, copy = base, 1
    while (folder / name).exists():
        name, copy = f"{base}-{copy}", copy + 1
    temporary = folder / f".{name}.partial"
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    tensors, groups = optimizer_tensors(optimizer)
    save_tensors(tensors, temporary / "optimizer.safetensors")
    save_tensors({"torch_cpu": torch.get_rng_state()}, temporary / "rng.safetensors")
    write_json(temporary / "trainer.json", {"progress": progress, "param_groups": groups, "scheduler": scheduler.state_dict()})
    final = folder / name
    os.replace(temporary, final)
    write_json(folder / LATEST, {"checkpoint": name})
    ours = (p for p in folder.iterdir() if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    for old in sorted(ours, key=lambda p: p.stat().st_mtime_ns)[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise AvsegError(f"{pointer}: unreadable checkpoint pointer") from None
    path = folder / name
    if not (path / "trainer.json").is_file():
        raise AvsegError(f"{path}: checkpoint is incomplete (no trainer.json)")
    return path


def checkpoint_progress(path: Path) -> dict[str, Any]:
    """The progress counters (epoch, step in epoch, global step, best score) saved in checkpoint ``path``."""
    try:
        progress = json.loads((path / "trainer.json").read_text())["progress"]
        int(progress["epoch"]), int(progress["step_in_epoch"]), int(progress["global_step"])
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise AvsegError(f"{path / 'trainer.json'}: unreadable progress counters; cannot resume from this checkpoint") from None
    return progress


def load_checkpoint(path: Path, model, optimizer: torch.optim.Optimizer, scheduler) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG in place; returns the saved progress counters."""
    try:
        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
        trainer = json.loads((path / "trainer.json").read_text())
        restore_optimizer(optimizer, load_file(str(path / "optimizer.safetensors")), trainer["param_groups"])
        scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch_cpu"])
    except AvsegError:
        raise
    except (RuntimeError, OSError, KeyError, ValueError, json.JSONDecodeError, SafetensorError) as exc:
        raise AvsegError(f"{path}: cannot resume from this checkpoint ({' '.join(str(exc).split())[:200]})") from None
    return trainer["progress"]
