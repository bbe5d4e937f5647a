"""Every-frame synthetic data (``avseg synth --fps --motion``) and the every-frame J/F evaluation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avseg.cli import main
from avseg.data.avsbench import MS3
from avseg.data.dense import load_dense_truth, read_dense_masks, video_path
from avseg.data.synthetic import write_dataset
from avseg.engine import rle
from avseg.engine.dense_eval import evaluate_dense
from avseg.errors import ConfigError, DatasetError
from avseg.media import avsbench_frame_index, iter_frames, probe

LAYOUTS = ("s4", "ms3", "avss", "refavs")
OFFICIAL_DIGESTS = {
    # The default output before --fps/--motion existed (commit 6a35afc), videos=4, seed=3, size=32.
    "s4": "8330670ba65c129be2648e7b6b3da370b6189de6f0faad754077856d6387e30e",
    "ms3": "5cafa3ab5f8dde0415c88b79f736dfdad2acd34047c6da6e7eaf0f257c5dd480",
    "avss": "25344ce8b6682e56101967606e0ace6eb34e03735938a1e3dc116cf9b09bb0eb",
    "refavs": "70d6e2d13e65fe1323e9b285476d92450ef297d9658cdcf793a3523146221153",
}


def official_digest(root: Path) -> str:
    """SHA-256 of file names, PNG pixels, CSV and JSON text. WAV samples (sin/FFT, whose last bit may differ
    between CPUs' vector math) and JPEG bytes (libjpeg version) are left out, so this holds on any x86-64."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.suffix == ".png":
            image = Image.open(path)
            digest.update(image.mode.encode() + np.asarray(image).tobytes())
        elif path.suffix in (".csv", ".json"):
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_default_synth_is_unchanged(tmp_path, layout):
    write_dataset(layout, tmp_path / layout, videos=4, seed=3, size=32)
    assert official_digest(tmp_path / layout) == OFFICIAL_DIGESTS[layout]


def test_fps_without_motion_keeps_the_official_files_bit_for_bit(tmp_path):
    write_dataset("avss", tmp_path / "plain", videos=4, seed=5, size=32)
    write_dataset("avss", tmp_path / "dense", videos=4, seed=5, size=32, fps=3)
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*") if p.is_file())
    dense = sorted(p.relative_to(tmp_path / "dense") for p in (tmp_path / "dense").rglob("*") if p.is_file())
    extra = {p.parts[0] for p in set(dense) - set(plain)}
    assert set(plain) <= set(dense) and extra == {"videos", "dense_masks", "dense_truth.json"}
    for path in plain:
        assert (tmp_path / "plain" / path).read_bytes() == (tmp_path / "dense" / path).read_bytes(), path


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion") / "ms3"
    write_dataset("ms3", root, videos=5, seed=2, size=32, fps=4, motion=True)
    return root


def test_motion_truth_has_a_mask_per_video_frame(motion):
    truth = load_dense_truth(motion)
    assert truth["fps"] == 4 and truth["motion"] is True and len(truth["clips"]) == 5
    for clip_id, entry in truth["clips"].items():
        decoded = sum(1 for _ in iter_frames(video_path(motion, clip_id), "all"))
        masks = sorted((motion / "dense_masks" / clip_id).glob("*.png"))
        assert decoded == entry["frames"] == len(masks) == len(entry["sounding"]) == len(entry["visible"]) == 5 * 4
        assert probe(video_path(motion, clip_id)).fps == 4


def test_official_mask_is_the_dense_mask_of_the_sampled_frame(motion):
    truth = load_dense_truth(motion)
    for clip in MS3(motion, split=None):
        dense = read_dense_masks(motion, clip.id, truth["clips"][clip.id]["frames"])
        for second in range(5):
            np.testing.assert_array_equal(dense[avsbench_frame_index(second, 4)], clip.masks[second] > 0)


def test_motion_moves_within_the_second_and_switches_sound_off_the_boundaries(motion):
    truth = load_dense_truth(motion)
    times = [t for entry in truth["clips"].values() for obj in entry["objects"] for run in obj["sounding"] for t in run]
    assert any(0 < t < 5 and t != int(t) for t in times)
    moved = 0
    for clip_id, entry in truth["clips"].items():
        dense = read_dense_masks(motion, clip_id, entry["frames"])
        same_sounding = [k for k in range(0, 20, 4) if entry["sounding"][k] == entry["sounding"][k + 3] != []]
        moved += sum(bool((dense[k] != dense[k + 3]).any()) for k in same_sounding)
    assert moved > 0


def test_synth_option_errors(tmp_path, capsys):
    assert main(["synth", "--layout", "s4", "--out", str(tmp_path / "a"), "--videos", "2", "--motion"]) == 2
    assert main(["synth", "--layout", "s4", "--out", str(tmp_path / "b"), "--videos", "2", "--size", "33", "--fps", "2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "avseg: error: --motion needs --fps (the frame rate of the videos that show the motion)",
        "avseg: error: --size must be even with --fps (H.264 videos have even sizes), got 33",
    ]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="--fps must be between"):
        write_dataset("s4", tmp_path / "c", videos=1, size=32, fps=0)


def _save_masks(folder: Path, masks: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for index, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{index:05d}.png")


def _rect(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((4, 4), dtype=bool)
    mask[rows, cols] = True
    return mask


@pytest.fixture
def hand_made(tmp_path):
    """2 seconds at 2 fps of 4x4 frames: empty, left half, top-left 2x2, top half."""
    truth = tmp_path / "truth"
    gt = [_rect(slice(0, 0), slice(0, 0)), _rect(slice(None), slice(0, 2)), _rect(slice(0, 2), slice(0, 2)), _rect(slice(0, 2), slice(None))]
    _save_masks(truth / "dense_masks" / "clip", gt)
    entry = {"split": "test", "frames": 4, "visible": [[]] * 4, "sounding": [[]] * 4, "objects": []}
    (truth / "dense_truth.json").write_text(json.dumps({"fps": 2, "motion": True, "clips": {"clip": entry}}))
    return tmp_path, truth


@pytest.mark.parametrize("mask_format", ["png", "rle", "rle before mask numbers had their own key"])
def test_dense_evaluation_per_frame_by_hand(hand_made, mask_format):
    tmp_path, truth = hand_made
    one_pixel = _rect(slice(0, 1), slice(0, 1))
    top_half_but_two = _rect(slice(0, 2), slice(None)) & ~_rect(slice(1, 2), slice(2, 4))
    masks = [one_pixel, _rect(slice(None), slice(0, 2)), _rect(slice(0, 2), slice(None)), top_half_but_two]
    if mask_format == "png":
        _save_masks(tmp_path / "pred" / "clip" / "masks", masks)
    else:  # avseg segment --format rle: ``frame`` is the video frame a mask was made from, ``mask`` its number
        (tmp_path / "pred" / "clip").mkdir(parents=True)
        numbers = (lambda k: {"frame": k}) if "before" in mask_format else (lambda k: {"mask": k, "frame": 3 * k + 2})
        lines = [json.dumps({**numbers(k), "time": k / 2, **rle.encode(mask)}) for k, mask in enumerate(masks)]
        (tmp_path / "pred" / "clip" / "masks.jsonl").write_text("\n".join(lines) + "\n")
    scores = evaluate_dense(tmp_path / "pred", truth)
    # J per frame: 15/16 of an empty frame left empty, exact, 4/8, 6/8.
    assert scores["J"] == pytest.approx((15 / 16 + 1 + 4 / 8 + 6 / 8) / 4, abs=1e-6)  # 1e-7 in the Jaccard's denominator
    # F (beta^2 = 0.3) of the frames with ground truth: P=R=1; P=1/2, R=1; P=1, R=3/4 (threshold 0, "all pixels", is lower).
    f = lambda p, r: 1.3 * p * r / (0.3 * p + r)  # noqa: E731
    assert scores["F"] == pytest.approx((f(1, 1) + f(0.5, 1) + f(1, 0.75)) / 3, abs=1e-6)
    assert (scores["frames"], scores["clips"]) == (4, 1)


def test_dense_evaluation_holds_a_mask_per_second_over_its_frames(hand_made):
    tmp_path, truth = hand_made
    _save_masks(tmp_path / "pred" / "clip" / "masks", [_rect(slice(None), slice(0, 2)), _rect(slice(0, 2), slice(0, 2))])
    scores = evaluate_dense(tmp_path / "pred", truth)
    # Second 0's left half on frames 0 (empty truth: 8 of 16 left empty) and 1; second 1's top-left on frames 2 and 3.
    assert scores["J"] == pytest.approx((8 / 16 + 1 + 1 + 4 / 8) / 4, abs=1e-6)
    assert scores["F"] == pytest.approx((1 + 1 + 1.3 * 0.5 / (0.3 + 0.5)) / 3, abs=1e-6)


def test_dense_evaluation_refuses_a_mask_count_that_fits_no_rate(hand_made):
    tmp_path, truth = hand_made
    _save_masks(tmp_path / "pred" / "clip" / "masks", [_rect(slice(None), slice(0, 2))] * 3)
    with pytest.raises(DatasetError, match="3 masks for a video of 4 frames at 2 fps"):
        evaluate_dense(tmp_path / "pred", truth)
