"""A training run's folder (``OUTPUT/NAME``): what ``avseg train`` may replace or remove there.

Decisions:

* The run name is one plain folder name (:func:`avseg.outputs.safe_folder_name`), so the run folder is
  always a child of the output folder.
* ``avseg train`` writes a marker, :data:`RUN_MARKER`, first thing into a new run folder. A folder from
  before the marker existed is recognised by its ``recipe.json``, which train has always written right
  after making the folder. A folder with neither is not a run avseg wrote, and is never replaced.
* ``--overwrite`` removes a run folder only if, at every depth, it holds nothing but what train (and
  ``avseg evaluate``'s default reports in its model folders) write there: :func:`run_layout`. Anything else
  is refused in one line before any work, and nothing is deleted.
* A new run that fails before its first checkpoint removes what it wrote: nothing in it could be resumed,
  and a left-over folder would only block the rerun. Once a checkpoint exists the folder stays, for
  ``--resume``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Iterator

from avseg.engine.checkpoint import LATEST
from avseg.errors import AvsegError, ConfigError
from avseg.files import write_json
from avseg.outputs import (
    Layout,
    check_parent_folder,
    foreign_entries,
    missing_folders,
    output_error,
    remove_empty,
    remove_written,
    shown,
)

RUN_MARKER = ".avseg-run"
REPORT_FILES = ("report.json", "report.md", "drops.png", "robust.png")
"""What ``avseg evaluate`` writes in its ``--out`` folder (and in a run's ``eval-SPLIT``)."""
MODEL_FILES: Layout = {"*.json": None, "*.safetensors": None, ".*.partial": None}
"""A model folder or checkpoint: JSON and safetensors only, and the temporaries of their atomic writes."""


@cache
def run_layout() -> Layout:
    """Everything ``avseg train`` writes in a run folder."""
    reports = dict.fromkeys(REPORT_FILES)
    model = {**MODEL_FILES, "eval-*": reports}
    return {
        RUN_MARKER: None,
        "recipe.json": None,
        "metrics.jsonl": None,
        ".*.partial": None,
        "checkpoints": {"latest": None, ".latest.partial": None, "step-[0-9]*": MODEL_FILES, ".step-[0-9]*.partial": MODEL_FILES},
        "best": model,
        "final": model,
        "tensorboard": {"events.out.tfevents.*": None},
        "eval-*": reports,
    }


def check_new_run(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to start a run in ``out`` unless it is new, empty, or (with ``overwrite``)
    a run avseg wrote that holds nothing else."""
    check_parent_folder(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{out}: exists and is not a folder; choose another run name")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not ((out / RUN_MARKER).is_file() or (out / "recipe.json").is_file()):
        raise ConfigError(f"{out}: is not a run avseg wrote (it has no recipe.json); choose another run name or output folder")
    if not overwrite:
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or --overwrite to replace it")
    foreign = foreign_entries(out, run_layout())
    if foreign:
        raise ConfigError(f"{out}: --overwrite removes only what avseg train wrote, and this run folder also holds {shown(foreign)}; move those away first (nothing was deleted)")


@contextmanager
def new_run(out: Path, recipe: dict) -> Iterator[None]:
    """Start a run in ``out``: clear the earlier run :func:`check_new_run` allowed, make the folder with its
    marker and ``recipe.json``. If that, or the block, fails before the run's first checkpoint, remove what
    it wrote (:func:`discard_run`)."""
    created = missing_folders(out)
    try:
        if out.is_dir():
            remove_written(out, run_layout())
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / RUN_MARKER, {"written_by": "avseg train"})
        write_json(out / "recipe.json", recipe)
    except OSError as exc:
        discard_run(out, created)
        raise output_error(exc, out) from None
    try:
        yield
    except BaseException:
        if not (out / "checkpoints" / LATEST).is_file():
            discard_run(out, created)
        raise


def discard_run(out: Path, created: list[Path]) -> None:
    """Remove what a failed new run wrote in ``out``, and the folders ``created`` for it, as far as they are
    empty (a file someone put there meanwhile stays, and so does its folder)."""
    if out.is_dir():
        remove_written(out, run_layout())
    remove_empty(created)


def read_recipe_record(out: Path) -> dict | None:
    """The ``recipe.json`` of the run in ``out``, or None when it has none."""
    path = out / "recipe.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AvsegError(f"{path}: invalid JSON; this run's record of its recipe is damaged") from None
    if not isinstance(record, dict):
        raise AvsegError(f"{path}: expected a JSON object (the run's recipe)")
    return record


RESUMABLE_KEYS = (
    "train.epochs", "train.device", "train.bf16", "train.micro_batches", "train.activation_checkpointing",
    "train.checkpoint_every", "train.validate_every", "train.eval_batch_clips", "train.tensorboard", "encoders.cache",
)  # fmt: skip
"""Recipe values a resumed run may change: where and how it runs (device, precision, memory, caching), how
often it checkpoints, validates and logs, and, with a constant learning rate, how long it trains. Every change
is recorded in ``recipe.json`` with the step it took effect at. Anything else (model, data, encoders, batch
size, seed, learning rates, schedule, augmentation) would make one run of two recipes, and is refused."""
LOCATION_KEYS = ("name", "output")
"""Where the run is, not what it is: not compared."""


def resumed_record(record: dict | None, recipe, progress: dict, where: str) -> dict | None:
    """The ``recipe.json`` a run resumed with ``recipe`` from a checkpoint at ``progress`` gets, or None when
    nothing changed. ``record`` is the run's ``recipe.json``; changes other than :data:`RESUMABLE_KEYS` are
    refused in one line naming them.

    The record holds the recipe now in force and, under ``changes``, one entry per changed value:
    ``{"first_step": N, "key": "train.epochs", "old": 1, "new": 2}``, where ``first_step`` is the first
    global step (counted from 1, as in ``metrics.jsonl``) trained with the new value.

    Decision: ``train.epochs`` may change only under ``train.schedule: constant``. A cosine schedule's
    length (T_max) is the run's length, and the steps already taken followed that curve; a longer run would
    have given them other rates, so no single recipe would describe the run. With a constant rate a run
    extended on resume is the run its new length would have been from the start.
    """
    from avseg.config import Recipe, recipe_to_dict

    current = recipe_to_dict(recipe)
    if record is None:  # nothing to compare with (deleted by hand): record the recipe now in force
        return current
    earlier = _flat(recipe_to_dict(Recipe())) | _flat({k: v for k, v in record.items() if k != "changes"})  # keys newer than the record: their defaults
    now = _flat(current)
    changed = sorted(key for key in earlier.keys() | now.keys() if key not in LOCATION_KEYS and earlier.get(key) != now.get(key))
    refused = [key for key in changed if key not in RESUMABLE_KEYS]
    if refused:
        details = ", ".join(f"{key} {_shown(earlier, key)} -> {_shown(now, key)}" for key in refused[:3]) + (", ..." if len(refused) > 3 else "")
        raise ConfigError(f"{where}--resume: {details}: a resumed run keeps the recipe.json it was started with (start a new run to change these)")
    if "train.epochs" in changed:
        _check_longer_run(earlier["train.epochs"], recipe.train, progress, where)
    if not changed:
        return None
    step = progress["global_step"] + 1
    changes = [*record.get("changes", []), *({"first_step": step, "key": key, "old": earlier.get(key), "new": now.get(key)} for key in changed)]
    return {**current, "changes": changes}


def _check_longer_run(planned: int, settings, progress: dict, where: str) -> None:
    if settings.schedule != "constant":
        raise ConfigError(
            f"{where}--resume: train.epochs {planned} -> {settings.epochs}: this run's {settings.schedule} learning rate was planned over "
            f"{planned} epochs and its steps so far followed that plan; start a new run to train longer (a run with train.schedule: constant can be extended)"
        )
    begun = progress["epoch"] + (1 if progress["step_in_epoch"] else 0)
    if settings.epochs < begun:
        raise ConfigError(f"{where}--resume: train.epochs {settings.epochs}: the run has already begun epoch {begun}")


def _shown(values: dict, key: str) -> str:
    return repr(values[key]) if key in values else "(unset)"


def _flat(tree: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (an empty mapping adds nothing)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
