"""Semantic-SAM's automatic mask generator (the release's ``tasks/automatic_mask_generator.py``,
``SemanticSamAutomaticMaskGenerator``, and ``utils/sam_utils/amg.py``), at the settings VCT's release builds it with
(``avs_tools/pre_mask/make_SAM_mask.py``: ``SemanticSamAutomaticMaskGenerator(model, level=[3])``, defaults otherwise).

Per frame (``(H, W, 3)`` RGB, the raw frame: the 640 resize of ``prepare_image`` is commented out there)::

    features     = the model's image features, once
    clicks       = a 32 x 32 grid, ((i + 0.5) / 32, (j + 0.5) / 32), x fastest, in batches of 200
    per batch:     masks, iou = one mask per click at granularity level 3 (mask token 0, the release's
                   ``prompt_switch``), upsampled to the frame
                   keep iou > 0.88; keep stability(logits, offset 1) >= 0.92; binarise at 0; boxes
    keep         = box NMS at 0.7 over all batches, by predicted IoU
    each mask    : fill holes and drop islands smaller than 10 pixels (8-connected); a changed mask scores 0,
                   an unchanged one 1; box NMS at 0.7 again by that score; the changed masks that stay are replaced
    result       = the masks, in that NMS's order

Differences from the release, none changing its result: no crops (``crop_n_layers=0`` gives one crop, the whole
frame, so the crop-edge filter and the crop NMS do nothing, and the release asserts one crop), masks are kept as
arrays instead of run-length codes (lossless both ways), and small regions are found with ``scipy.ndimage.label``
(8-connected) instead of OpenCV's ``connectedComponentsWithStats``: both number components in raster order, which the
one order-dependent step (keep the largest island when all are small, the first on a tie) needs. NMS is torchvision's
CPU ``nms`` (a stable sort of the scores, then greedy suppression above the threshold), which matters for the ties of
the 0/1 scores of the second NMS.

Release behaviour kept: see :mod:`avseg.models.semantic_sam.decoder` (clicks of a batch attend to each other, so the
batch size of 200 is part of the result).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from avseg.errors import AvsegError
from avseg.models.semantic_sam.model import SemanticSam
from avseg.models.vct.mask_images import box_nms, boxes_of, colour, paint

PROMPT_LEVELS = {1: 3, 2: 2, 3: 0, 4: 4, 5: 1, 6: 5}
"""The release's ``prompt_switch``: a granularity ``level`` (1..6) -> its mask token."""


def point_grid(per_side: int) -> torch.Tensor:
    """``build_point_grid``: ``(per_side ** 2, 2)`` x, y cell centres in [0, 1], x varying fastest (float64 -> float32,
    as the release's ``torch.tensor(points, dtype=torch.float)``)."""
    side = np.linspace(1 / (2 * per_side), 1 - 1 / (2 * per_side), per_side)
    grid = np.stack([np.tile(side[None, :], (per_side, 1)), np.tile(side[:, None], (1, per_side))], -1).reshape(-1, 2)
    return torch.tensor(grid, dtype=torch.float)


def stability_scores(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """``calculate_stability_score`` at threshold 0: IoU of the masks at ``+offset`` and ``-offset`` (0 / 0 is NaN,
    which no threshold keeps). Counted in int32 throughout: the release sums each row in int16 first, which overflows
    for frames wider than 32767 pixels (a release bug, harmless at video sizes, not reproduced)."""
    high = (logits > offset).flatten(1).sum(-1, dtype=torch.int32)
    low = (logits > -offset).flatten(1).sum(-1, dtype=torch.int32)
    return high / low


def without_small_regions(mask: np.ndarray, area: int, mode: str) -> tuple[np.ndarray, bool]:
    """``remove_small_regions``: fill the holes (``mode="holes"``) or drop the islands (``"islands"``) smaller than
    ``area`` pixels, 8-connected; every island small: the largest (the first in raster order on a tie) stays."""
    fill_holes = mode == "holes"
    regions, count = ndimage.label(fill_holes ^ mask, structure=np.ones((3, 3), dtype=int))
    sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    small = [label + 1 for label, size in enumerate(sizes) if size < area]
    if not small:
        return mask, False
    fill = [0, *small]
    if not fill_holes:
        fill = [label for label in range(count + 1) if label not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


class SemanticSamMaskGenerator:
    """The release's generator on a :class:`SemanticSam`; :meth:`masks` gives what its ``generate`` segments."""

    faithful = True
    """Its masks are the release's (VCT's outputs made with them are not approximate)."""

    def __init__(
        self,
        model: SemanticSam,
        name: str,
        levels: tuple[int, ...] = (3,),
        points_per_side: int = 32,
        points_per_batch: int = 200,
        device: str | torch.device = "cpu",
    ):
        unknown = [level for level in levels if level not in PROMPT_LEVELS]
        if unknown or not levels:
            raise AvsegError(f"semantic-sam: granularity levels are 1..6, got {list(levels)}")
        self.model = model.eval().to(device)
        self.name = name
        self.granularity = [PROMPT_LEVELS[level] for level in levels]
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.device = device
        self.pred_iou_thresh, self.stability_thresh, self.stability_offset = 0.88, 0.92, 1.0
        self.nms_thresh, self.min_region_area = 0.7, 10

    @torch.no_grad()
    def masks(self, frame: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB -> binary ``(M, H, W)`` masks, in the release's order. Always in fp32, as the release
        runs (its thresholds on IoU scores and logits are not meant for bf16), whatever autocast the caller set."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise AvsegError(f"semantic-sam: a frame is (H, W, 3) RGB, got shape {frame.shape}")
        with torch.autocast(torch.device(self.device).type, enabled=False):
            return self.fp32_masks(frame)

    def fp32_masks(self, frame: np.ndarray) -> np.ndarray:
        features = self.model.image_features(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).to(self.device))
        grid = point_grid(self.points_per_side).to(self.device)
        kept_masks, kept_scores = [], []
        for start in range(0, len(grid), self.points_per_batch):
            logits, iou_scores = self.model.predict(features, grid[start : start + self.points_per_batch], self.granularity)
            iou_scores = iou_scores.flatten()
            keep = iou_scores > self.pred_iou_thresh
            logits, iou_scores = logits[keep], iou_scores[keep]
            keep = stability_scores(logits, self.stability_offset) >= self.stability_thresh
            kept_masks.append((logits[keep] > 0).cpu())
            kept_scores.append(iou_scores[keep].float().cpu())
        masks, scores = torch.cat(kept_masks), torch.cat(kept_scores)
        masks = masks[box_nms(boxes_of(masks), scores, self.nms_thresh)].numpy()
        return self.without_small_regions(masks)

    def without_small_regions(self, masks: np.ndarray) -> np.ndarray:
        """``postprocess_small_regions``: clean each mask, then NMS preferring the masks that needed no cleaning."""
        if len(masks) == 0:
            return masks
        cleaned, unchanged = [], []
        for mask in masks:
            mask, holes = without_small_regions(mask, self.min_region_area, "holes")
            mask, islands = without_small_regions(mask, self.min_region_area, "islands")
            cleaned.append(mask)
            unchanged.append(float(not (holes or islands)))
        cleaned_masks = torch.from_numpy(np.stack(cleaned))
        keep = box_nms(boxes_of(cleaned_masks), torch.tensor(unchanged), self.nms_thresh)
        return cleaned_masks[keep].numpy()

    def mask_image(self, frame: np.ndarray, size: int) -> np.ndarray:
        masks = self.masks(frame)
        ids = paint(masks) if len(masks) else np.zeros(frame.shape[:2], dtype=np.uint8)
        return colour(ids, size)
