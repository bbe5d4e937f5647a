"""The mask image: a colour picture of a frame's class-agnostic masks, the second Swin's input.

**How the release makes it** (``avs_tools/pre_mask`` and ``pre_mask2rgb/mask_precess_*.py``, COMBO's tools): Semantic-SAM
(Swin-L) proposes class-agnostic masks offline; they are sorted by area, smallest first, and painted into one id map
where each pixel takes the id (1, 2, ...) of the smallest mask covering it and 0 where none does; the id map becomes a
palette PNG with ADE20K's 150 colours (id 0 is ADE's first colour, grey 120) at the frame's resolution
(``mask_precess_ss.py``, AVSBench-semantic's frames, which VCT's ``generate_data_384`` reads for S4, MS3 and AVSS alike),
then resized to 384 x 384 (nearest, ``resize_img``). The model reads it as RGB, normalised like the frame. (COMBO's
own S4 PNGs, ``mask_precess_s4.py``, are resized to 224 first; VCT does not read those.)

**In avseg.** Where a dataset holds the published mask images (COMBO's, on the hub as YannQi/COMBO-AVS-checkpoints,
unpacked in COMBO's layout, see :func:`avseg.data.avsbench.mask_image_files`), they are read as they are
(``clip.meta["mask_image_files"]``).
For any other video avseg makes them itself, by default with **the release's generator**: Semantic-SAM's
automatic mask generator, ported faithfully (:mod:`avseg.models.semantic_sam`, the released Swin-L
``swinl_only_sam_many2many.pth``, ``level=[3]`` as ``make_SAM_mask.py`` builds it), painted as the release paints;
those outputs are not approximate. ``mask_generator`` in VCT's config picks the generator (:func:`avseg.models.vct.inputs.mask_generator`):
``semantic-sam-l`` (default) or ``semantic-sam-t``, a converted Semantic-SAM folder or an official ``.pth``; anything
else is a transformers SAM 2 (hub name or folder) run as a **substitute** (:class:`Sam2MaskGenerator`, the SAM 2
release's ``SAM2AutomaticMaskGenerator`` defaults: a 32 x 32 point grid, three masks a point, predicted IoU > 0.8,
stability > 0.95, box NMS at 0.7, no crops). SAM 2's masks are not Semantic-SAM's (fewer, larger parts, no
granularity levels), so every output made with them is marked approximate. :func:`describe` names the generator
either way.

An id above 149 has no ADE colour; PIL's palette image shows it black (0, 0, 0), as the release's PNGs would.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from avseg.errors import AvsegError

PUBLISHED = "published (COMBO's Semantic-SAM mask images from the dataset)"


def ade_palette() -> np.ndarray:
    """ADE20K's 150 colours, ``(150, 3)`` uint8, in the release's order (``mask_precess_s4.py``'s ``ade_palette``)."""
    return np.array(ADE_PALETTE, dtype=np.uint8).reshape(-1, 3)


def paint(masks: np.ndarray) -> np.ndarray:
    """Binary masks ``(M, H, W)`` -> the release's id map ``(H, W)``: smallest mask first, each pixel the id of the
    smallest mask covering it (ids from 1), 0 where none does; ids wrap at 256, as the release's uint8 map does.
    Masks of equal area keep their order (a stable sort): the release's ``np.argsort`` is numpy's introsort, whose
    order of equal areas is not defined (it differs across numpy versions once there are more than 16 masks)."""
    ids = np.zeros(masks.shape[1:], dtype=np.int64)
    order = np.argsort(masks.reshape(len(masks), -1).sum(1), kind="stable")
    for rank, index in enumerate(order):
        ids = np.where((ids == 0) & masks[index].astype(bool), rank + 1, ids)
    return (ids % 256).astype(np.uint8)


def colour(ids: np.ndarray, size: int) -> np.ndarray:
    """An id map at the frame's resolution -> the ``(size, size, 3)`` uint8 mask image: ADE colours, nearest to ``size``
    (``resize_img(384, mask, is_mask=True)``)."""
    image = Image.fromarray(ids, mode="P")
    image.putpalette(ade_palette().flatten().tolist())
    return np.asarray(image.resize((size, size), Image.NEAREST).convert("RGB"))


def read_published(files: list[str], size: int) -> np.ndarray:
    """The published mask images of a clip's frames -> ``(T, size, size, 3)`` uint8 (RGB, nearest to ``size``)."""
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("RGB")
                images.append(np.asarray(image if image.size == (size, size) else image.resize((size, size), Image.NEAREST)))
        except OSError as exc:
            raise AvsegError(f"{file}: unreadable mask image ({exc})") from None
    return np.stack(images)


def describe(generator: str | None) -> dict[str, object]:
    """What outputs record about their mask images (``summary.json`` rows, ``report.json``): ``generator`` is the
    ``mask_generator`` that made them (None: published)."""
    from avseg.models.semantic_sam.convert import is_semantic_sam

    if generator is None:
        return {"mask_images": PUBLISHED, "approximate": False}
    if is_semantic_sam(generator):
        return {"mask_images": f"generated by Semantic-SAM's automatic mask generator ({generator}, level 3), the release's generator", "approximate": False}
    return {
        "mask_images": f"generated by SAM 2 automatic mask generation ({generator}), a substitute for the release's Semantic-SAM",
        "approximate": True,
    }


class RememberedMaskImages:
    """A mask generator that remembers the mask images it made, by the frame's content: a mask image depends on the
    frame alone, and ``evaluate --perturb/--robust`` runs every clip once per audio condition (up to 6 times), the
    app once with and once without audio. Generating is the expensive part (Semantic-SAM Swin-L: tens of seconds a
    frame on a CPU), so each frame is generated once.

    Images are kept zlib-compressed (a mask image is flat regions: a 384 x 384 one takes a few KB) in
    least-recently-used order up to ``budget_bytes``; a corpus run, where no frame repeats, holds at most that much."""

    def __init__(self, generator, budget_bytes: int = 256 * 2**20):
        self.generator = generator
        self.name = generator.name
        self.budget_bytes = budget_bytes
        self.held_bytes = 0
        self.images: OrderedDict[bytes, tuple[bytes, tuple[int, ...]]] = OrderedDict()
        self.made = self.reused = 0

    def mask_image(self, frame: np.ndarray, size: int) -> np.ndarray:
        digest = hashlib.blake2b(repr((frame.shape, frame.dtype.str, size)).encode(), digest_size=20)
        digest.update(np.ascontiguousarray(frame).data)
        key = digest.digest()
        if key in self.images:
            self.images.move_to_end(key)
            self.reused += 1
            packed, shape = self.images[key]
            return np.frombuffer(zlib.decompress(packed), dtype=np.uint8).reshape(shape)
        image = self.generator.mask_image(frame, size)
        self.made += 1
        packed = zlib.compress(image.tobytes(), 1)
        self.images[key] = (packed, image.shape)
        self.held_bytes += len(packed)
        while self.held_bytes > self.budget_bytes and self.images:
            self.held_bytes -= len(self.images.popitem(last=False)[1][0])
        return image


class Sam2MaskGenerator:
    """SAM 2's automatic mask generation on transformers' ``Sam2Model`` (the SAM 2 release's defaults, no crops)."""

    faithful = False

    def __init__(self, name_or_folder: str, points_per_side: int = 32, points_per_batch: int = 64, device: str | torch.device = "cpu"):
        from transformers import Sam2Model

        from avseg.hub.locations import hub_cache_dir
        from avseg.loading import load_pretrained, loading

        what = "SAM 2 (the mask-image generator)"
        with loading(name_or_folder, what):
            self.model = load_pretrained(Sam2Model, name_or_folder, what, cache_dir=str(hub_cache_dir())).eval().to(device)
        self.name = name_or_folder
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.device = device
        self.pred_iou_thresh, self.stability_thresh, self.stability_offset, self.nms_thresh = 0.8, 0.95, 1.0, 0.7

    @torch.no_grad()
    def masks(self, frame: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W, 3)`` -> binary ``(M, H, W)`` masks kept by the filters and NMS, best first."""
        from avseg.models.av2t_sam.inputs import sam_pixels

        size = self.model.config.prompt_encoder_config.image_size
        height, width = frame.shape[:2]
        pixels = sam_pixels(torch.from_numpy(frame)[None], size).to(self.device)
        embeddings = self.model.get_image_embeddings(pixels)
        side = (torch.arange(self.points_per_side, dtype=torch.float32) + 0.5) / self.points_per_side * size
        grid = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
        kept_masks, kept_scores = [], []
        for start in range(0, len(grid), self.points_per_batch):
            points = grid[start : start + self.points_per_batch].to(self.device)
            output = self.model(
                image_embeddings=embeddings,
                input_points=points[None, :, None, :],
                input_labels=torch.ones(1, len(points), 1, dtype=torch.long, device=self.device),
                multimask_output=True,
            )
            logits = output.pred_masks[0].flatten(0, 1).float()  # (P*3, h, w)
            scores = output.iou_scores[0].flatten().float()
            logits = F.interpolate(logits[:, None], (height, width), mode="bilinear", align_corners=False)[:, 0]
            keep = (scores > self.pred_iou_thresh) & (stability(logits, self.stability_offset) > self.stability_thresh)
            kept_masks.append((logits[keep] > 0).cpu())
            kept_scores.append(scores[keep].cpu())
        masks, scores = torch.cat(kept_masks), torch.cat(kept_scores)
        nonempty = masks.flatten(1).any(1)
        masks, scores = masks[nonempty], scores[nonempty]
        order = box_nms(boxes_of(masks), scores, self.nms_thresh)
        return masks[order].numpy()

    def mask_image(self, frame: np.ndarray, size: int) -> np.ndarray:
        masks = self.masks(frame)
        ids = paint(masks) if len(masks) else np.zeros(frame.shape[:2], dtype=np.uint8)
        return colour(ids, size)


def stability(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """SAM's stability score: IoU of the masks thresholded at ``+offset`` and ``-offset``."""
    high = (logits > offset).flatten(1).sum(-1).float()
    low = (logits > -offset).flatten(1).sum(-1).float()
    return high / low.clamp(min=1)


def boxes_of(masks: torch.Tensor) -> torch.Tensor:
    """``(M, H, W)`` bool -> ``(M, 4)`` x0, y0, x1, y1 boxes (inclusive), as SAM's ``batched_mask_to_box``."""
    if len(masks) == 0:
        return torch.zeros(0, 4)
    rows, cols = masks.any(2), masks.any(1)
    height, width = masks.shape[1:]
    y = torch.arange(height)[None].expand(len(masks), -1)
    x = torch.arange(width)[None].expand(len(masks), -1)
    y0 = torch.where(rows, y, height).min(1).values
    y1 = torch.where(rows, y, -1).max(1).values
    x0 = torch.where(cols, x, width).min(1).values
    x1 = torch.where(cols, x, -1).max(1).values
    return torch.stack([x0, y0, x1, y1], 1).float()


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (torchvision's CPU ``nms``: a stable sort of the scores, so ties keep their
    order): indices kept, by decreasing score."""
    order = scores.sort(stable=True, descending=True).indices
    kept: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for index in order.tolist():
        if kept:
            other = boxes[kept]
            top_left = torch.maximum(other[:, :2], boxes[index, :2])
            bottom_right = torch.minimum(other[:, 2:], boxes[index, 2:])
            inter = (bottom_right - top_left).clamp(min=0).prod(1)
            iou = inter / (areas[kept] + areas[index] - inter).clamp(min=1e-9)
            if (iou > threshold).any():
                continue
        kept.append(index)
    return torch.tensor(kept, dtype=torch.long)


ADE_PALETTE = [
    120, 120, 120, 180, 120, 120, 6, 230, 230, 80, 50, 50, 4, 200, 3, 120, 120, 80, 140, 140, 140, 204, 5, 255,
    230, 230, 230, 4, 250, 7, 224, 5, 255, 235, 255, 7, 150, 5, 61, 120, 120, 70, 8, 255, 51, 255, 6, 82,
    143, 255, 140, 204, 255, 4, 255, 51, 7, 204, 70, 3, 0, 102, 200, 61, 230, 250, 255, 6, 51, 11, 102, 255,
    255, 7, 71, 255, 9, 224, 9, 7, 230, 220, 220, 220, 255, 9, 92, 112, 9, 255, 8, 255, 214, 7, 255, 224,
    255, 184, 6, 10, 255, 71, 255, 41, 10, 7, 255, 255, 224, 255, 8, 102, 8, 255, 255, 61, 6, 255, 194, 7,
    255, 122, 8, 0, 255, 20, 255, 8, 41, 255, 5, 153, 6, 51, 255, 235, 12, 255, 160, 150, 20, 0, 163, 255,
    140, 140, 140, 250, 10, 15, 20, 255, 0, 31, 255, 0, 255, 31, 0, 255, 224, 0, 153, 255, 0, 0, 0, 255,
    255, 71, 0, 0, 235, 255, 0, 173, 255, 31, 0, 255, 11, 200, 200, 255, 82, 0, 0, 255, 245, 0, 61, 255,
    0, 255, 112, 0, 255, 133, 255, 0, 0, 255, 163, 0, 255, 102, 0, 194, 255, 0, 0, 143, 255, 51, 255, 0,
    0, 82, 255, 0, 255, 41, 0, 255, 173, 10, 0, 255, 173, 255, 0, 0, 255, 153, 255, 92, 0, 255, 0, 255,
    255, 0, 245, 255, 0, 102, 255, 173, 0, 255, 0, 20, 255, 184, 184, 0, 31, 255, 0, 255, 61, 0, 71, 255,
    255, 0, 204, 0, 255, 194, 0, 255, 82, 0, 10, 255, 0, 112, 255, 51, 0, 255, 0, 194, 255, 0, 122, 255,
    0, 255, 163, 255, 153, 0, 0, 255, 10, 255, 112, 0, 143, 255, 0, 82, 0, 255, 163, 255, 0, 255, 235, 0,
    8, 184, 170, 133, 0, 255, 0, 255, 92, 184, 0, 255, 255, 0, 31, 0, 184, 255, 0, 214, 255, 255, 0, 112,
    92, 255, 0, 0, 224, 255, 112, 224, 255, 70, 184, 160, 163, 0, 255, 153, 0, 255, 71, 255, 0, 255, 0, 163,
    255, 204, 0, 255, 0, 143, 0, 255, 235, 133, 255, 0, 255, 0, 235, 245, 0, 255, 255, 0, 122, 255, 245, 0,
    10, 190, 212, 214, 255, 0, 0, 204, 255, 20, 0, 255, 255, 255, 0, 0, 153, 255, 0, 41, 255, 0, 255, 204,
    41, 0, 255, 41, 255, 0, 173, 0, 255, 0, 245, 255, 71, 0, 255, 122, 0, 255, 0, 255, 184, 0, 92, 255,
    184, 255, 0, 0, 133, 255, 255, 214, 0, 25, 194, 194, 102, 255, 0, 92, 0, 255,
]
"""ADE20K's 150 colours, R, G, B in turn (the standard ADE20K palette, in the order the release's ``ade_palette`` lists it)."""
