"""``data.augmentation: mask2former``: detectron2's pieces as VCT's dataset mappers chain them, on whole clips."""

from __future__ import annotations

import numpy as np
import pytest

from avseg.config import load_recipe
from avseg.data import augmentation
from avseg.data.augmentation import (
    augment_clip,
    color_ssd,
    hsv_to_rgb,
    rgb_to_hsv,
    short_edges,
    shortest_edge_shape,
)
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.train import check_model_config
from avseg.errors import ConfigError


def test_the_release_sizes_and_detectron2_resize_shapes():
    # configs/*_swinb_384/SWIN*-SemanticSegmentation.yaml:47, [int(x * 0.1 * 384) for x in range(5, 21)]
    assert short_edges(384) == [192, 230, 268, 307, 345, 384, 422, 460, 499, 537, 576, 614, 652, 691, 729, 768]
    assert shortest_edge_shape(384, 384, 230, 896) == (230, 230)
    assert shortest_edge_shape(480, 640, 384, 896) == (384, 512)
    assert shortest_edge_shape(300, 1000, 768, 896) == (269, 896)  # the long side capped at MAX_SIZE_TRAIN


def test_opencv_8_bit_hsv():
    # cv2.cvtColor of OpenCV 4.6 (the release's pin), run outside the repository: COLOR_BGR2HSV of these colours, then
    # COLOR_HSV2BGR of hue + 17 and saturation x 0.7 (on a row long enough for OpenCV's vector path)
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 133, 100], [77, 77, 77], [12, 200, 90], [250, 240, 3]]], dtype=np.uint8)
    hsv = rgb_to_hsv(rgb)
    assert hsv[0].tolist() == [[0, 255, 255], [60, 255, 255], [120, 255, 255], [10, 127, 200], [0, 0, 77], [72, 240, 200], [29, 252, 250]]
    hsv[..., 0] = (hsv[..., 0].astype(int) + 17) % 180
    hsv[..., 1] = (hsv[..., 1] * 0.7).astype(np.uint8)
    back = [[255, 177, 76], [76, 255, 177], [177, 76, 255], [200, 193, 130], [77, 77, 77], [68, 200, 195], [157, 250, 77]]
    assert hsv_to_rgb(hsv)[0].tolist() == back


def block_clip(frames: int = 3, size: int = 64):
    """Label maps of 16-pixel blocks (classes 0-2) and grey frames that encode them (class x 100)."""
    blocks = np.random.default_rng(0).integers(0, 3, (size // 16, size // 16))
    labels = np.kron(blocks, np.ones((16, 16), dtype=np.int64))
    grey = (labels * 100).astype(np.uint8)
    return np.repeat(np.stack([grey] * 3, -1)[None], frames, 0), np.repeat(labels[None], frames, 0)


@pytest.mark.parametrize("seed", range(6))
def test_frames_labels_and_mask_images_share_the_geometry(seed, monkeypatch):
    monkeypatch.setattr(augmentation, "color_ssd", lambda image, rng: image)  # geometry only
    frames, labels = block_clip()
    out_frames, out_labels, out_paired = augment_clip(frames, labels, frames.copy(), 64, np.random.default_rng(seed))
    assert out_frames.shape == out_paired.shape == (3, 64, 64, 3) and out_labels.shape == (3, 64, 64)
    assert np.array_equal(out_frames, out_paired) and (out_labels == out_labels[0]).all()
    padded = out_labels[0] == 255
    assert (out_frames[0][padded] == 128).all()
    # inside a block (its 3 x 3 neighbourhood one class) bilinear and nearest agree: the grey is the class x 100
    window = np.lib.stride_tricks.sliding_window_view(np.pad(out_labels[0], 1, mode="edge"), (3, 3))
    inside = (window == out_labels[0][..., None, None]).all(axis=(-1, -2)) & ~padded
    assert inside.mean() > 0.3
    assert np.array_equal(out_frames[0, ..., 0][inside], (out_labels[0][inside] * 100).astype(np.uint8))


def test_smaller_scales_are_padded_and_larger_ones_cropped():
    frames, labels = block_clip(1)
    padded = [(augment_clip(frames, labels, None, 64, np.random.default_rng(seed))[1] == 255).any() for seed in range(40)]
    assert any(padded) and not all(padded)  # short sides 32..128 against the 64 crop


def test_colour_is_drawn_per_image_and_by_the_generator_alone():
    frames, labels = block_clip(4)
    frames = (frames // 2 + np.random.default_rng(1).integers(0, 100, frames.shape)).astype(np.uint8)
    first = augment_clip(frames, labels, frames, 64, np.random.default_rng(7))
    again = augment_clip(frames, labels, frames, 64, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    distinct = {out.tobytes() for out in (*first[0], *first[2])}
    assert len(distinct) > 4  # 8 images, the same input, their own colour draws
    grey = np.full((8, 8, 3), 90, dtype=np.uint8)
    for seed in range(10):
        out = color_ssd(grey, np.random.default_rng(seed))
        assert (out == out[..., :1]).all()  # brightness, contrast, saturation and hue keep a grey grey


def test_augmentation_is_only_for_models_that_take_it():
    with pytest.raises(ConfigError, match="data.augmentation: teso trains without augmentation \\(none\\); mask2former is for vct"):
        check_model_config(load_recipe(DEMO_RECIPE, ["data.augmentation=mask2former"]))
