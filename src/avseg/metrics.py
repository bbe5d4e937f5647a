"""AVS metrics, numerically equal to the official AVSBench / Ref-AVS code.

Binary AVS (S4, MS3, AVSS-binary):

* :func:`official_j` is AVSBench's ``mask_iou``: ``sigmoid(P) > 0.5``; IoU =
  ``|p & g| / (|p | g| + 1e-7)``; a frame with empty ground truth scores the
  fraction of pixels the prediction leaves empty; the batch value is the mean
  over its frames.
* :func:`official_f` is AVSBench's ``Eval_Fmeasure``: on ``sigmoid(P)`` with
  255 thresholds ``linspace(0, 1 - 1e-10, 255)`` (float32, so the last one is
  exactly 1.0) and ``>=``; ``beta^2 = 0.3``; only frames with non-empty ground
  truth count; their F curves are averaged and the **maximum over thresholds
  is taken per batch**. A batch without any non-empty frame scores 0.
* :class:`BinaryAccumulator` averages those per-batch values over batches as
  the official test loop does (official test batch: 4 clips), and also keeps a
  batch-independent F: the maximum of the F curve averaged over *all* frames
  of the split. The official F depends on the batch size; the batch-independent
  one does not. Reports label both.

Semantic AVS (AVSS, 71 classes): :class:`SemanticAccumulator` follows
AVSBench-semantic's per-frame, per-class histograms. Per frame and class,
``IoU = I / (U + 2.220446049250313e-16)`` and
``F = 1.3 P R / (0.3 P + R)`` with NaN taken as 0 are summed over frames, and
a class's counter grows on frames where its union is non-empty. The result is
the mean over classes of ``sum / count``, classes never seen counting 0; each
class's value is reported too. The official code crashes here (it unpacks
three values from a function that returns four); this implementation has no
such path.

AVSBench-Robust (Li et al., arXiv 2502.00358; code ``jiali-home/AVSBench-Robust``
at commit 03e925d): :func:`false_positive_rate` and :func:`robust_summary`, see
their docstrings for the formulas and where each comes from.
:class:`BinaryAccumulator` sums the FPR of every batch it sees, so one pass
gives J, F and FPR from the same predictions.

Ref-AVS null subset: :func:`null_s` is ``sqrt(mean(sigmoid(P) > 0.5))`` over
the pixels of one batch, averaged over batches by :class:`NullAccumulator`;
lower is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

F_BETA2 = 0.3
F_THRESHOLDS = 255
J_EPS = 1e-7
F_EPS = 1e-20
SEMANTIC_EPS = 2.220446049250313e-16


def _binary_batch(logits: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits)
    gt = torch.as_tensor(gt)
    if logits.ndim != 3 or logits.shape != gt.shape:
        raise ValueError(f"expected logits and gt of equal shape (N,H,W), got {tuple(logits.shape)} and {tuple(gt.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    logits = logits.detach().float().cpu()
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN")
    gt = gt.detach().cpu()
    if ((gt != 0) & (gt != 1)).any():
        raise ValueError("gt must be a binary mask with values 0 and 1")
    return logits, gt.bool()


def official_j(logits: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> float:
    """AVSBench ``mask_iou`` of one batch of ``(N,H,W)`` logits and binary ground truth.

    ``threshold`` applies to ``sigmoid(logits)``: 0.5 in AVSBench; the Ref-AVS
    code uses the same formula with 0.4.
    """
    logits, gt = _binary_batch(logits, gt)
    pred = torch.sigmoid(logits) > threshold
    num_pixels = gt.shape[1] * gt.shape[2]
    intersection = (pred & gt).sum((1, 2)).double()
    union = (pred | gt).sum((1, 2)).double()
    empty = gt.sum((1, 2)) == 0
    intersection[empty] = (~pred[empty]).sum((1, 2)).double()
    union[empty] = float(num_pixels)
    return float((intersection / (union + J_EPS)).mean())


def f_curves(logits: torch.Tensor, gt: torch.Tensor, num_thresholds: int = F_THRESHOLDS) -> tuple[torch.Tensor, int]:
    """Per-threshold F summed over the frames with non-empty ground truth.

    Returns ``(curve_sum float64 (num_thresholds,), num_frames_counted)``.
    Counting pixels ``>= threshold`` by binary search over the sorted
    probabilities gives exactly the official per-threshold comparison.
    """
    logits, gt = _binary_batch(logits, gt)
    thresholds = torch.linspace(0, 1 - 1e-10, num_thresholds)  # float32, as the official code
    prob = torch.sigmoid(logits).flatten(1)
    gt = gt.flatten(1)
    keep = gt.any(1)
    curve_sum = torch.zeros(num_thresholds, dtype=torch.float64)
    for frame_prob, frame_gt in zip(prob[keep], gt[keep]):
        all_sorted = frame_prob.sort().values
        fg_sorted = frame_prob[frame_gt].sort().values
        predicted = (len(all_sorted) - torch.searchsorted(all_sorted, thresholds, side="left")).double()
        true_pos = (len(fg_sorted) - torch.searchsorted(fg_sorted, thresholds, side="left")).double()
        precision = true_pos / (predicted + F_EPS)
        recall = true_pos / (len(fg_sorted) + F_EPS)
        f = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall)
        curve_sum += torch.nan_to_num(f, nan=0.0)
    return curve_sum, int(keep.sum())


def official_f(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """AVSBench ``Eval_Fmeasure`` of one batch: max over thresholds of the mean F curve."""
    curve_sum, count = f_curves(logits, gt)
    return float((curve_sum / count).max()) if count else 0.0


def false_positive_rate(logits: torch.Tensor) -> torch.Tensor:
    """AVSBench-Robust FPR of each frame: the fraction of its pixels with ``sigmoid(P) > 0.5``.

    Source: ``training_evaluation/code/AVSegFormer/scripts/s4/test.py`` lines 15-43
    (``calculate_FPR``; ``scripts/ms3/test.py`` is identical), which the
    repository's README names as the FPR's definition:
    ``FPR_n = sum(sigmoid(P_n) > 0.5) / (H*W + 1e-7)``, pixel-level, on every
    frame of a clip played with negative audio (where every predicted pixel is a
    false positive, so the ground-truth mask is not used). The ``1e-7`` shifts
    the value by under 1e-11 at 224x224 and is left out here. Lower is better.
    """
    logits = torch.as_tensor(logits).detach().float()
    if logits.ndim != 3:
        raise ValueError(f"expected logits (N,H,W), got {tuple(logits.shape)}")
    return (torch.sigmoid(logits) > 0.5).double().mean((1, 2))


def harmonic_mean(a: float, b: float) -> float:
    """``2ab / (a + b)``, and 0 where both are 0."""
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def robust_summary(positive: Mapping[str, float], negatives: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """AVSBench-Robust's G-metrics from positive-audio J/F and the FPR under each negative condition.

    * ``G-FPR = mean_c FPR_c`` over the negative conditions ``c`` (silence,
      noise, off-screen sound).
    * ``G-mIoU = 2 * J * (1 - G-FPR) / (J + 1 - G-FPR)``, the harmonic mean of
      the positive-audio mIoU and the negative-audio rejection ``1 - FPR``.
    * ``G-F = 2 * F * (1 - G-FPR) / (F + 1 - G-FPR)``, likewise with F.

    Source, and what is avseg's reading: the official repository computes only
    FPR in code; its README says "The G-mIoU, G-F and G-FPR metrics are
    manually aggregated and calculated based on the exported results, using
    Excel" (README.md, section "5. Test"), and the paper's metric section could
    not be read from this project's sources. The names (a G- value for FPR as
    well as for mIoU and F), the paper's abstract (a single score for
    "segmentation quality" and "false positive" suppression) and issue 13 ("combine
    positive-audio quality with negative-audio rejection") fix what is combined;
    the harmonic mean (as for F1) and the plain mean over conditions are
    avseg's choices, to be replaced by the paper's formula where it differs.
    ``G-F_batch_independent`` uses ``F_batch_independent`` and
    ``FPR_batch_independent`` instead of the official per-batch values.
    """
    if not negatives:
        raise ValueError("G-metrics need at least one negative-audio condition")
    fpr = float(np.mean([values["FPR"] for values in negatives.values()]))
    fpr_independent = float(np.mean([values["FPR_batch_independent"] for values in negatives.values()]))
    return {
        "G-mIoU": harmonic_mean(float(positive["J"]), 1 - fpr),
        "G-F": harmonic_mean(float(positive["F"]), 1 - fpr),
        "G-FPR": fpr,
        "G-F_batch_independent": harmonic_mean(float(positive["F_batch_independent"]), 1 - fpr_independent),
    }


def null_s(logits: torch.Tensor) -> float:
    """Ref-AVS null metric ``sqrt(mean(sigmoid(P) > 0.5))`` over all pixels given."""
    logits = torch.as_tensor(logits).detach().float()
    if logits.numel() == 0:
        raise ValueError("null_s needs at least one pixel")
    return float(torch.sqrt((torch.sigmoid(logits) > 0.5).double().mean()))


class Sums:
    """Accumulators hold sums and counts only, so that processes that each score some of the batches give, once
    their sums are added up (:meth:`add_across`), exactly what one process scoring every batch gives (up to the
    order of float64 additions: about 1e-16 relative)."""

    def add_across(self, total) -> None:
        """Replace the sums by ``total(sums)``: the sum over processes of a float64 vector
        (:meth:`avseg.engine.distributed.Ranks.sum`)."""
        self._set_sums(total(self._sums()))

    def _sums(self) -> torch.Tensor:
        raise NotImplementedError

    def _set_sums(self, sums: torch.Tensor) -> None:
        raise NotImplementedError


@dataclass
class BinaryAccumulator(Sums):
    """Accumulates binary AVS metrics batch by batch, as the official test loop does.

    ``J`` and ``F`` are the means of the per-batch official values; they are
    only comparable between runs with the same batch composition
    (``batch_size`` clips per batch is recorded for the label).
    ``F_batch_independent`` is the max of the F curve averaged over every
    counted frame of the split. ``FPR`` is AVSBench-Robust's
    (:func:`false_positive_rate`) averaged as its test loop does (per batch,
    then over batches: ``AverageMeter`` in ``utils/pyutils.py``);
    ``FPR_batch_independent`` is the mean over all frames (the two differ only
    when the last batch is smaller).
    """

    batch_size: int | None = None
    num_batches: int = 0
    j_sum: float = 0.0
    """Per-batch values summed over batches; their mean is the official value."""
    f_sum: float = 0.0
    fpr_batch_sum: float = 0.0
    curve_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(F_THRESHOLDS, dtype=torch.float64))
    curve_frames: int = 0
    num_frames: int = 0
    fpr_sum: float = 0.0

    def update(self, logits: torch.Tensor, gt: torch.Tensor) -> None:
        self.j_sum += official_j(logits, gt)
        fpr = false_positive_rate(logits)
        self.fpr_batch_sum += float(fpr.mean())
        self.fpr_sum += float(fpr.sum())
        curve_sum, count = f_curves(logits, gt)
        self.f_sum += float((curve_sum / count).max()) if count else 0.0
        self.curve_sum += curve_sum
        self.curve_frames += count
        self.num_frames += len(gt)
        self.num_batches += 1

    def compute(self) -> dict[str, float]:
        if not self.num_batches:
            raise ValueError("no batches were accumulated")
        independent = float((self.curve_sum / self.curve_frames).max()) if self.curve_frames else 0.0
        return {
            "J": self.j_sum / self.num_batches,
            "F": self.f_sum / self.num_batches,
            "F_batch_independent": independent,
            "FPR": self.fpr_batch_sum / self.num_batches,
            "FPR_batch_independent": self.fpr_sum / self.num_frames,
            "num_batches": self.num_batches,
            "num_frames": self.num_frames,
        }

    def _sums(self) -> torch.Tensor:
        scalars = [self.num_batches, self.j_sum, self.f_sum, self.fpr_batch_sum, self.curve_frames, self.num_frames, self.fpr_sum]
        return torch.cat([torch.tensor(scalars, dtype=torch.float64), self.curve_sum])

    def _set_sums(self, sums: torch.Tensor) -> None:
        batches, self.j_sum, self.f_sum, self.fpr_batch_sum, curve_frames, frames, self.fpr_sum = sums[:7].tolist()
        self.num_batches, self.curve_frames, self.num_frames = int(batches), int(curve_frames), int(frames)
        self.curve_sum = sums[7:].clone()


@dataclass
class SemanticAccumulator(Sums):
    """AVSBench-semantic per-class mIoU and F over ``num_classes`` (background included)."""

    num_classes: int = 71
    beta2: float = F_BETA2
    iou_sum: torch.Tensor = field(init=False)
    f_sum: torch.Tensor = field(init=False)
    count: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.iou_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self.f_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self.count = torch.zeros(self.num_classes, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add frames: ``prediction`` is logits ``(N,C,H,W)`` or class indices ``(N,H,W)``."""
        prediction = torch.as_tensor(prediction).detach().cpu()
        target = torch.as_tensor(target).detach().cpu().long()
        if prediction.ndim == 4:
            if prediction.shape[1] != self.num_classes:
                raise ValueError(f"expected {self.num_classes} class logits, got {prediction.shape[1]}")
            if not torch.isfinite(prediction).all():
                raise ValueError("logits contain NaN or infinite values")
            # argmax of the float32 softmax, as the official code: where rounding makes the
            # top two probabilities equal, the lower class index wins.
            prediction = torch.softmax(prediction.float(), dim=1).argmax(1)
        prediction = prediction.long()
        if prediction.shape != target.shape or target.ndim != 3:
            raise ValueError(f"expected prediction and target (N,H,W), got {tuple(prediction.shape)} and {tuple(target.shape)}")
        if target.min() < 0 or target.max() >= self.num_classes or prediction.min() < 0 or prediction.max() >= self.num_classes:
            raise ValueError(f"class indices must lie in [0, {self.num_classes})")
        for pred, label in zip(prediction.flatten(1), target.flatten(1)):
            area_pred = torch.bincount(pred, minlength=self.num_classes).double()
            area_label = torch.bincount(label, minlength=self.num_classes).double()
            intersection = torch.bincount(pred[pred == label], minlength=self.num_classes).double()
            union = area_pred + area_label - intersection
            self.iou_sum += intersection / (union + SEMANTIC_EPS)
            self.count += (union > 0).double()
            precision = intersection / area_pred
            recall = intersection / area_label
            f = (1 + self.beta2) * precision * recall / (self.beta2 * precision + recall)
            self.f_sum += torch.nan_to_num(f, nan=0.0)

    def per_class(self) -> dict[str, torch.Tensor]:
        seen = self.count > 0
        safe = self.count.clamp(min=1)
        return {
            "iou": torch.where(seen, self.iou_sum / safe, torch.zeros_like(self.iou_sum)),
            "f": torch.where(seen, self.f_sum / safe, torch.zeros_like(self.f_sum)),
        }

    def compute(self) -> dict[str, float | list[float]]:
        """``mIoU`` and ``F`` (means over classes), and each class's ``IoU_per_class`` / ``F_per_class`` (by
        class index, background first)."""
        per_class = self.per_class()
        return {
            "mIoU": float(per_class["iou"].mean()),
            "F": float(per_class["f"].mean()),
            "IoU_per_class": per_class["iou"].tolist(),
            "F_per_class": per_class["f"].tolist(),
        }

    def _sums(self) -> torch.Tensor:
        return torch.cat([self.iou_sum, self.f_sum, self.count])

    def _set_sums(self, sums: torch.Tensor) -> None:
        self.iou_sum, self.f_sum, self.count = (part.clone() for part in sums.split(self.num_classes))


@dataclass
class NullAccumulator(Sums):
    """Ref-AVS null S.

    ``S`` is the official value: :func:`null_s` per batch (the official
    evaluation batch is 4 expressions x 10 frames), averaged over batches.
    ``S_batch_independent`` pools every pixel of every frame instead.
    """

    num_batches: int = 0
    s_sum: float = 0.0
    positive: int = 0
    total: int = 0

    def update(self, logits: torch.Tensor) -> None:
        logits = torch.as_tensor(logits).detach().float()
        self.s_sum += null_s(logits)
        self.num_batches += 1
        self.positive += int((torch.sigmoid(logits) > 0.5).sum())
        self.total += logits.numel()

    def compute(self) -> dict[str, float]:
        if not self.num_batches:
            raise ValueError("no batches were accumulated")
        return {"S": self.s_sum / self.num_batches, "S_batch_independent": float(np.sqrt(self.positive / self.total))}

    def _sums(self) -> torch.Tensor:
        return torch.tensor([self.num_batches, self.s_sum, self.positive, self.total], dtype=torch.float64)

    def _set_sums(self, sums: torch.Tensor) -> None:
        batches, self.s_sum, positive, total = sums.tolist()
        self.num_batches, self.positive, self.total = int(batches), int(positive), int(total)


HIGHER_IS_BETTER = {
    "J": True,
    "F": True,
    "F_batch_independent": True,
    "mIoU": True,
    "S": False,
    "S_batch_independent": False,
}


def preference_drop(
    results: Mapping[str, Mapping[str, float]],
    baseline: str = "normal",
    metrics: Sequence[str] | None = None,
) -> list[dict[str, float | str | None]]:
    """Rows of metric values per audio condition with the relative drop from ``baseline``.

    ``drop = (baseline - value) / baseline`` for metrics where higher is
    better, so a model that follows the sound shows a *large* drop when the
    audio is muted or swapped. For lower-is-better metrics (null S) the sign
    is flipped, so a positive drop still means "worse than with real audio".
    Where the baseline value is 0 the drop is undefined: it is ``None`` (JSON
    ``null``, never NaN) and ``<metric>_drop_reason`` says why.
    """
    if baseline not in results:
        raise ValueError(f"the baseline condition {baseline!r} is missing from the results")
    reference = results[baseline]
    names = list(metrics) if metrics is not None else [k for k in reference if k in HIGHER_IS_BETTER]
    rows = []
    for condition, values in results.items():
        row: dict[str, float | str | None] = {"condition": condition}
        for name in names:
            value, base = float(values[name]), float(reference[name])
            row[name] = value
            sign = 1.0 if HIGHER_IS_BETTER.get(name, True) else -1.0
            if base != 0:
                row[f"{name}_drop"] = sign * (base - value) / base
            else:
                row[f"{name}_drop"] = None
                row[f"{name}_drop_reason"] = f"{name} under {baseline} audio is 0; relative drop undefined"
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, float | str | None]]) -> str:
    """A Markdown table of dict rows (floats to 4 decimals, drops as percentages, ``None`` as n/a).

    ``*_reason`` columns (why a value is undefined) stay in the JSON report, out of the table.
    """
    if not rows:
        return ""
    columns = [column for column in rows[0] if not column.endswith("_reason")]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if value is None:
                cells.append("n/a")
            elif isinstance(value, float):
                cells.append(f"{100 * value:+.1f}%" if column.endswith("_drop") else f"{value:.4f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
