"""``zeroshot-sam3`` for the registry: loading CLAP and SAM 3 and building the segmenter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avseg.config import Recipe
from avseg.errors import AvsegError, ConfigError
from avseg.loading import load_pretrained, loading
from avseg.models.zero_shot.clap_scorer import ClapScorer
from avseg.models.zero_shot.config import ZeroShotConfig, zero_shot_config
from avseg.models.zero_shot.sam3_prompter import Sam3Prompter
from avseg.models.zero_shot.segmenter import ZeroShotSegmenter
from avseg.models.zero_shot.vocabulary import Category, load_vocabulary

MODEL_NAME = "zeroshot-sam3"


class ZeroShotSystem:
    """``zeroshot-sam3`` for the registry: CLAP and SAM 3, frozen; nothing to train."""

    def __init__(self, clap: ClapScorer, sam3: Sam3Prompter, vocabulary: Sequence[Category], config: ZeroShotConfig, semantic: bool):
        self.model = nn.ModuleDict({"clap": clap, "sam3": sam3})
        self.vocabulary = tuple(vocabulary)
        self.config = config
        self.semantic = semantic

    @property
    def sample_rate(self) -> int:
        """The audio rate CLAP hears (clips at another rate are resampled)."""
        return self.model["clap"].sample_rate

    @classmethod
    def from_models(
        cls,
        clap: nn.Module,
        clap_features: Any,
        clap_tokenizer: Any,
        sam3: nn.Module,
        sam3_tokenizer: Any,
        config: ZeroShotConfig,
        vocabulary: Sequence[Category],
        semantic: bool = False,
    ) -> ZeroShotSystem:
        """From loaded transformers models (``ClapModel``, ``Sam3Model``), their processors and a vocabulary."""
        scorer = ClapScorer(clap, clap_features, clap_tokenizer, [c.sound for c in vocabulary], config.template)
        prompter = Sam3Prompter(sam3, sam3_tokenizer, [c.visual for c in vocabulary], config.query_threshold)
        return cls(scorer, prompter, vocabulary, config, semantic)

    @classmethod
    def from_pretrained(cls, config: ZeroShotConfig, class_names: Sequence[str] | None = None, default_vocabulary: str = "avss") -> ZeroShotSystem:
        """CLAP and SAM 3 from ``config``'s hub names or folders (loaded strictly).

        With ``class_names`` (a semantic task's classes, background first) the output is a semantic map over
        them; otherwise binary, over ``config.vocabulary`` (``default_vocabulary`` if unset).
        """
        from transformers import (
            AutoTokenizer,
            ClapFeatureExtractor,
            ClapModel,
            Sam3Model,
        )
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # keep the CLI's output to our own lines
        if class_names is not None and config.vocabulary is not None:
            raise ConfigError("vocabulary: a semantic task is scored on the dataset's own classes; leave vocabulary unset")
        if class_names is not None:
            vocabulary = tuple(Category.from_class_name(name) for name in class_names[1:])
        else:
            vocabulary = load_vocabulary(config.vocabulary or default_vocabulary)
        return cls.from_models(
            clap=_load_model(ClapModel, config.clap_model, "CLAP"),
            clap_features=_load(ClapFeatureExtractor.from_pretrained, config.clap_model, "CLAP's feature extractor"),
            clap_tokenizer=_load(AutoTokenizer.from_pretrained, config.clap_model, "CLAP's tokenizer"),
            sam3=_load_model(Sam3Model, config.sam3_model, "SAM 3"),
            sam3_tokenizer=_load(AutoTokenizer.from_pretrained, config.sam3_model, "SAM 3's tokenizer"),
            config=config,
            vocabulary=vocabulary,
            semantic=class_names is not None,
        )

    @classmethod
    def from_recipe(cls, recipe: Recipe, num_classes: int = 2) -> ZeroShotSystem:
        """From a recipe's ``model_config``; a semantic task (``num_classes > 2``: AVSS) is scored on the
        classes of the recipe's dataset (its ``label2idx.json``)."""
        from avseg.data.avsbench import AVSS, read_class_names

        config = zero_shot_config(recipe.model_config, f"{recipe.source or 'recipe'}: model_config")
        class_names = None
        if num_classes > 2:
            class_names = read_class_names(AVSS.resolve_root(Path(recipe.data.root)) / AVSS.label_file)
        return cls.from_pretrained(config, class_names, "s4" if recipe.data.layout in ("s4", "ms3") else "avss")

    def with_vocabulary(self, spec: str) -> ZeroShotSystem:
        """The same CLAP and SAM 3 listening for and prompting another vocabulary (:func:`load_vocabulary`'s
        ``spec``): a ``--list`` line's own."""
        if self.semantic:
            raise ConfigError("vocabulary: a semantic task is scored on the dataset's own classes")
        vocabulary = load_vocabulary(spec)
        clap, sam3 = self.model["clap"], self.model["sam3"]
        return ZeroShotSystem(clap.with_sounds([c.sound for c in vocabulary]), sam3.with_prompts([c.visual for c in vocabulary]), vocabulary, self.config, self.semantic)

    def task(self, clips: Sequence[Clip], batch_clips: int, seed: int) -> Any:
        raise ConfigError(f"{MODEL_NAME} has nothing to train; evaluate it with avseg evaluate RECIPE")

    def segmenter(self, device: str | torch.device = "cpu") -> ZeroShotSegmenter:
        return ZeroShotSegmenter(self.model["clap"], self.model["sam3"], self.vocabulary, self.config, self.semantic, device)


def _load(load: Callable[[str], Any], name: str, what: str) -> Any:
    """``load(name)`` quietly, with a one-line error when it cannot be found or read."""
    with loading(name, what):
        return load(name)


def _load_model(model_class: Any, name: str, what: str) -> nn.Module:
    """A transformers model, refusing weights that leave any of its parameters uninitialised."""
    with loading(name, what):
        return load_pretrained(model_class, name, what).eval()
