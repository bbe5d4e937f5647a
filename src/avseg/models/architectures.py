"""The architecture table: each model avseg can build, train and load, by name -> method, classes, presets
(in the spirit of segment-anything's ``sam_model_registry``), and :func:`load_model`, which loads a saved
model folder as the class it names. Released *weights* by name are the other table,
:mod:`avseg.hub.pretrained`; each of its rows names one architecture of this one.

Everything that needs a model name reads it from :data:`MODELS`: :func:`avseg.load_model`, the registry's
``build_system`` / ``load_system``, recipes' ``model:``, ``avseg segment --model``, ``avseg models`` and
:func:`avseg.available_models`.

Decision: classes are recorded as import paths (``"module:Attribute"``) and imported when first used, so
``import avseg`` and reading the table stay light (no torch, no transformers), and this module imports
nothing from avseg's models: the systems may read it without an import circle.

Presets: ``paper`` is the config class's defaults; any other preset is the config classmethod of that name
(``-`` read as ``_``: ``evf-sam`` -> ``AV2TSAMConfig.evf_sam``).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avseg.errors import AvsegError, ConfigError
from avseg.loading import loading


@dataclass(frozen=True)
class ModelEntry:
    name: str
    method: str
    """The method (paper) it implements."""
    description: str
    """What it does and what it needs."""
    system: str
    """Import path of the system class: ``from_recipe(recipe, model=None, num_classes=2, cues=None)``."""
    config: str
    """Import path of the config class (the fields of a recipe's ``model_config``)."""
    model: str | None
    """Import path of the model class (``from_pretrained(folder)``); ``None``: nothing is trained or saved,
    the model is used by its name."""
    presets: tuple[str, ...] = ()
    converter: str | None = None
    """Import path of the function that turns official weights into a model (``avseg convert``)."""
    binary: bool = False
    """Segments the sounding objects as one binary mask (no semantic AVSS output)."""
    start_keys: tuple[str, ...] = ()
    """``model_config`` keys that name weights a new model starts from (hub names or folders), not config fields."""
    augmentations: tuple[str, ...] = ()
    """The values of ``data.augmentation`` besides ``none`` its training applies (:mod:`avseg.data.augmentation`)."""

    @property
    def trainable(self) -> bool:
        return self.model is not None

    @property
    def by_name(self) -> bool:
        """Used by its name, without a model folder (``avseg segment --model NAME``)."""
        return self.model is None

    def system_class(self) -> Any:
        return resolve(self.system)

    def config_class(self) -> Any:
        return resolve(self.config)

    def model_class(self) -> Any:
        if self.model is None:
            raise ConfigError(f"model: {self.name} is used by name; it has no trained model class")
        return resolve(self.model)

    def preset_config(self, preset: str, **fields: Any) -> Any:
        """The config of ``preset`` with ``fields`` set (a one-line error for an unknown preset)."""
        if preset not in self.presets:
            raise ConfigError(f"preset: unknown preset {preset!r} for {self.name} (use {', '.join(self.presets)})")
        config_class = self.config_class()
        make = config_class if preset == "paper" else getattr(config_class, preset.replace("-", "_"))
        return make(**fields)

    def info(self) -> dict[str, Any]:
        """The entry as plain data (what :func:`available_models` lists)."""
        return {
            "name": self.name,
            "method": self.method,
            "description": self.description,
            "trainable": self.trainable,
            "by_name": self.by_name,
            "presets": list(self.presets),
            "converter": self.converter is not None,
        }


def resolve(path: str) -> Any:
    """``"package.module:Class.attribute"`` -> the object."""
    module, _, attributes = path.partition(":")
    target = importlib.import_module(module)
    for attribute in attributes.split("."):
        target = getattr(target, attribute)
    return target


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="teso",
            method="TeSO (text-guided sounding-object segmentation)",
            description="captioner+LLM text cues, SeDAM audio-text fusion, PMQS queries on Mask2Former; "
            "needs text cues (avseg cues) and VGGish weights; S4, MS3, AVSS",
            system="avseg.models.teso.system:TeSOSystem",
            config="avseg.models.teso.model:TeSOConfig",
            model="avseg.models.teso.model:TeSO",
            presets=("paper", "tiny"),
        ),
        ModelEntry(
            name="av2t-sam",
            method="AV2T-SAM (EVF-SAM2: BEiT-3 + SAM 2)",
            description="audio mapped into BEiT-3's text-embedding space prompts SAM 2 (or SAM); needs CLAP audio "
            "and CLIP image encoders, starts from converted EVF-SAM2 weights; binary masks (S4, MS3, Ref-AVS)",
            system="avseg.models.av2t_sam.system:AV2TSAMSystem",
            config="avseg.models.av2t_sam.model:AV2TSAMConfig",
            model="avseg.models.av2t_sam.model:AV2TSAM",
            presets=("paper", "evf-sam", "tiny"),
            converter="avseg.models.av2t_sam.convert:convert",
            binary=True,
        ),
        ModelEntry(
            name="av2t-sam3",
            method="AV2T-SAM on SAM 3",
            description="the AV2T-SAM projector and adapters on SAM 3's text-prompted detector; needs CLAP audio "
            "and CLIP image encoders, starts from SAM 3 weights (avseg convert sam3); binary masks",
            system="avseg.models.av2t_sam.system:AV2TSAMSystem",
            config="avseg.models.av2t_sam.sam3:AV2TSAM3Config",
            model="avseg.models.av2t_sam.sam3:AV2TSAM3",
            presets=("paper", "tiny"),
            converter="avseg.models.av2t_sam.convert:convert",
            binary=True,
        ),
        ModelEntry(
            name="vct",
            method="VCT (Vision-Centric Transformer, CVPR 2025: two Swin-B + Mask2Former pixel decoder + vision-centric queries)",
            description="frames and their mask images through two Swin-B, VGGish audio tokens, prototype-prompted "
            "vision-derived queries in a decoder cycling audio/res5/res4/res3; loads the release's checkpoints (avseg "
            "convert vct); mask images published (COMBO's) or made by Semantic-SAM as the release makes them (avseg convert "
            "semantic-sam; SAM 2 as an approximate substitute); S4, MS3 (binary), AVSS",
            system="avseg.models.vct.system:VCTSystem",
            config="avseg.models.vct.model:VCTConfig",
            model="avseg.models.vct.model:VCT",
            presets=("paper", "s4", "ms3", "avss", "tiny"),
            converter="avseg.models.vct.convert:convert",
            augmentations=("mask2former",),
        ),
        ModelEntry(
            name="auralsam2",
            method="AuralSAM2 (SAM 2 Hiera-L prompted by the AuralFuser)",
            description="stereo VGGish and SAM 2's feature pyramid fused into prompts inside SAM 2's mask decoder, "
            "tracked with SAM 2's video memory; loads the release's checkpoints (avseg convert auralsam2); binary masks; "
            "presets refavs / tiny-refavs: the Ref-AVS variant (a frozen DistilRoBERTa reads the expression)",
            system="avseg.models.auralsam2.system:AuralSAM2System",
            config="avseg.models.auralsam2.model:AuralSAM2Config",
            model="avseg.models.auralsam2.model:AuralSAM2",
            presets=("paper", "tiny", "refavs", "tiny-refavs"),
            converter="avseg.models.auralsam2.convert:convert",
            binary=True,
            start_keys=("sam", "text"),
        ),
        ModelEntry(
            name="zeroshot-sam3",
            method="zero-shot: LAION CLAP + SAM 3",
            description="CLAP names the sounding classes from a vocabulary, SAM 3 segments them; no training; "
            "needs the CLAP and SAM 3 weights",
            system="avseg.models.zero_shot:ZeroShotSystem",
            config="avseg.models.zero_shot:ZeroShotConfig",
            model=None,
        ),
    )
}


def model_names() -> tuple[str, ...]:
    return tuple(MODELS)


def unknown_model_message(name: Any) -> str:
    return f"unknown model {name!r} (available: {', '.join(MODELS)})"


def model_entry(name: Any, where: str = "model") -> ModelEntry:
    """The table's entry for ``name``; otherwise a one-line :class:`ConfigError` starting with ``where``."""
    entry = MODELS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ConfigError(f"{where}: {unknown_model_message(name)}")
    return entry


def available_models() -> list[dict[str, Any]]:
    """Every model avseg knows, as data (what ``avseg models`` prints), one dict per name.

    ``kind: pretrained``: a name that loads as it is (``avseg.load_model(name)``, ``avseg segment --model
    name``), with its architecture (an entry of :data:`MODELS`), training data, needs, weights and published
    numbers (:mod:`avseg.hub.pretrained`). ``kind: architecture``: a model of the table that has no released
    weights under its own name; recipes train it (``name``, ``method``, ``description``, ``trainable``,
    ``by_name``, ``presets``, ``converter``)."""
    from avseg.hub.pretrained import pretrained_models

    rows = [{"kind": "pretrained", **row.info(), "architecture_info": MODELS[row.architecture].info()} for row in pretrained_models()]
    named = {row["name"] for row in rows}
    return rows + [{"kind": "architecture", **entry.info()} for entry in MODELS.values() if entry.name not in named]


def load_start(init: str | Path, settings: dict[str, Any], model_class: type, method: str) -> Any:
    """The model a recipe's ``model_config.init`` names (a converted or trained folder): the architecture comes from
    it, so any other ``model_config`` value (``settings``) is refused, and so is a folder of another model."""
    if settings:
        raise ConfigError(f"model_config: with init, the architecture comes from {init}; remove {', '.join(sorted(settings))}")
    model = load_model(init)
    if not isinstance(model, model_class):
        raise ConfigError(f"model_config.init: {init} holds {type(model).__name__}, not {method}")
    return model


def load_model(path: str | Path) -> Any:
    """Load a saved model folder (``config.json`` + ``model.safetensors``) strictly, as the class the
    model table names for its ``config.json``'s ``model`` (names and hub repos: :func:`avseg.models.registry.load_model`)."""
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise AvsegError(f"{config}: missing file (not a model folder)")
    try:
        name = json.loads(config.read_text()).get("model")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise AvsegError(f"{config}: not a valid model config") from None
    entry = MODELS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise AvsegError(f"{config}: model: {unknown_model_message(name)}")
    if entry.by_name:
        raise AvsegError(f"{config}: model: {name} is used by name, without a model folder")
    model_class = entry.model_class()
    with loading(folder, f"the {entry.name} model"):
        return model_class.from_pretrained(folder)


__all__ = ["MODELS", "ModelEntry", "load_model", "available_models", "model_entry", "model_names", "resolve"]
