"""The training loop: plain PyTorch, readable top to bottom.

    avseg train configs/teso_ms3.yaml [--set train.lr=3e-4] [--resume]
    torchrun --nproc_per_node=2 -m avseg.cli train ...   # data parallel (gloo on CPU, NCCL on GPU)

Every ``train.checkpoint_every`` steps and at the end of each epoch, the
model, optimizer, scheduler and RNG state are checkpointed atomically
(:mod:`avseg.engine.checkpoint`). Batches depend only on ``(seed, epoch)``,
so ``--resume`` replays the interrupted epoch up to the saved step and the
run ends with exactly the weights an uninterrupted run would have.

Under torchrun each process takes every ``world_size``-th clip of each batch
(its micro-batch; a last batch with fewer clips than processes is dropped) and DDP averages the gradients; a single process with
``train.micro_batches = world_size`` accumulates the same micro-batches, so
both runs compute the same update. Randomness inside the loss (Mask2Former's
point sampling) is seeded per step and micro-batch for the same reason.

The learning rate follows ``train.schedule`` (cosine, constant, or detectron2's
poly with warm-up), stepped after every iteration or at the end of every epoch
(``train.schedule_step``); parameter groups (a backbone learning-rate
multiplier, weight decay of norms and embeddings) and full-model gradient
clipping are detectron2's: :mod:`avseg.engine.optimizer`.
Every ``train.validate_every`` epochs the validation split is evaluated with
the official metrics and the best model by J (mIoU for AVSS) is kept in
``OUT/best``. Metrics go to ``OUT/metrics.jsonl``, one JSON object per line,
flushed to disk before every checkpoint; ``--resume`` keeps exactly the lines
up to its checkpoint.

A recipe is checked before any work starts: the device must exist here, the run
name must be one plain folder name, and an existing run folder is continued
only with ``--resume`` (with the recipe it was started with, up to the changes
:mod:`avseg.engine.run_folder` records) or replaced only with ``--overwrite``
(only a run avseg wrote, holding nothing else). A new run that fails before its
first checkpoint leaves no folder behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from avseg.config import Recipe, config_values, recipe_to_dict
from avseg.engine.checkpoint import (
    checkpoint_progress,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from avseg.engine.data import open_split, prepare_dataset
from avseg.engine.distributed import join
from avseg.engine.evaluate import evaluate_clips
from avseg.engine.memory import keep_large_buffers_mmapped
from avseg.engine.optimizer import (
    build_optimizer,
    build_scheduler,
    clip_gradients,
    schedule_rate,
)
from avseg.engine.run_folder import (
    check_new_run,
    new_run,
    read_recipe_record,
    resumed_record,
)
from avseg.errors import AvsegError, ConfigError
from avseg.files import write_json
from avseg.models.registry import ZERO_SHOT_MODELS, build_system, save_system_info
from avseg.outputs import safe_folder_name


def resolve_device(name: str, option: str = "device") -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` (or ``mps``) as a device of this machine; ``option`` names the
    setting in the one-line error for a device that does not exist or is not here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{option}: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}: {name} was asked for, but this machine has no CUDA device (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{option}: {name} does not exist here ({torch.cuda.device_count()} CUDA devices)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option}: {name} was asked for, but this machine has no MPS device (use cpu or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{option}: {name} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AvsegError("train.tensorboard: install the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(out / "tensorboard"))


def _truncate_log(path: Path, progress: dict[str, Any]) -> None:
    """Keep the log lines written up to the checkpoint a run resumes from; later ones are written again
    (a line cut short by a kill is dropped too)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ("step" in entry and entry["step"] <= progress["global_step"]) or ("val" in entry and entry["epoch"] <= progress["epoch"]):
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept))


def _sync(log) -> None:
    """Put every log line written so far on disk (before a checkpoint, so a resume finds them)."""
    if log is not None:
        log.flush()
        os.fsync(log.fileno())


def check_model_config(recipe: Recipe) -> None:
    """The recipe's ``model_config`` keys and types, checked before any work starts (the model's system
    checks them again when it builds the model, for ``avseg evaluate`` too)."""
    from avseg.models.architectures import MODELS, model_entry

    where = f"{recipe.source or 'recipe'}: model_config"
    entry = model_entry(recipe.model)
    if recipe.data.augmentation != "none" and recipe.data.augmentation not in entry.augmentations:
        taking = [name for name, e in MODELS.items() if recipe.data.augmentation in e.augmentations]
        raise ConfigError(f"{recipe.source or 'recipe'}: data.augmentation: {entry.name} trains without augmentation (none); {recipe.data.augmentation} is for {', '.join(taking)}")
    settings = dict(recipe.model_config)
    if entry.converter is not None and "init" in settings:  # a converted or trained folder to start from
        if not isinstance(settings.pop("init"), str):
            raise ConfigError(f"{where}.init: expected a model folder, got {recipe.model_config['init']!r}")
    for key in entry.start_keys:  # weights to start from, not config fields
        if key in settings and not isinstance(settings.pop(key), str):
            raise ConfigError(f"{where}.{key}: expected a hub name or folder, got {recipe.model_config[key]!r}")
    config_values(entry.config_class(), settings, where)


def _check_run_folder(out: Path, recipe: Recipe, resume: bool, overwrite: bool) -> tuple[Path | None, dict | None]:
    """The checkpoint to resume from and the run's updated ``recipe.json`` (None: unchanged), after refusing
    to mix a new run into an existing folder or a resumed run with a recipe it was not started with
    (see :mod:`avseg.engine.run_folder`)."""
    checkpoints = out / "checkpoints"
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: choose one (continue the run, or replace it)")
    if resume:
        found = latest_checkpoint(checkpoints)
        if found is None:
            raise AvsegError(f"{checkpoints}: no checkpoint to resume from")
        where = f"{recipe.source or 'recipe'}: "
        return found, resumed_record(read_recipe_record(out), recipe, checkpoint_progress(found), where)
    check_new_run(out, overwrite)
    return None, None


def train(recipe: Recipe, resume: bool = False, max_steps: int | None = None, overwrite: bool = False) -> Path:
    """Train ``recipe``; returns the output folder. ``max_steps`` stops early (tests, benchmarks);
    ``overwrite`` clears an existing run folder that avseg wrote first."""
    if recipe.model in ZERO_SHOT_MODELS:
        raise AvsegError(f"model: {recipe.model} is zero-shot and has nothing to train; evaluate it with avseg evaluate")
    settings = recipe.train
    device = resolve_device(settings.device, f"{recipe.source or 'recipe'}: train.device")
    out = Path(recipe.output) / safe_folder_name(recipe.name, f"{recipe.source or 'recipe'}: name")
    checkpoints = out / "checkpoints"
    check_model_config(recipe)
    found, record = _check_run_folder(out, recipe, resume, overwrite)
    keep_large_buffers_mmapped()
    # Process 0 validates while the others wait at a barrier: allow for a long validation.
    ranks = join("nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(hours=2))
    rank, world = ranks.rank, ranks.world
    if settings.micro_batches > 1 and world > 1:
        raise AvsegError("train.micro_batches: use either several processes or micro-batches, not both")
    if settings.batch_clips < world * settings.micro_batches:
        raise AvsegError(f"train.batch_clips: {settings.batch_clips} clips cannot be split over {world * settings.micro_batches} processes / micro-batches")
    device = ranks.device(device)

    if rank == 0:
        prepare_dataset(recipe.data)
    if world > 1:
        torch.distributed.barrier()
    torch.manual_seed(settings.seed)
    train_clips = open_split(recipe.data, recipe.data.train_split)
    val_clips = open_split(recipe.data, recipe.data.val_split)
    system = build_system(recipe, num_classes=train_clips.num_classes)
    if world > 1:
        torch.distributed.barrier()  # every process has passed the checks before process 0 clears anything
    model = system.model.to(device)
    model.activation_checkpointing = settings.activation_checkpointing
    task = system.task(list(train_clips), settings.batch_clips, settings.seed)
    # Some backbone parameters (e.g. unused feature levels) never receive gradients.
    forward = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model

    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, settings, len(task))
    per_iteration = settings.schedule_step == "iteration"
    progress: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": None}  # None: no validation yet (JSON has no -inf)
    if found is not None:
        progress = load_checkpoint(found, model, optimizer, scheduler)
        if rank == 0:
            _truncate_log(out / "metrics.jsonl", progress)
            if record is not None:
                write_json(out / "recipe.json", record)

    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if settings.bf16 else nullcontext()
    micro_batches = settings.micro_batches  # per process (1 under torchrun, see above)
    # A new run's folder is made only now, after every check, and goes again if the run fails before its first checkpoint.
    with new_run(out, recipe_to_dict(recipe)) if rank == 0 and found is None else nullcontext():
        log = open(out / "metrics.jsonl", "a") if rank == 0 else None
        board = _tensorboard(out) if rank == 0 and settings.tensorboard else None
        try:
            for epoch in range(progress["epoch"], settings.epochs):
                model.train()
                bar = tqdm(total=len(task), desc=f"epoch {epoch + 1}/{settings.epochs}", disable=rank != 0 or not sys.stderr.isatty(), leave=False)
                for step, clips in enumerate(task.batches(epoch)):
                    bar.update(1)
                    if step < progress["step_in_epoch"]:
                        continue  # replaying a resumed epoch up to its checkpoint
                    if len(clips) < world * micro_batches:
                        continue  # a last batch too small to give every process and micro-batch a clip is dropped
                    local = clips[rank::world]
                    micro = [local[k::micro_batches] for k in range(micro_batches)]
                    optimizer.zero_grad(set_to_none=True)
                    logged: dict[str, float] = {}
                    for index, part in enumerate(micro):
                        # The matched loss samples random points: seed them by (step, micro-batch), so a
                        # micro-batch gets the same points in whichever process computes it.
                        torch.manual_seed(settings.seed + 1_000_003 * (progress["global_step"] + 1) + rank + index)
                        with autocast:
                            losses = task.loss(part, device, forward)
                        if not torch.isfinite(losses["total"]):
                            raise AvsegError(f"training diverged at epoch {epoch + 1}, step {step + 1}: the loss is {losses['total'].item()}")
                        (losses["total"] / micro_batches).backward()
                        for name, value in losses.items():
                            logged[name] = logged.get(name, 0.0) + value.item() / micro_batches
                    lr = schedule_rate(optimizer)  # the rate this step used
                    clip_gradients(optimizer, settings.grad_clip_norm)
                    optimizer.step()
                    if per_iteration:
                        scheduler.step()
                    progress.update(step_in_epoch=step + 1, global_step=progress["global_step"] + 1)
                    bar.set_postfix(loss=f"{logged['total']:.3f}")
                    if log is not None:
                        log.write(json.dumps({"epoch": epoch + 1, "step": progress["global_step"], "lr": lr, **logged}, allow_nan=False) + "\n")
                    if board is not None:
                        for name, value in logged.items():
                            board.add_scalar(f"train/{name}", value, progress["global_step"])
                    if rank == 0 and progress["global_step"] % settings.checkpoint_every == 0:
                        _sync(log)
                        save_checkpoint(checkpoints, model, optimizer, scheduler, progress)
                    if max_steps is not None and progress["global_step"] >= max_steps:
                        return out
                bar.close()
                if not per_iteration:
                    scheduler.step()
                progress.update(epoch=epoch + 1, step_in_epoch=0)
                if rank == 0:
                    if epoch % settings.validate_every == 0:
                        _validate(system, val_clips, train_clips.num_classes, device, epoch, progress, out, recipe, log, board)
                    _sync(log)
                    save_checkpoint(checkpoints, model, optimizer, scheduler, progress)
                if world > 1:
                    torch.distributed.barrier()
        finally:
            if log is not None:
                log.close()
            if board is not None:
                board.close()
        if rank == 0:
            model.save_pretrained(out / "final")
            save_system_info(out / "final", recipe)
        return out


def _validate(system, val_clips, num_classes: int, device, epoch: int, progress: dict[str, Any], out: Path, recipe: Recipe, log, board) -> None:
    """Score the validation split, keep the best model in ``out/best`` and log the scores."""
    started = time.perf_counter()
    settings = recipe.train
    scores = evaluate_clips(system.segmenter(device), val_clips, settings.eval_batch_clips, num_classes)
    key = "mIoU" if "mIoU" in scores else "J"
    if progress["best"] is None or scores[key] > progress["best"]:
        progress["best"] = scores[key]
        system.model.save_pretrained(out / "best")
        save_system_info(out / "best", recipe)
    log.write(json.dumps({"epoch": epoch + 1, "val": scores, "eval_seconds": time.perf_counter() - started}, allow_nan=False) + "\n")
    if board is not None:
        board.add_scalar(f"val/{key}", scores[key], progress["global_step"])
    print(f"epoch {epoch + 1}/{settings.epochs}: val {key} {scores[key]:.4f} (best {progress['best']:.4f})", flush=True)
