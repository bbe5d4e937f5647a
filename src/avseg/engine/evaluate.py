"""Evaluation: official metrics per audio condition, and the preference-drop table.

A *segmenter* is anything with ``predict(clips) -> list[Tensor]``: for each
clip, logits for its valid frames (binary ``(T, H, W)``, or per-class scores
``(T, C, H, W)`` for AVSS) at the clip's label size. Clips are scored in
batches of ``batch_clips`` (the official test batch is 4 clips) on their
annotated frames only, so AVSS padding frames never count (the official AVSS
script scores them; see :mod:`avseg.metrics`).

A segmenter with a silence gate (:class:`avseg.silence.SilenceGated`) is scored
under muted audio both with and without its gate, from one pass of the network
(the gate is a mask on its output): the ``mute`` row follows the segmenter's
``silence_gate`` switch like every other row, and ``mute (gate off)`` (or
``mute (gate on)`` when the switch is off) sits beside it. The gate empties
every muted frame, so the gated mute row measures the rule; the ungated one
measures what the network learned. (The zero-shot model skips its models on
gated seconds, so its ungated pass runs them on every muted second.)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from avseg.data.clip import Clip
from avseg.data.perturb import (
    NEGATIVE_CONDITIONS,
    NoiseBank,
    PerturbedClips,
    offscreen_donors,
    parse_perturbations,
)
from avseg.engine.distributed import Ranks
from avseg.errors import ConfigError
from avseg.metrics import (
    BinaryAccumulator,
    NullAccumulator,
    SemanticAccumulator,
    preference_drop,
    robust_summary,
)
from avseg.silence import SilenceGated, gate_logits


class Segmenter(Protocol):
    def predict(self, clips: Sequence[Clip]) -> list[torch.Tensor]: ...


def evaluate_clips(
    segmenter: Segmenter,
    clips: Sequence[Clip],
    batch_clips: int = 4,
    num_classes: int = 2,
    null: bool = False,
    ranks: Ranks = Ranks(),
) -> dict[str, float]:
    """Official metrics of ``segmenter`` on ``clips``.

    Binary tasks report ``J``, ``F`` (official, per batch of ``batch_clips``)
    and ``F_batch_independent``; semantic tasks (``num_classes > 2``) report
    ``mIoU``, ``F`` and their per-class values; ``null=True`` (Ref-AVS null rows) reports ``S``.
    ``ranks``: the processes that share the batches (see :func:`_evaluate`); every one gets the result.
    """
    return _evaluate(lambda batch: [segmenter.predict(batch)], clips, 1, batch_clips, num_classes, null, ranks)[0]


def evaluate_with_and_without_gate(segmenter: SilenceGated, clips: Sequence[Clip], **options) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`evaluate_clips` with the segmenter's silence gate on and off, from one pass of its network."""

    def both(batch: list[Clip]) -> list[list[torch.Tensor]]:
        logits, silent = segmenter.predict_ungated(batch)
        return [[gate_logits(clip_logits, clip_silent) for clip_logits, clip_silent in zip(logits, silent)], logits]

    gated, ungated = _evaluate(both, clips, 2, **options)
    return gated, ungated


def _evaluate(
    predict, clips: Sequence[Clip], outputs: int, batch_clips: int = 4, num_classes: int = 2, null: bool = False, ranks: Ranks = Ranks()
) -> list[dict[str, float]]:
    """Metrics of each of the ``outputs`` predictions that ``predict(batch)`` returns per batch of clips.

    Under torchrun each process scores whole official batches (batch ``b`` goes to rank ``b % world``), so
    every batch holds the clips it holds in one process, and the per-batch J and F (which depend on the
    batch's composition) are the same values; the accumulators' sums are then added up over the processes.
    The result equals one process's up to the order of float64 additions. ``clips`` is the whole split in
    every process: perturbations that pair clips (swap, off-screen) pair them over the whole split.
    """
    scores = [_Scores(batch_clips, num_classes, null) for _ in range(outputs)]
    for index, start in enumerate(range(0, len(clips), batch_clips)):
        if not ranks.takes(index):
            continue
        batch = [clips[i] for i in range(start, min(start + batch_clips, len(clips)))]
        for score, predictions in zip(scores, predict(batch)):
            logits, targets = [], []
            for clip, prediction in zip(batch, predictions):
                annotated = torch.from_numpy(clip.mask_valid[clip.frame_valid])
                logits.append(prediction[annotated])
                targets.append(torch.from_numpy(clip.masks[clip.frame_valid][annotated.numpy()]).long())
            score.update(torch.cat(logits), torch.cat(targets))
    for score in scores:
        score.accumulator.add_across(ranks.sum)
    return [score.compute() for score in scores]


class _Scores:
    """The accumulator that fits the task: null S, the AVSS metrics or binary J/F."""

    def __init__(self, batch_clips: int, num_classes: int, null: bool):
        if null:
            self.accumulator, self.with_targets = NullAccumulator(), False
        elif num_classes > 2:
            self.accumulator, self.with_targets = SemanticAccumulator(num_classes), True
        else:
            self.accumulator, self.with_targets = BinaryAccumulator(batch_size=batch_clips), True

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        if self.with_targets:
            self.accumulator.update(logits, targets)
        else:
            self.accumulator.update(logits)

    def compute(self) -> dict[str, float]:
        return self.accumulator.compute()


def evaluate_preference(
    segmenter: Segmenter,
    clips: Sequence[Clip],
    perturbations: str | Sequence[str] = "mute,wgn10,wgn40,swap",
    seed: int = 0,
    **options,
) -> tuple[dict[str, dict[str, float]], list[dict[str, float | str]]]:
    """Metrics with normal audio and under each perturbation, and the relative-drop rows (with a silence
    gate, muted audio is scored with the gate on and off: see the module docstring)."""
    conditions = ["normal", *[p.name for p in parse_perturbations(perturbations) if p.name != "normal"]]
    gated = getattr(segmenter, "silence_gate_dbfs", None) is not None  # a SilenceGated segmenter, or one wrapped for precision
    results = {}
    views = {name: PerturbedClips(clips, name, seed) for name in conditions}  # a condition that cannot be built refuses here, first
    for name, perturbed in views.items():
        if name == "mute" and gated:
            with_gate, without_gate = evaluate_with_and_without_gate(segmenter, perturbed, **options)
            on = segmenter.silence_gate
            results["mute"] = with_gate if on else without_gate
            results["mute (gate off)" if on else "mute (gate on)"] = without_gate if on else with_gate
        else:
            results[name] = evaluate_clips(segmenter, perturbed, **options)
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
    conditions that ran, which the report states. ``offscreen_unmatched`` names the clips
    that no clip of another category could pair (see :func:`~avseg.data.perturb.offscreen_donors`).
    """
    noise = noise or NoiseBank()
    not_run = robust_conditions_not_run(clips, seed, **options)
    conditions = {"positive": positive or evaluate_clips(segmenter, clips, **options)}
    unmatched = []
    for name in NEGATIVE_CONDITIONS:
        if name not in not_run:
            view = PerturbedClips(clips, name, seed, noise=noise)
            conditions[name] = evaluate_clips(segmenter, view, **options)
            unmatched += [clips[k].id for k in view.unmatched]
    negatives = {name: values for name, values in conditions.items() if name != "positive"}
    summary = robust_summary(conditions["positive"], negatives)
    return {"conditions": conditions, **summary, "not_run": not_run, "noise_sources": noise.names, "offscreen_unmatched": unmatched}


def robust_conditions_not_run(clips: Sequence[Clip], seed: int = 0, num_classes: int = 2, null: bool = False, **_) -> dict[str, str]:
    """The negative conditions that cannot run on ``clips``, with the reason; errors for what can never run.

    Called before any evaluation, so that a refused ``--robust`` costs nothing.
    """
    if num_classes > 2 or null:
        raise ConfigError("--robust scores binary masks (S4, MS3); AVSS and the Ref-AVS null split have no FPR defined")
    if offscreen_donors(clips, seed) is None:
        return {"offscreen": "the dataset's reader names no sounding category (clip.meta 'sounding_labels' or 'category')"}
    return {}
