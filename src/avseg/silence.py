"""The silence gate: a rule, outside the networks, that empties the masks of silent seconds.

TeSO (its dynamic mask: "with silent audio every cue is masked and the mask
comes out empty") and the zero-shot model (which skips CLAP and SAM 3 on
silence) share it. It is a *rule*, not something a network learned, so it is
visible and switchable: each model's config has ``silence_gate_dbfs`` (the
threshold, -60 dBFS by default; None turns the gate off), ``avseg evaluate
--no-silence-gate`` evaluates the network alone, and the report names the gate.

The gate is applied after the network, as a mask on its output
(:func:`gate_logits`): the network runs the same way with the gate on or off,
and only the frames of silent seconds change. So one pass of the network gives
both the gated and the ungated result.

**The level** of a second is measured robustly (:func:`robust_level_db`): the
90th percentile of the RMS levels, in dBFS, of its non-overlapping 25 ms
frames (VGGish's STFT window). Whole-second RMS is fooled by codec leakage:
in an AAC track, a digitally silent second between loud ones decodes with
pre-echo at its edges, and its whole-second RMS measured -46 dBFS here (44.1
kHz AAC, noise at -9 dBFS around it; -48.8 dBFS in an earlier measurement),
above any sensible threshold. That leakage covers well under 10% of the
second (tens of milliseconds), so the 90th percentile ignores it, while any
sound that fills more than 10% of the second (100 ms: a word, a bark, a note)
keeps its level. A sound shorter than 100 ms in an otherwise silent second
counts as silent: the price of ignoring the leakage.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from avseg.audio import second_windows
from avseg.data.clip import Clip

SILENCE_GATE_DBFS = -60.0
"""The default threshold (avseg's choice, from TeSO's dynamic mask design): a second at or below it is silent."""
LEVEL_FRAME_SECONDS = 0.025
LEVEL_PERCENTILE = 90.0
DIGITAL_SILENCE_DBFS = -200.0
"""The level of all-zero audio (``20 log10(1e-10)``)."""
EMPTY_LOGIT = -100.0
"""What a gated frame's logits become: certain background."""


def robust_level_db(waveform: np.ndarray, sample_rate: int, num_seconds: int) -> np.ndarray:
    """Per 1-s window (:func:`~avseg.audio.second_windows`): the 90th percentile of its 25 ms frame levels, dBFS.

    Returns float64 ``(num_seconds,)``; digital silence is -200.
    """
    windows = second_windows(waveform, sample_rate, num_seconds).astype(np.float64)
    frame = max(1, int(round(sample_rate * LEVEL_FRAME_SECONDS)))
    count = max(1, sample_rate // frame)
    frames = windows[:, : count * frame].reshape(num_seconds, count, frame)
    levels = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=2)) + 1e-10)
    return np.percentile(levels, LEVEL_PERCENTILE, axis=1)


def silent_seconds(levels_db: np.ndarray, gate_dbfs: float | None) -> np.ndarray:
    """True where a second is silent (level at or below ``gate_dbfs``); all False when the gate is off (None)."""
    levels_db = np.asarray(levels_db)
    return np.zeros(levels_db.shape, dtype=bool) if gate_dbfs is None else levels_db <= gate_dbfs


def gate_logits(logits: torch.Tensor, silent: torch.Tensor) -> torch.Tensor:
    """``logits`` ``(T, H, W)`` or ``(T, C, H, W)`` with the frames where ``silent`` ``(T,)`` is True emptied.

    Binary frames become ``EMPTY_LOGIT`` everywhere; per-class frames become background (class 0 at 0,
    every other class at ``EMPTY_LOGIT``), so their argmax is background.
    """
    silent = torch.as_tensor(silent, dtype=torch.bool, device=logits.device)
    if not silent.any():
        return logits
    empty = torch.full_like(logits[:1], EMPTY_LOGIT)
    if logits.ndim == 4:
        empty[:, 0] = 0.0
    return torch.where(silent.view(-1, *[1] * (logits.ndim - 1)), empty, logits)


def describe_gate(gate_dbfs: float | None, on: bool = True) -> str:
    """``"silence gate: -60 dBFS, on"``, ``"silence gate: -60 dBFS, off"`` (switched off for an evaluation),
    or ``"silence gate: none"`` (the model has none). For reports."""
    if gate_dbfs is None:
        return "silence gate: none"
    return f"silence gate: {gate_dbfs:g} dBFS, {'on' if on else 'off'}"


LEGACY_KEY = "silence_db"


def legacy_gate_setting(values: dict) -> dict:
    """A model config written before the gate had its name: ``silence_db`` (the same level rule) becomes
    ``silence_gate_dbfs``, so an older saved model or recipe keeps its gate on at its level."""
    if LEGACY_KEY not in values:
        return values
    values = dict(values)
    values.setdefault("silence_gate_dbfs", values.pop(LEGACY_KEY))
    values.pop(LEGACY_KEY, None)
    return values


class SilenceGated:
    """What a segmenter with a silence gate adds (TeSO's, the zero-shot model's).

    Subclasses set ``silence_gate_dbfs`` (the model's level) and implement :meth:`predict_ungated`.
    ``silence_gate`` switches the gate for this segmenter (``avseg evaluate --no-silence-gate``).
    """

    silence_gate_dbfs: float | None = None
    silence_gate: bool = True

    def predict_ungated(self, clips: Sequence[Clip]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Per clip: the network's logits for its valid frames, and which of those frames the gate would empty."""
        raise NotImplementedError

    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]:
        logits, silent = self.predict_ungated(clips)
        if not self.silence_gate:
            return logits
        return [gate_logits(clip_logits, clip_silent) for clip_logits, clip_silent in zip(logits, silent)]

    def silent_frames(self, clip: Clip, levels_db: np.ndarray | None = None) -> np.ndarray:
        """bool over ``clip``'s valid frames: at or below the model's gate level (all False without a gate)."""
        if levels_db is None:
            levels_db = robust_level_db(clip.waveform, clip.sample_rate, clip.num_frames)
        return silent_seconds(np.asarray(levels_db)[clip.frame_valid], self.silence_gate_dbfs)
