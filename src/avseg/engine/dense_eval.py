"""J and F over every frame: ``avseg segment`` results against the synthetic every-frame ground truth.

Predictions are the folders ``avseg segment`` writes, ``OUT/<clip id>/`` (the
video ``videos/<clip id>.mp4`` of a dataset written with ``avseg synth
--fps``), holding ``masks/00000.png, ...`` (non-zero is foreground). A folder
with one mask per video frame is scored frame by frame; one with a mask per
second (``--rate 1``, AVSBench's sampling) is scored as its overlay shows it:
the mask of second ``l`` held over every frame of that second. Any other
count is an error naming the folder.

The scores are :mod:`avseg.metrics`' official ones, over every frame of every
clip, with each hard mask taken as logits of +inf / -inf:

* ``J``: the mean over all frames of AVSBench's per-frame Jaccard
  (:func:`~avseg.metrics.official_j`; a frame with empty ground truth scores
  the fraction of pixels the prediction leaves empty);
* ``F``: AVSBench's F-measure (beta^2 = 0.3) with the batch-independent
  aggregation: the maximum over thresholds of the F curve averaged over all
  frames with non-empty ground truth (:func:`~avseg.metrics.f_curves`). On a
  hard mask every threshold above 0 gives the mask's own F; threshold 0
  counts every pixel as foreground, so F is never below the F of "everything".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from avseg.data.dense import load_dense_truth, read_dense_masks
from avseg.data.files import read_binary_mask
from avseg.engine import rle
from avseg.errors import DatasetError
from avseg.metrics import F_THRESHOLDS, f_curves, official_j


def read_predicted_masks(folder: Path) -> np.ndarray:
    """bool ``(masks, H, W)`` of one ``avseg segment`` result folder (PNG masks or ``masks.jsonl``)."""
    if (folder / "masks.jsonl").is_file():
        return _read_rle_lines(folder / "masks.jsonl")
    paths = sorted((folder / "masks").glob("*.png"))
    if not paths:
        raise DatasetError(folder / "masks", "no predicted masks (expected 00000.png, ... or masks.jsonl as avseg segment writes)")
    return np.stack([read_binary_mask(path) > 0 for path in paths])


def _read_rle_lines(path: Path) -> np.ndarray:
    """The masks of ``masks.jsonl`` in the order of their numbers: ``mask`` (``frame`` in files written before
    the mask's number had a name of its own, when ``frame`` meant it)."""
    masks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            key = "mask" if "mask" in entry else "frame"
            if entry[key] != len(masks):
                raise ValueError(f"{key} {entry[key]} where {key} {len(masks)} was expected")
            masks.append(rle.decode(entry))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(path, f"line {number}: not a COCO-RLE mask line ({exc})") from None
    if not masks:
        raise DatasetError(path, "no predicted masks")
    return np.stack(masks)


def per_frame(predicted: np.ndarray, frames: int, fps: int, folder: Path) -> np.ndarray:
    """One prediction per ground-truth frame: as given, or each mask held over the frames of its interval."""
    if frames % len(predicted) == 0 and fps * len(predicted) % frames == 0:
        return predicted[np.arange(frames) * len(predicted) // frames]
    raise DatasetError(folder, f"{len(predicted)} masks for a video of {frames} frames at {fps} fps (expected N per second for a rate N that divides {fps})")


def hard_logits(masks: np.ndarray) -> torch.Tensor:
    return torch.where(torch.from_numpy(masks), torch.tensor(float("inf")), torch.tensor(float("-inf")))


def evaluate_dense(predictions: str | Path, truth_root: str | Path, clip_ids: Iterable[str] | None = None) -> dict[str, float]:
    """``{"J", "F", "frames", "clips"}`` of the result folders under ``predictions`` (see the module doc).

    ``clip_ids``: which clips of ``truth_root``'s ``dense_truth.json`` to score (default: all).
    """
    truth = load_dense_truth(truth_root)
    ids = list(truth["clips"]) if clip_ids is None else list(clip_ids)
    j_sum, frames_total, curve_frames = 0.0, 0, 0
    curve_sum = torch.zeros(F_THRESHOLDS, dtype=torch.float64)
    for clip_id in ids:
        if clip_id not in truth["clips"]:
            raise DatasetError(Path(truth_root) / "dense_truth.json", f"no clip {clip_id!r}")
        frames = truth["clips"][clip_id]["frames"]
        gt = torch.from_numpy(read_dense_masks(truth_root, clip_id, frames))
        folder = Path(predictions) / clip_id
        predicted = per_frame(read_predicted_masks(folder), frames, truth["fps"], folder)
        if predicted.shape[1:] != tuple(gt.shape[1:]):
            raise DatasetError(folder, f"masks of {predicted.shape[2]}x{predicted.shape[1]} pixels for ground truth of {gt.shape[2]}x{gt.shape[1]}")
        logits = hard_logits(predicted)
        j_sum += official_j(logits, gt) * frames
        clip_curve, counted = f_curves(logits, gt)
        curve_sum += clip_curve
        curve_frames += counted
        frames_total += frames
    if not frames_total:
        raise DatasetError(Path(truth_root), "no clips to evaluate")
    f = float((curve_sum / curve_frames).max()) if curve_frames else 0.0
    return {"J": j_sum / frames_total, "F": f, "frames": frames_total, "clips": len(ids)}
