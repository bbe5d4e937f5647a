"""Training augmentation of a whole clip: Mask2Former's semantic-segmentation recipe on detectron2 (``data.augmentation``).

``mask2former`` is what Mask2Former's ``MaskFormerSemanticDatasetMapper`` applies and VCT's dataset mappers keep
(release ``models/data/dataset_mappers/avs*_semantic_dataset_mapper.py:70-91`` with ``INPUT`` of
``configs/*_swinb_384/SWIN*-SemanticSegmentation.yaml:45-59``), for a model whose input is ``S`` x ``S`` (384 there):

1. ``ResizeShortestEdge``: the short side to one of ``int(x * 0.1 * S)``, x = 5..20 (192..768 at 384, ``"choice"``),
   the long side at most ``896 * S / 384``; PIL bilinear for images, nearest for label maps.
2. ``RandomCrop_CategoryAreaConstraint`` with ``SINGLE_CATEGORY_MAX_AREA: 1.0``, which is detectron2's plain
   ``RandomCrop("absolute", (S, S))`` (an image smaller than ``S`` keeps its size).
3. ``ColorAugSSDTransform``: SSD's photometric distortions (brightness +-32, contrast and saturation x 0.5-1.5, hue
   +-18 of OpenCV's 180, each with probability 1/2, contrast first or last), on OpenCV's 8-bit HSV (:func:`rgb_to_hsv`).
4. ``RandomFlip``: horizontal, probability 1/2.
5. Padding to ``S`` x ``S`` at the bottom and right: images with 128, label maps with 255 (ignored).

The geometry (size, crop, flip) is drawn once per clip and applied to every frame, label map and paired image (VCT's
mask images) alike, as the release's mappers apply the first frame's transforms to the others. The colour distortion
is drawn anew for each frame and for each paired image: detectron2's ``ColorAugSSDTransform`` draws its random values
inside ``apply_image``, so the release's ``transforms.apply_image`` distorts every frame, and every mask image, with
values of its own. Randomness comes from the ``numpy`` generator passed in (the trainer's per-step seed).

OpenCV is not a dependency: its 8-bit HSV conversions are written out here. Measured against OpenCV 4.6 (the
release's pin) outside the repository: ``rgb_to_hsv`` equals it on all 16.7 M colours, ``hsv_to_rgb`` on all but 0.015%
of the 11.8 M HSV values (off by one level: float rounding), and :func:`color_ssd` fed the same random draws as
detectron2's ``ColorAugSSDTransform`` gives the same image on all but 0.011% of the values (at most 2 levels).

The input size follows the release's data: S4 and MS3 clips arrive at 384 x 384 (``generate_data_384``); AVSS's
training split is not pre-resized there (only val and test are), its mapper squares each raw frame, label and mask
image to its short side (``resize_img``), so VCT's task gives AVSS clips at that square
(:class:`avseg.models.vct.training.VCTTask`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

AUGMENTATIONS = ("none", "mask2former")
PAD_IMAGE, PAD_LABEL = 128, 255
HSV_SHIFT = 12


def short_edges(size: int) -> list[int]:
    """``MIN_SIZE_TRAIN``: ``[int(x * 0.1 * 384) for x in range(5, 21)]`` at ``size`` = 384."""
    return [int(x * 0.1 * size) for x in range(5, 21)]


def shortest_edge_shape(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge.get_output_shape``."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def _division_table(numerator: float) -> np.ndarray:
    """OpenCV's ``sdiv_table`` / ``hdiv_table180``: ``round(numerator / i)`` for i = 1..255, 0 for 0."""
    table = np.zeros(256, dtype=np.int64)
    table[1:] = np.rint(numerator / np.arange(1, 256))
    return table


SATURATION_DIVISORS = _division_table(255 << HSV_SHIFT)
HUE_DIVISORS = _division_table((180 << HSV_SHIFT) / 6.0)


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> OpenCV's 8-bit HSV (H in [0, 180), S and V in [0, 255]): ``cv2.cvtColor(BGR, COLOR_BGR2HSV)``,
    with its fixed-point division tables."""
    rgb = image.astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    diff = value - rgb.min(axis=-1)
    half = 1 << (HSV_SHIFT - 1)
    saturation = (diff * SATURATION_DIVISORS[value] + half) >> HSV_SHIFT
    hue = np.where(value == r, g - b, np.where(value == g, b - r + 2 * diff, r - g + 4 * diff))
    hue = (hue * HUE_DIVISORS[diff] + half) >> HSV_SHIFT
    hue = np.where(hue < 0, hue + 180, hue)
    return np.stack([hue, saturation, value], axis=-1).astype(np.uint8)


SECTORS = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])
"""OpenCV's ``sector_data``: per sector of the hue, the (b, g, r) entries of ``(v, v(1-s), v(1-sf), v(1-s(1-f)))``."""


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit HSV -> uint8 RGB: ``cv2.cvtColor(HSV, COLOR_HSV2BGR)`` as its vectorised path computes nearly every
    pixel (float32, truncated to uint8; its scalar path, for the few pixels left after the last full vector, rounds)."""
    h = hsv[..., 0].astype(np.float32) * np.float32(6.0 / 180.0)
    s = hsv[..., 1].astype(np.float32) * np.float32(1.0 / 255.0)
    v = hsv[..., 2].astype(np.float32) * np.float32(1.0 / 255.0)
    sector = np.trunc(h)
    f = h - sector
    one = np.float32(1.0)
    tab = np.stack([v, v * (one - s), v * (one - s * f), v * (one - s * (one - f))])
    order = SECTORS[sector.astype(np.int64) % 6]
    rgb = np.stack([np.choose(order[..., channel], tab) for channel in (2, 1, 0)], axis=-1)
    return np.clip(np.trunc(rgb * np.float32(255.0)), 0, 255).astype(np.uint8)


def _scaled(image: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """detectron2's ``ColorAugSSDTransform.convert``: ``clip(x * alpha + beta, 0, 255)`` in float32, truncated to uint8."""
    return np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def color_ssd(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SSD's photometric distortions on a uint8 RGB image, as detectron2's ``ColorAugSSDTransform.apply_image``."""

    def brightness(x):
        return _scaled(x, beta=rng.uniform(-32, 32)) if rng.integers(2) else x

    def contrast(x):
        return _scaled(x, alpha=rng.uniform(0.5, 1.5)) if rng.integers(2) else x

    def saturation(x):
        if not rng.integers(2):
            return x
        hsv = rgb_to_hsv(x)
        hsv[..., 1] = _scaled(hsv[..., 1], alpha=rng.uniform(0.5, 1.5))
        return hsv_to_rgb(hsv)

    def hue(x):
        if not rng.integers(2):
            return x
        hsv = rgb_to_hsv(x)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + rng.integers(-18, 19)) % 180
        return hsv_to_rgb(hsv)

    image = brightness(image)
    if rng.integers(2):
        return hue(saturation(contrast(image)))
    return contrast(hue(saturation(image)))


def _resized(image: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """detectron2's ``ResizeTransform.apply_image`` on uint8 images (PIL); label maps go through PIL's 32-bit mode."""
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), resample))
    return np.asarray(Image.fromarray(image.astype(np.int32)).resize((width, height), resample)).astype(image.dtype)


def _padded(image: np.ndarray, size: int, value: int) -> np.ndarray:
    out = np.full((size, size, *image.shape[2:]), value, dtype=image.dtype)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def augment_clip(
    frames: np.ndarray, labels: np.ndarray | None, paired: np.ndarray | None, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``mask2former`` (see the module docstring) on a clip: uint8 RGB ``frames`` ``(T, H, W, 3)``, integer ``labels``
    ``(T, H, W)`` and uint8 RGB ``paired`` images ``(T, H, W, 3)`` of the same size -> the same at ``size`` x ``size``."""
    height, width = frames.shape[1:3]
    short = int(rng.choice(short_edges(size)))
    new_h, new_w = shortest_edge_shape(height, width, short, int(896 * size / 384))
    crop_h, crop_w = min(size, new_h), min(size, new_w)
    top, left = int(rng.integers(new_h - crop_h + 1)), int(rng.integers(new_w - crop_w + 1))
    flip = rng.random() < 0.5

    def image(x: np.ndarray) -> np.ndarray:
        cropped = _resized(x, new_h, new_w, Image.BILINEAR)[top : top + crop_h, left : left + crop_w]
        distorted = color_ssd(np.ascontiguousarray(cropped), rng)
        return _padded(distorted[:, ::-1] if flip else distorted, size, PAD_IMAGE)

    def label_map(x: np.ndarray) -> np.ndarray:
        cropped = _resized(x, new_h, new_w, Image.NEAREST)[top : top + crop_h, left : left + crop_w]
        return _padded(cropped[:, ::-1] if flip else cropped, size, PAD_LABEL)

    out_frames = np.stack([image(frame) for frame in frames])
    out_paired = None if paired is None else np.stack([image(other) for other in paired])
    out_labels = None if labels is None else np.stack([label_map(label) for label in labels])
    return out_frames, out_labels, out_paired
