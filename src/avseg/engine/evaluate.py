"""Evaluation: official metrics per audio condition, and the preference-drop table.

A *segmenter* is anything with ``predict(clips) -> list[Tensor]``: for each
clip, logits for its valid frames (binary ``(T, H, W)``, or per-class scores
``(T, C, H, W)`` for AVSS) at the clip's label size. Clips are scored in
batches of ``batch_clips`` (the official test batch is 4 clips) on their
annotated frames only, so AVSS padding frames never count (the official AVSS
script scores them; see :mod:`avseg.metrics`).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from avseg.data.clip import Clip
from avseg.errors import ConfigError
from avseg.data.perturb import NEGATIVE_CONDITIONS, NoiseBank, PerturbedClips, offscreen_donors, parse_perturbations
from avseg.metrics import BinaryAccumulator, NullAccumulator, SemanticAccumulator, preference_drop, robust_summary


class Segmenter(Protocol):
    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]: ...


def evaluate_clips(
    segmenter: Segmenter,
    clips: Sequence[Clip],
    batch_clips: int = 4,
    num_classes: int = 2,
    null: bool = False,
) -> dict[str, float]:
    """Official metrics of ``segmenter`` on ``clips``.

    Binary tasks report ``J``, ``F`` (official, per batch of ``batch_clips``)
    and ``F_batch_independent``; semantic tasks (``num_classes > 2``) report
    ``mIoU`` and ``F``; ``null=True`` (Ref-AVS null rows) reports ``S``.
    """
    binary = BinaryAccumulator(batch_size=batch_clips)
    semantic = SemanticAccumulator(num_classes) if num_classes > 2 else None
    null_s = NullAccumulator()
    for start in range(0, len(clips), batch_clips):
        batch = [clips[i] for i in range(start, min(start + batch_clips, len(clips)))]
        predictions = segmenter.predict(batch)
        logits, targets = [], []
        for clip, prediction in zip(batch, predictions):
            annotated = torch.from_numpy(clip.mask_valid[clip.frame_valid])
            logits.append(prediction[annotated])
            targets.append(torch.from_numpy(clip.masks[clip.frame_valid][annotated.numpy()]).long())
        logits, targets = torch.cat(logits), torch.cat(targets)
        if null:
            null_s.update(logits)
        elif semantic is not None:
            semantic.update(logits, targets)
        else:
            binary.update(logits, targets)
    if null:
        return null_s.compute()
    return semantic.compute() if semantic is not None else binary.compute()


def evaluate_preference(
    segmenter: Segmenter,
    clips: Sequence[Clip],
    perturbations: str | Sequence[str] = "mute,wgn10,wgn40,swap",
    seed: int = 0,
    **options,
) -> tuple[dict[str, dict[str, float]], list[dict[str, float | str]]]:
    """Metrics with normal audio and under each perturbation, and the relative-drop rows."""
    conditions = ["normal", *[p.name for p in parse_perturbations(perturbations) if p.name != "normal"]]
    views = {name: PerturbedClips(clips, name, seed) for name in conditions}  # a condition that cannot be built refuses here, first
    results = {name: evaluate_clips(segmenter, view, **options) for name, view in views.items()}
    return results, preference_drop(results)


def evaluate_robust(
    segmenter: Segmenter,
    clips: Sequence[Clip],
    seed: int = 0,
    noise: NoiseBank | None = None,
    positive: dict[str, float] | None = None,
    **options,
) -> dict:
    """AVSBench-Robust: J, F, FPR with the clips' own audio and under each negative condition, and the G-metrics.

    Under negative audio, J and F are still scored against the clips' own masks, as the
    official test does (its negative-audio configs keep ``dir_mask`` at ``gt_masks``); the
    FPR alone treats every predicted pixel as false.
    ``positive`` reuses an evaluation with normal audio already made. Off-screen audio needs
    the clips' categories (:func:`avseg.data.perturb.offscreen_donors`); where the reader
    gives none it is left out, and ``not_run`` says why: the G-metrics then average the
    conditions that ran, which the report states.
    """
    noise = noise or NoiseBank()
    not_run = robust_conditions_not_run(clips, seed, **options)
    conditions = {"positive": positive or evaluate_clips(segmenter, clips, **options)}
    for name in NEGATIVE_CONDITIONS:
        if name not in not_run:
            conditions[name] = evaluate_clips(segmenter, PerturbedClips(clips, name, seed, noise=noise), **options)
    negatives = {name: values for name, values in conditions.items() if name != "positive"}
    return {"conditions": conditions, **robust_summary(conditions["positive"], negatives), "not_run": not_run, "noise_sources": noise.names}


def robust_conditions_not_run(clips: Sequence[Clip], seed: int = 0, num_classes: int = 2, null: bool = False, **_) -> dict[str, str]:
    """The negative conditions that cannot run on ``clips``, with the reason; errors for what can never run.

    Called before any evaluation, so that a refused ``--robust`` costs nothing.
    """
    if num_classes > 2 or null:
        raise ConfigError("--robust scores binary masks (S4, MS3); AVSS and the Ref-AVS null split have no FPR defined")
    if offscreen_donors(clips, seed) is None:
        return {"offscreen": "the dataset's reader gives no clip category (clip.meta 'labels' or 'category')"}
    return {}
