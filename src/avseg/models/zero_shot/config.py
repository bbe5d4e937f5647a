"""Settings of ``zeroshot-sam3``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avseg.config import build_config
from avseg.errors import ConfigError
from avseg.models.zero_shot.clap_scorer import SOUND_TEMPLATE
from avseg.silence import SILENCE_GATE_DBFS, legacy_gate_setting


@dataclass
class ZeroShotConfig:
    """Settings of ``zeroshot-sam3``: a recipe's ``model_config``, or ``avseg segment``'s options."""

    clap_model: str = "laion/larger_clap_general"
    """LAION CLAP: a transformers ``ClapModel`` hub name or folder, with its feature extractor and tokenizer."""
    sam3_model: str = "facebook/sam3"
    """SAM 3: a transformers ``Sam3Model`` hub name or folder, with its tokenizer."""
    vocabulary: str | None = None
    """See :func:`load_vocabulary`. None: ``s4`` on S4 and MS3, ``avss`` elsewhere. AVSS evaluation always
    uses the dataset's own classes, so its semantic maps index them."""
    template: str = SOUND_TEMPLATE
    silence_gate_dbfs: float | None = SILENCE_GATE_DBFS
    """The silence gate (:mod:`avseg.silence`): seconds at or below this level prompt nothing and run neither
    model; None: no gate (every second is heard). ``silence_db``, its older name, is read as this."""
    min_probability: float = 0.25
    max_prompts: int = 3
    query_threshold: float = 0.5

    def __post_init__(self) -> None:
        if "{}" not in self.template:
            raise ConfigError(f"template: {self.template!r} has no {{}} for the sound")
        if not 0 < self.min_probability <= 1:
            raise ConfigError(f"min_probability: must lie in (0, 1], got {self.min_probability}")
        if self.max_prompts < 1:
            raise ConfigError(f"max_prompts: must be at least 1, got {self.max_prompts}")
        if not 0 <= self.query_threshold < 1:
            raise ConfigError(f"query_threshold: must lie in [0, 1), got {self.query_threshold}")


def zero_shot_config(settings: dict[str, Any], where: str = "zero-shot settings: ") -> ZeroShotConfig:
    """A :class:`ZeroShotConfig` from a mapping; unknown keys and wrong types are one-line errors."""
    return build_config(ZeroShotConfig, legacy_gate_setting(settings) if isinstance(settings, dict) else settings, where)
