"""Per second: gate on the level, let CLAP choose the classes, let SAM 3 segment them, combine the maps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from avseg.audio import resample, second_windows
from avseg.data.clip import Clip
from avseg.models.zero_shot.clap_scorer import ClapScorer
from avseg.models.zero_shot.config import ZeroShotConfig
from avseg.models.zero_shot.sam3_prompter import EMPTY_LOGIT, Sam3Prompter
from avseg.models.zero_shot.vocabulary import Category
from avseg.silence import SilenceGated, robust_level_db, silent_seconds


@dataclass
class Heard:
    """What the audio of one second decided: its level, CLAP's probabilities (None if gated), the prompts."""

    level_db: float
    probabilities: torch.Tensor | None
    prompted: list[int]


class ZeroShotSegmenter(SilenceGated):
    """Clips in, per-frame logits out (binary ``(T, H, W)``, or ``(T, 1 + V, H, W)`` when ``semantic``).

    With the gate on, silent seconds are skipped (no model runs), which gives exactly what the gate's mask
    on the ungated output gives (:func:`avseg.silence.gate_logits`: ``EMPTY_LOGIT``, background at 0).
    """

    def __init__(
        self,
        clap: ClapScorer,
        sam3: Sam3Prompter,
        vocabulary: Sequence[Category],
        config: ZeroShotConfig,
        semantic: bool = False,
        device: str | torch.device = "cpu",
    ):
        self.clap = clap.to(device)
        self.sam3 = sam3.to(device)
        self.vocabulary = tuple(vocabulary)
        self.config = config
        self.semantic = semantic
        self.silence_gate_dbfs = config.silence_gate_dbfs

    def hear(self, clip: Clip, gated: bool = True) -> list[Heard]:
        """Gate (if ``gated``), score and choose the prompts of every second of ``clip`` (CLAP runs on the
        seconds the gate lets through only)."""
        levels = robust_level_db(clip.waveform, clip.sample_rate, clip.num_frames)
        sounding = np.flatnonzero(~silent_seconds(levels, self.silence_gate_dbfs if gated else None))
        probabilities: dict[int, torch.Tensor] = {}
        if len(sounding):
            rate = self.clap.sample_rate
            windows = second_windows(resample(clip.waveform, clip.sample_rate, rate), rate, clip.num_frames)
            probabilities = dict(zip(sounding.tolist(), self.clap.probabilities(windows[sounding])))
        return [Heard(float(level), probabilities.get(t), self.choose(probabilities.get(t))) for t, level in enumerate(levels)]

    def choose(self, probabilities: torch.Tensor | None) -> list[int]:
        """The classes to prompt: probability >= ``min_probability``, the ``max_prompts`` most probable."""
        if probabilities is None:
            return []
        top = probabilities.topk(min(self.config.max_prompts, len(probabilities)))
        return [int(c) for p, c in zip(top.values, top.indices) if p >= self.config.min_probability]

    @torch.no_grad()
    def predict_with_details(
        self, clips: Sequence[Clip], gated: bool | None = None
    ) -> tuple[list[torch.Tensor], list[list[dict[str, Any]]]]:
        """Logits of each clip's valid frames at its label size, and per frame :meth:`describe`'s fields;
        gated as ``silence_gate`` says unless ``gated`` is given."""
        logits, details = [], []
        for clip in clips:
            heard = self.hear(clip, self.silence_gate if gated is None else gated)
            size = tuple(clip.masks.shape[1:] if clip.masks is not None else clip.frames.shape[1:3])
            frames = np.flatnonzero(clip.frame_valid)
            logits.append(torch.stack([self.frame_logits(clip.frames[t], heard[t].prompted, size) for t in frames]))
            details.append([self.describe(heard[t]) for t in frames])
        return logits, details

    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        return self.predict_with_details(clips)[0]

    def predict_ungated(self, clips: Sequence[Clip]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        return self.predict_with_details(clips, gated=False)[0], [self.silent_frames(clip) for clip in clips]

    def frame_logits(self, frame: np.ndarray, prompted: list[int], size: tuple[int, int]) -> torch.Tensor:
        """One frame's binary ``(H, W)`` or per-class ``(1 + V, H, W)`` logits (see the module docstring)."""
        maps = torch.empty(0, *size)
        if prompted:
            maps = F.interpolate(self.sam3.class_logits(frame, prompted)[None].float(), size=size, mode="bilinear", align_corners=False)
            maps = maps[0].cpu()
        if not self.semantic:
            return torch.cat([maps, torch.full((1, *size), EMPTY_LOGIT)]).amax(0)
        logits = torch.full((1 + len(self.vocabulary), *size), EMPTY_LOGIT)
        logits[0] = 0.0
        logits[[1 + c for c in prompted]] = maps
        return logits

    def describe(self, heard: Heard) -> dict[str, Any]:
        """``avseg segment``'s summary fields: ``sounding_score`` (CLAP's top class probability, 0 when the
        gate closed), the top class, the prompted class names and the level in dBFS."""
        probabilities = heard.probabilities
        return {
            "sounding_score": float(probabilities.max()) if probabilities is not None else 0.0,
            "top_class": self.vocabulary[int(probabilities.argmax())].name if probabilities is not None else None,
            "prompts": [self.vocabulary[c].name for c in heard.prompted],
            "level_db": round(heard.level_db, 1),
        }
