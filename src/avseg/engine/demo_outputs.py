"""What ``avseg demo`` shows a person: one motion video segmented at every frame, with and without its audio.

In ``OUT/demo/`` (written whole or not at all, :func:`avseg.outputs.staged_folder`, with the layout
:data:`DEMO_FILES`):

* ``own-audio/<clip>/`` and ``muted/<clip>/``: ``avseg segment``'s output for the video with its own
  audio and with the audio muted (masks, ``overlay.mp4``, ``summary.json``);
* ``compare.mp4``: every frame, three panels side by side, with the video's own audio track: the frame
  with the ground truth's outline, the mask made with the video's audio, the mask made with the audio
  muted. Each panel is enlarged by a whole factor to at least :data:`MIN_PANEL` pixels (nearest
  neighbour: the masks keep their pixel edges) and captioned with what it shows and, from the ground
  truth, what sounds at that moment;
* ``strip.png``: three of those frames stacked (the middle of the longest silent stretch and of the
  longest stretches in which the same objects sound), for a page or a terminal that cannot play a video;
* ``timeline.png``: over time, the sounding score (the highest foreground probability) and the mask
  area with and without the audio, the ground truth's area, and the stretches in which nothing sounds
  shaded.

Masks are drawn with :func:`avseg.viz.draw_mask`, as ``avseg segment`` draws them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from avseg.data.dense import load_dense_truth, read_dense_masks, video_path
from avseg.engine.dense_eval import hard_logits, read_predicted_masks
from avseg.engine.segment import OUTPUT_NAMES
from avseg.media import VideoWriter, decode_frames
from avseg.metrics import official_j
from avseg.outputs import Layout
from avseg.viz import INK, Axes, draw_mask, enlarge, font, legend, nice_ticks, text_size

OWN_AUDIO, MUTED = "own-audio", "muted"
DEMO_FILES: Layout = {
    "compare.mp4": None,
    "strip.png": None,
    "timeline.png": None,
    OWN_AUDIO: {"*": OUTPUT_NAMES},
    MUTED: {"*": OUTPUT_NAMES},
}
"""What the demo writes in ``OUT/demo`` (:data:`avseg.outputs.Layout`): a folder holding only this is replaced."""
MIN_PANEL = 256
"""Each panel of ``compare.mp4`` is at least this many pixels wide and high."""
STRIP_FRAMES = 3
OWN_COLOUR, MUTED_COLOUR, TRUTH_COLOUR, SILENT_SHADE = (31, 119, 180), (230, 110, 0), INK, (222, 222, 222)
SOUNDING_BADGE, SILENT_BADGE = (255, 160, 40), (110, 110, 110)
CAPTION_HEIGHT, CAPTION_BACKGROUND, GAP = 78, (28, 28, 28), 4
"""A panel's caption bar above it, and the dark gap between panels (pixels)."""


@dataclass
class Segmentation:
    """One ``avseg segment`` result folder read back: per frame its mask, time and sounding score."""

    masks: np.ndarray
    """bool ``(frames, H, W)``."""
    times: np.ndarray
    scores: np.ndarray

    @classmethod
    def read(cls, folder: Path) -> Segmentation:
        rows = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["frames"]
        return cls(read_predicted_masks(folder), np.array([row["time"] for row in rows]), np.array([row["sounding_score"] for row in rows]))

    @property
    def areas(self) -> np.ndarray:
        return self.masks.mean((1, 2))

    def frame_j(self, truth: np.ndarray) -> np.ndarray:
        """The official per-frame J against ``truth`` (``(frames, H, W)``), as the dense scores count each frame."""
        gt = torch.from_numpy(truth)
        return np.array([official_j(hard_logits(mask[None]), gt[k : k + 1]) for k, mask in enumerate(self.masks)])


@dataclass
class DemoVideo:
    """A motion video of the synthetic dataset, its every-frame ground truth and its two segmentations."""

    clip_id: str
    path: Path
    fps: float
    frames: np.ndarray
    """uint8 ``(frames, H, W, 3)``, decoded from the video as the model saw them."""
    truth: np.ndarray
    sounding: list[list[str]]
    """Per frame, the visible objects that sound (ground truth)."""
    visible: list[list[str]]
    own: Segmentation
    muted: Segmentation

    @classmethod
    def read(cls, data_root: Path, clip_id: str, own: Path, muted: Path) -> DemoVideo:
        truth = load_dense_truth(data_root)
        entry = truth["clips"][clip_id]
        path = video_path(data_root, clip_id)
        frames = np.stack([frame.image for frame in decode_frames(path)])
        masks = read_dense_masks(data_root, clip_id, entry["frames"])
        return cls(clip_id, path, float(truth["fps"]), frames, masks, entry["sounding"], entry["visible"], Segmentation.read(own), Segmentation.read(muted))

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.frames)) / self.fps

    @property
    def scale(self) -> int:
        """The whole enlargement factor that makes a panel at least :data:`MIN_PANEL` pixels on each side."""
        return max(1, -(-MIN_PANEL // min(self.frames.shape[1:3])))

    def silent_stretches(self) -> list[tuple[float, float]]:
        """``[start, end)`` seconds of the runs of frames in which nothing sounds (ground truth)."""
        return [(self.times[first], self.times[last] + 1 / self.fps) for first, last, names in self.runs() if not names]

    def runs(self) -> list[tuple[int, int, tuple[str, ...]]]:
        """``(first, last, sounding names)`` of each run of frames in which the same objects sound."""
        runs: list[tuple[int, int, tuple[str, ...]]] = []
        for index, names in enumerate(map(tuple, self.sounding)):
            if runs and runs[-1][2] == names:
                runs[-1] = (runs[-1][0], index, names)
            else:
                runs.append((index, index, names))
        return runs


def write_pictures(video: DemoVideo, folder: Path) -> None:
    """``compare.mp4``, ``strip.png`` and ``timeline.png`` of ``video`` into ``folder``."""
    own_j, muted_j = video.own.frame_j(video.truth), video.muted.frame_j(video.truth)
    compared = [compare_frame(video, index, own_j[index], muted_j[index]) for index in range(len(video.frames))]
    height, width = compared[0].shape[:2]
    with VideoWriter(folder / "compare.mp4", video.fps, width, height, crf=16, audio_from=video.path) as writer:
        for image in compared:
            writer.write_frame(image)
    Image.fromarray(np.concatenate([compared[index] for index in strip_frames(video)])).save(folder / "strip.png", optimize=True)
    plot_timeline(video).save(folder / "timeline.png", optimize=True)


def strip_frames(video: DemoVideo, count: int = STRIP_FRAMES) -> list[int]:
    """In time order, the middle frames of the longest run of frames in which nothing sounds and of the
    longest runs in which the same objects sound (``count`` in all, fewer if the video has fewer runs)."""
    runs = sorted(video.runs(), key=lambda run: run[1] - run[0], reverse=True)
    chosen = [run for run in runs if not run[2]][:1]
    chosen += [run for run in runs if run[2]][: count - len(chosen)]
    return sorted((first + last) // 2 for first, last, _ in chosen)


def compare_frame(video: DemoVideo, index: int, own_j: float, muted_j: float) -> np.ndarray:
    """Frame ``index`` as three captioned panels side by side (see the module doc)."""
    scale = video.scale
    frame = enlarge(video.frames[index], scale)
    sounding = video.sounding[index]
    silent = [name for name in video.visible[index] if name not in sounding]
    panels = [
        (draw_mask(frame, enlarge(video.truth[index], scale), alpha=0.0, outline=2), "frame + ground-truth outline",
         f"t = {index / video.fps:.1f} s" + (f"   silent: {', '.join(silent)}" if silent else "")),
        (draw_mask(frame, enlarge(video.own.masks[index], scale), outline=2), "mask, video's own audio", f"J this frame {own_j:.2f}"),
        (draw_mask(frame, enlarge(video.muted.masks[index], scale), outline=2), "mask, audio muted", f"J this frame {muted_j:.2f}"),
    ]
    captioned = [_captioned(image, title, sounding, detail) for image, title, detail in panels]
    gap = np.full((captioned[0].shape[0], GAP, 3), CAPTION_BACKGROUND, dtype=np.uint8)
    joined = np.concatenate([captioned[0], gap, captioned[1], gap, captioned[2]], axis=1)
    return joined[: joined.shape[0] // 2 * 2, : joined.shape[1] // 2 * 2]  # H.264 (yuv420p) needs even sizes


def _captioned(image: np.ndarray, title: str, sounding: list[str], detail: str) -> np.ndarray:
    """``image`` under a caption: its title, a badge saying what sounds (ground truth), and a detail line."""
    title_font, badge_font, detail_font = font(17), font(15), font(14)
    caption = Image.new("RGB", (image.shape[1], CAPTION_HEIGHT), CAPTION_BACKGROUND)
    draw = ImageDraw.Draw(caption)
    draw.text((8, 5), title, fill=(255, 255, 255), font=title_font)
    badge = f"SOUNDING: {', '.join(sounding)}" if sounding else "SILENT: nothing sounds"
    width, _ = text_size(draw, badge, badge_font)
    draw.rounded_rectangle((6, 29, 6 + width + 12, 51), radius=5, fill=SOUNDING_BADGE if sounding else SILENT_BADGE)
    draw.text((12, 31), badge, fill=INK if sounding else (255, 255, 255), font=badge_font)
    draw.text((8, 57), detail, fill=(200, 200, 200), font=detail_font)
    return np.concatenate([np.asarray(caption), image])


def plot_timeline(video: DemoVideo, width: int = 960) -> Image.Image:
    """Sounding score (top) and mask area (bottom) over time, with and without the audio; the ground
    truth's area; the stretches in which nothing sounds shaded."""
    title_font, label_font, tick_font = font(20), font(16), font(14)
    image = Image.new("RGB", (width, 600), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), f"{video.clip_id}: what the model does with its audio and with the audio muted", fill=INK, font=title_font)
    legend(draw, (84, 46), [("own audio", OWN_COLOUR, "line"), ("audio muted", MUTED_COLOUR, "line"),
                            ("ground truth", TRUTH_COLOUR, "line"), ("nothing sounds (ground truth)", SILENT_SHADE, "box")], label_font)
    duration = len(video.frames) / video.fps
    x_ticks = [float(second) for second in range(int(duration) + 1)]
    areas = [video.own.areas, video.muted.areas, video.truth.mean((1, 2))]
    area_ticks = nice_ticks(max(max(area.max() for area in areas), 0.01))
    charts = [
        ("sounding score (highest foreground probability)", (0.0, 1.0), [0, 0.25, 0.5, 0.75, 1], ".2f", 90,
         [(video.own.times, video.own.scores, OWN_COLOUR), (video.muted.times, video.muted.scores, MUTED_COLOUR)]),
        ("mask area (fraction of the frame)", (0.0, area_ticks[-1]), area_ticks, ".2f", 330,
         [(video.times, areas[2], TRUTH_COLOUR), (video.own.times, areas[0], OWN_COLOUR), (video.muted.times, areas[1], MUTED_COLOUR)]),
    ]
    for title, y_range, y_ticks, y_format, top, series in charts:
        axes = Axes(draw, (84, top + 26, width - 24, top + 206), (0.0, duration), y_range)
        for start, end in video.silent_stretches():
            axes.shade(start, end, SILENT_SHADE)
        axes.frame(x_ticks, y_ticks, y_format, tick_font)
        if y_range == (0.0, 1.0):
            axes.hline(0.5, (160, 160, 160))
            label = "mask threshold 0.5"
            draw.text((axes.box[2] - 8 - text_size(draw, label, tick_font)[0], axes.point(0, 0.5)[1] - 20), label, fill=(120, 120, 120), font=tick_font)
        for xs, ys, colour in series:
            axes.steps(xs, ys, 1 / video.fps, colour, width=3 if colour == TRUTH_COLOUR else 2)
        draw.text((84, top), title, fill=INK, font=label_font)
    label = "time (s)"
    draw.text(((width - text_size(draw, label, label_font)[0]) / 2, 568), label, fill=INK, font=label_font)
    return image
