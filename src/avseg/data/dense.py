"""Every-frame ground truth of the synthetic benchmark (``avseg synth --fps F [--motion]``).

Beside the official layout, the dataset folder then holds:

* ``videos/<clip id>.mp4``: the clip at ``F`` frames per second (H.264), with
  its audio (AAC, the same waveform as the layout's ``.wav``). Frame ``k`` is
  the scene at time ``k / F``.
* ``dense_masks/<clip id>/<k:05d>.png``: one 0/255 greyscale mask per video
  frame, the pixels of the objects sounding at ``k / F`` (for every layout
  the binary AVS target: the union of the sounding objects; Ref-AVS's
  per-expression masks are not written per frame).
* ``dense_truth.json``: ``{"fps": F, "motion": bool, "clips": {id: {"split",
  "frames", "visible", "sounding", "objects"}}}``; ``visible`` and
  ``sounding`` list the object names of each frame (the per-frame timeline),
  ``objects`` each object's name and sounding intervals (``[start, end)``
  seconds; whole seconds for a plain scene).

The clip ids are those of ``synthetic_objects.json`` (S4/MS3 names, AVSS uids,
Ref-AVS vids). The official per-second frame ``l`` is the video frame
AVSBench samples, :func:`avseg.media.avsbench_frame_index` ``(l, F)``, and the
official mask of second ``l`` equals that frame's dense mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from avseg.data.files import read_binary_mask, require_file
from avseg.data.scene import AUDIO_RATE, Scene, render_frame
from avseg.errors import DatasetError
from avseg.media import VideoWriter, avsbench_frame_index

TRUTH_FILE = "dense_truth.json"
VIDEOS_DIR = "videos"
MASKS_DIR = "dense_masks"
MAX_FPS = 60


def sampling_times(seconds: int, fps: int) -> list[float]:
    """The time of the frame AVSBench samples in each second of a video at ``fps``."""
    return [avsbench_frame_index(second, fps) / fps for second in range(seconds)]


def _intervals(scene_object, seconds: int) -> list[list[float]]:
    if scene_object.intervals is not None:
        return [[start, end] for start, end in scene_object.intervals]
    runs: list[list[float]] = []
    for second, on in enumerate(scene_object.sounding):
        if on and runs and runs[-1][1] == second:
            runs[-1][1] = float(second + 1)
        elif on:
            runs.append([float(second), float(second + 1)])
    return runs


class DenseWriter:
    """Writes each clip's video and every-frame masks under ``root``, and the timeline on :meth:`close`."""

    def __init__(self, root: Path, fps: int, motion: bool):
        self.root, self.fps, self.motion = Path(root), fps, motion
        self.clips: dict[str, dict] = {}

    def add(self, clip_id: str, split: str, scene: Scene, audio: np.ndarray) -> None:
        masks_dir = self.root / MASKS_DIR / clip_id
        masks_dir.mkdir(parents=True)
        visible_names, sounding_names = [], []
        with VideoWriter(self.root / VIDEOS_DIR / f"{clip_id}.mp4", self.fps, scene.size, scene.size, AUDIO_RATE) as video:
            for index in range(scene.seconds * self.fps):
                time = index / self.fps
                image, visible = render_frame(scene, time)
                sounding = np.array([obj.sounding_at(time) for obj in scene.objects], dtype=bool)
                mask = (visible & sounding[:, None, None]).any(0)
                video.write_frame(image)
                Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(masks_dir / f"{index:05d}.png")
                shown = visible.any((1, 2))
                visible_names.append([obj.cls.name for obj, seen in zip(scene.objects, shown) if seen])
                sounding_names.append([obj.cls.name for obj, seen, on in zip(scene.objects, shown, sounding) if seen and on])
            video.write_audio(audio)
        self.clips[clip_id] = {
            "split": split,
            "frames": scene.seconds * self.fps,
            "visible": visible_names,
            "sounding": sounding_names,
            "objects": [{"name": obj.cls.name, "sounding": _intervals(obj, scene.seconds)} for obj in scene.objects],
        }

    def close(self) -> None:
        truth = {"fps": self.fps, "motion": self.motion, "clips": self.clips}
        (self.root / TRUTH_FILE).write_text(json.dumps(truth, indent=1), encoding="utf-8")


def load_dense_truth(root: str | Path) -> dict:
    """The ``dense_truth.json`` of a dataset written with ``--fps`` (see the module doc)."""
    path = require_file(Path(root) / TRUTH_FILE)
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"invalid JSON ({exc})") from None
    if not isinstance(truth, dict) or not isinstance(truth.get("clips"), dict) or not isinstance(truth.get("fps"), int):
        raise DatasetError(path, "expected an object with an integer 'fps' and a 'clips' object")
    return truth


def read_dense_masks(root: str | Path, clip_id: str, frames: int) -> np.ndarray:
    """bool ``(frames, H, W)``: the every-frame ground truth of one clip."""
    folder = Path(root) / MASKS_DIR / clip_id
    return np.stack([read_binary_mask(folder / f"{index:05d}.png") > 0 for index in range(frames)])


def video_path(root: str | Path, clip_id: str) -> Path:
    return Path(root) / VIDEOS_DIR / f"{clip_id}.mp4"
