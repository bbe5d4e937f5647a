"""The demo's pictures: compare.mp4's three captioned panels, the strip and the timeline (avseg.engine.demo_outputs)."""

import numpy as np
import pytest
from conftest import make_video
from PIL import Image
from test_viz import OBJECT_COLOURS, VISIBLE, moved, scene

from avseg.engine.demo_outputs import (
    CAPTION_HEIGHT,
    GAP,
    MIN_PANEL,
    SILENT_BADGE,
    SOUNDING_BADGE,
    DemoVideo,
    Segmentation,
    compare_frame,
    strip_frames,
    write_pictures,
)  # fmt: skip
from avseg.media import iter_frames, probe
from avseg.viz import enlarge, outline_of


def demo_video(tmp_path, frames=6, fps=3):
    """A DemoVideo of a red, a white and a black object; the red and white ones sound in the first half,
    the mask with the audio finds all three objects, the mask with the audio muted nothing."""
    frame, masks = scene([OBJECT_COLOURS["red"], OBJECT_COLOURS["white"], OBJECT_COLOURS["black"]])
    everything = masks[0] | masks[1] | masks[2]
    half = frames // 2
    truth = np.stack([masks[0] | masks[1]] * half + [np.zeros_like(everything)] * (frames - half))
    times = np.arange(frames) / fps
    own = Segmentation(np.stack([everything] * frames), times, np.full(frames, 0.9))
    muted = Segmentation(np.zeros((frames, 32, 32), dtype=bool), times, np.full(frames, 0.1))
    sounding = [["bell", "flute"]] * half + [[]] * (frames - half)
    video = make_video(tmp_path / "synth.mp4", seconds=frames / fps, fps=fps, size=(32, 32))
    return DemoVideo("synth", video, float(fps), np.stack([frame] * frames), truth, sounding, [["bell", "flute", "drum"]] * frames, own, muted), masks


def test_compare_panels_layout_and_visible_masks(tmp_path):
    video, masks = demo_video(tmp_path)
    assert video.scale * 32 >= MIN_PANEL
    panel = 32 * video.scale
    image = compare_frame(video, 0, own_j=0.5, muted_j=0.0)
    assert image.shape == (CAPTION_HEIGHT + panel, 3 * panel + 2 * GAP, 3)
    truth_panel, own_panel, muted_panel = (image[CAPTION_HEIGHT:, k * (panel + GAP) : k * (panel + GAP) + panel] for k in range(3))
    frame = enlarge(video.frames[0], video.scale)
    for mask in masks:  # the red, the white and the black object
        big = enlarge(mask, video.scale)
        assert moved(own_panel, frame)[big].min() >= VISIBLE
    assert (muted_panel == frame).all()  # an empty mask leaves the frame as it is
    truth = enlarge(video.truth[0], video.scale)
    outline = outline_of(truth, 2)
    assert (moved(truth_panel, frame)[outline] >= VISIBLE).all() and (truth_panel[~outline] == frame[~outline]).all()
    for k in range(3):  # every caption names what sounds: the badge's colour, then silence
        caption = image[:CAPTION_HEIGHT, k * (panel + GAP) : k * (panel + GAP) + panel]
        assert (caption == SOUNDING_BADGE).all(-1).any()
        silent = compare_frame(video, 5, 1.0, 1.0)[:CAPTION_HEIGHT, k * (panel + GAP) : k * (panel + GAP) + panel]
        assert (silent == SILENT_BADGE).all(-1).any() and not (silent == SOUNDING_BADGE).all(-1).any()


def test_pictures_of_a_demo_video(tmp_path):
    video, _ = demo_video(tmp_path)
    write_pictures(video, tmp_path)
    info = probe(tmp_path / "compare.mp4")
    assert info.has_audio and (info.width, info.height) == (3 * 32 * video.scale + 2 * GAP, CAPTION_HEIGHT + 32 * video.scale)
    assert len(list(iter_frames(tmp_path / "compare.mp4", "all"))) == 6
    assert video.silent_stretches() == [pytest.approx((1.0, 2.0))]
    assert strip_frames(video) == [1, 4]  # one silent and one sounding stretch: one frame of each
    assert Image.open(tmp_path / "strip.png").size == (info.width, 2 * info.height)
    timeline = np.asarray(Image.open(tmp_path / "timeline.png").convert("RGB"))
    assert timeline.shape[1] == 960
    assert tuple(timeline[190, 723]) == (222, 222, 222) and tuple(timeline[190, 297]) == (255, 255, 255)  # 1.5 s is silent, 0.5 s not


def test_the_demo_video_shows_silence_and_sound(tmp_path):
    """demo_clip prefers a video with half a second of silence and mostly sound, then the most changes."""
    import json

    from avseg.data.dense import TRUTH_FILE
    from avseg.engine.demo import demo_clip

    def clip(split, pattern):  # one character per frame: "-" nothing sounds, a letter that object sounds
        return {"split": split, "sounding": [[] if c == "-" else [c] for c in pattern]}

    clips = {
        "always": clip("test", "abababababab"),  # the most changes, but never silent
        "mostly_silent": clip("test", "a-----b-----"),
        "both": clip("test", "aa--bbbbaaaa"),
        "both_later": clip("test", "aa--bbbbaaaa"),
        "other_split": clip("val", "a--ba--ba--b"),
    }
    (tmp_path / TRUTH_FILE).write_text(json.dumps({"fps": 4, "clips": clips}))
    assert demo_clip(tmp_path, "test") == "both"
    del clips["both"], clips["both_later"]
    (tmp_path / TRUTH_FILE).write_text(json.dumps({"fps": 4, "clips": clips}))
    assert demo_clip(tmp_path, "test") == "always"  # none qualifies: the most changing
