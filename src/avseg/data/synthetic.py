"""The synthetic benchmark, written in the exact on-disk layouts of S4, MS3, AVSS and Ref-AVS.

Scenes come from :mod:`avseg.data.scene`. Files go to the paths that the real
readers' ``record()`` methods name, so reading a synthetic dataset exercises
the same code as reading the real one:

* S4: one object sounds through the whole clip; PNG frames, 0/255 greyscale
  masks; train clips get only mask 1.
* MS3: objects sound independently per second; palette PNG masks (index =
  object number + 1, decoded with ``> 0``); some clips are silent throughout,
  so all their masks are empty.
* AVSS: ``v1s`` (5 frames, single source), ``v1m`` (5 frames, multi-source)
  and ``v2`` (10 frames) clips; JPEG frames; RGB colour masks in the
  PASCAL-VOC palette and ``labels_semantic`` greyscale index maps;
  ``label2idx.json`` (1-based, background first, like the release).
* Ref-AVS: 10-frame clips; one row per visible object ("the bell") whose mask
  is that object in every frame; ``test_n`` rows ask for an object class that
  is not in the clip and have no mask files (the right answer is empty).

Beside the layout, ``synthetic_objects.json`` records, for each clip and
frame, the names of the visible and of the sounding objects: the visible
names are the *oracle text cues* for TeSO tests and the demo.

Every frame (``fps``, ``motion``; ``avseg synth --fps F [--motion]``): each
clip is also written as a video at ``F`` frames per second with ground truth
for every frame (``videos/``, ``dense_masks/``, ``dense_truth.json``; see
:mod:`avseg.data.dense`). The official per-second frame ``l`` is then the
video frame AVSBench samples (index ``int(l*F + 15/16*F)``) and its mask is
that frame's dense mask. Without ``motion`` the scene is the plain one (it
changes only at whole seconds), so the official files are bit for bit those
written without ``fps``; with ``motion`` objects move continuously and
sounds start and stop at arbitrary times (:mod:`avseg.data.scene`).

Each clip is drawn from ``numpy.random.default_rng([seed, index])``, so a
seed reproduces the dataset and adding videos does not change earlier ones.
"""

from __future__ import annotations

import csv
import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from avseg.data.avsbench import AVSS, AVSS_SUBSET_FRAMES, MS3, S4, voc_palette
from avseg.data.dense import MAX_FPS, DenseWriter, sampling_times
from avseg.data.reader import ClipReader, ClipRecord
from avseg.data.refavs import RefAVS
from avseg.data.scene import (
    AUDIO_RATE,
    CLASSES,
    Scene,
    make_scene,
    render_audio,
    render_frame,
    sample_sounding,
)
from avseg.errors import ConfigError
from avseg.outputs import staged_folder

LAYOUTS = ("s4", "ms3", "avss", "refavs")
OBJECTS_FILE = "synthetic_objects.json"
MIN_SIZE, MAX_SIZE = 32, 4096
"""Frame sizes the scenes can be drawn at (in memory: a few float64 planes of size x size)."""
SILENT_EVERY = 7
"""Every 7th clip (index 3, 10, 17, ...) of MS3/AVSS/Ref-AVS is silent throughout."""


@dataclass
class RenderedClip:
    scene: Scene
    frames: list[np.ndarray]
    visible: list[np.ndarray]
    """bool ``(objects, H, W)`` per frame."""
    audio: np.ndarray

    def sounding_mask(self, second: int) -> np.ndarray:
        return (self.visible[second] & self.scene.sounding[second][:, None, None]).any(0)

    def sounding_labels(self, second: int, by: str = "class") -> np.ndarray:
        """uint8 label map of the sounding objects, 0 elsewhere.

        ``by="class"``: AVSS class index (synthetic class + 1); ``by="object"``:
        object number + 1 (the palette indices of MS3-style masks).
        """
        labels = np.zeros(self.visible[second].shape[1:], dtype=np.uint8)
        for k, obj in enumerate(self.scene.objects):
            if obj.sounding[second]:
                labels[self.visible[second][k]] = obj.class_index + 1 if by == "class" else k + 1
        return labels

    def object_names(self, second: int, sounding_only: bool = False) -> list[str]:
        names = []
        for k, obj in enumerate(self.scene.objects):
            if self.visible[second][k].any() and (not sounding_only or obj.sounding[second]):
                names.append(obj.cls.name)
        return names


def render_clip(
    rng: np.random.Generator, size: int, seconds: int, num_objects: int, fps: int | None = None, motion: bool = False, **scene_options
) -> RenderedClip:
    """A scene and its per-second frames: at whole seconds, or with ``fps`` at AVSBench's sampling instants."""
    scene = make_scene(rng, size, seconds, num_objects, motion=motion, **scene_options)
    times = sampling_times(seconds, fps) if fps else list(range(seconds))
    if motion:
        sample_sounding(scene, times)
    frames, visible = zip(*(render_frame(scene, time) for time in times))
    return RenderedClip(scene, list(frames), list(visible), render_audio(scene, rng))


def split_of(index: int, count: int, splits: tuple[str, ...] = ("train", "val", "test")) -> str:
    """Deterministic split: the last ~20% go to each evaluation split, the rest to train."""
    held_out = len(splits) - 1
    per_split = max(1, round(0.2 * count)) if count >= len(splits) else 0
    position = count - 1 - index
    if position < per_split * held_out:
        return splits[held_out - position // per_split]
    return splits[0]


def write_wav(path: Path, waveform: np.ndarray, rate: int = AUDIO_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)


def _write_record(
    record: ClipRecord, clip: RenderedClip, mask_image: Callable[[int], Image.Image], media: bool = True
) -> None:
    """Write a clip's masks to the paths ``record`` names, and its frames and audio unless ``media`` is False."""
    if media:
        for second, path in enumerate(record.frames):
            _save(Image.fromarray(clip.frames[second]), path)
        write_wav(record.audio, clip.audio)
    for second, path in enumerate(record.masks):
        if path is not None:
            _save(mask_image(second), path)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _palette_image(indices: np.ndarray) -> Image.Image:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(voc_palette(256).flatten().tolist())
    return image


def write_dataset(
    layout: str, out: str | Path, videos: int, seed: int = 0, size: int = 224, fps: int | None = None, motion: bool = False
) -> dict[str, int]:
    """Write ``videos`` synthetic clips in ``layout``; returns the number of rows per split.

    ``out`` must not exist yet or be an empty folder; it appears only once the
    whole dataset is written (see :mod:`avseg.outputs`). ``fps`` adds the
    videos and every-frame ground truth; ``motion`` (needs ``fps``) moves the
    objects within each second and switches sounds off the second boundaries.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if videos < 1:
        raise ConfigError(f"--videos must be at least 1, got {videos}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")
    if fps is not None and not 1 <= fps <= MAX_FPS:
        raise ConfigError(f"--fps must be between 1 and {MAX_FPS} frames per second, got {fps}")
    if fps is not None and size % 2:
        raise ConfigError(f"--size must be even with --fps (H.264 videos have even sizes), got {size}")
    if motion and fps is None:
        raise ConfigError("--motion needs --fps (the frame rate of the videos that show the motion)")
    writer = {"s4": _write_s4, "ms3": _write_ms3, "avss": _write_avss, "refavs": _write_refavs}[layout]
    with staged_folder(out) as staging:
        dense = DenseWriter(staging, fps, motion) if fps else None
        rows, objects = writer(staging, videos, seed, size, dense)
        (staging / OBJECTS_FILE).write_text(json.dumps(objects, indent=1), encoding="utf-8")
        if dense is not None:
            dense.close()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    return counts


def _timing(dense: DenseWriter | None) -> tuple[int | None, bool]:
    return (dense.fps, dense.motion) if dense is not None else (None, False)


def _objects_entry(clip: RenderedClip, dense: DenseWriter | None, clip_id: str, split: str) -> dict[str, list[list[str]]]:
    """The clip's ``synthetic_objects.json`` entry (and, with ``dense``, its video and every-frame truth)."""
    if dense is not None:
        dense.add(clip_id, split, clip.scene, clip.audio)
    seconds = range(clip.scene.seconds)
    return {
        "visible": [clip.object_names(s) for s in seconds],
        "sounding": [clip.object_names(s, sounding_only=True) for s in seconds],
    }


def _write_s4(out: Path, videos: int, seed: int, size: int, dense: DenseWriter | None):
    rows, objects = [], {}
    for index in range(videos):
        rng = np.random.default_rng([seed, index])
        clip = render_clip(rng, size, 5, int(rng.integers(2, 4)), *_timing(dense), single_source=True)
        source = next(obj for obj in clip.scene.objects if obj.sounding.any())
        row = {"name": f"synth{index:05d}", "start": "0", "category": source.cls.name, "split": split_of(index, videos)}
        record = S4.record(out, row)
        _write_record(record, clip, lambda s: Image.fromarray(clip.sounding_mask(s).astype(np.uint8) * 255, mode="L"))
        rows.append(row)
        objects[record.id] = _objects_entry(clip, dense, record.id, row["split"])
    _write_csv(out / S4.meta_file, rows)
    return rows, objects


def _write_ms3(out: Path, videos: int, seed: int, size: int, dense: DenseWriter | None):
    rows, objects = [], {}
    for index in range(videos):
        rng = np.random.default_rng([seed, index])
        clip = render_clip(rng, size, 5, int(rng.integers(2, 5)), *_timing(dense), silent=index % SILENT_EVERY == 3)
        row = {"name": f"synth{index:05d}", "split": split_of(index, videos)}
        record = MS3.record(out, row)
        _write_record(record, clip, lambda s: _palette_image(clip.sounding_labels(s, by="object")))
        rows.append(row)
        objects[record.id] = _objects_entry(clip, dense, record.id, row["split"])
    _write_csv(out / MS3.meta_file, rows)
    return rows, objects


def _write_avss(out: Path, videos: int, seed: int, size: int, dense: DenseWriter | None):
    subsets = tuple(AVSS_SUBSET_FRAMES)
    palette = voc_palette(len(CLASSES) + 1)
    rows, objects = [], {}
    for index in range(videos):
        rng = np.random.default_rng([seed, index])
        subset = subsets[index % len(subsets)]
        silent = index % SILENT_EVERY == 3 and subset != "v1s"
        clip = render_clip(
            rng, size, AVSS_SUBSET_FRAMES[subset], int(rng.integers(2, 5)), *_timing(dense), single_source=subset == "v1s", silent=silent
        )
        sounding = sorted({obj.cls.name for obj in clip.scene.objects if obj.sounding.any()})
        row = {
            "vid": f"vid{index:05d}",
            "uid": f"vid{index:05d}_{index}",
            "s_min": "0",
            "s_sec": "0",
            "a_obj": ",".join(sounding),
            "split": split_of(index, videos),
            "label": subset,
        }
        record = AVSS.record(out, row)
        _write_record(record, clip, lambda s: Image.fromarray(palette[clip.sounding_labels(s)]))
        semantic_dir = record.audio.parent / "labels_semantic"
        for second, path in enumerate(record.masks):
            if path is not None:
                _save(Image.fromarray(clip.sounding_labels(second), mode="L"), semantic_dir / path.name)
        rows.append(row)
        objects[record.id] = _objects_entry(clip, dense, record.id, row["split"])
    _write_csv(out / AVSS.meta_file, rows)
    label2idx = {"background": 1} | {cls.name: k + 2 for k, cls in enumerate(CLASSES)}
    (out / AVSS.label_file).write_text(json.dumps(label2idx, indent=1), encoding="utf-8")
    return rows, objects


def _write_refavs(out: Path, videos: int, seed: int, size: int, dense: DenseWriter | None):
    rows, objects = [], {}
    splits = ("train", "val", "test_s", "test_u")
    for index in range(videos):
        rng = np.random.default_rng([seed, index])
        clip = render_clip(rng, size, 10, int(rng.integers(2, 4)), *_timing(dense), silent=index % SILENT_EVERY == 3)
        vid = f"vid{index:05d}"
        split = split_of(index, videos, splits)
        clip_rows = []
        for k, obj in enumerate(clip.scene.objects):
            clip_rows.append({"vid": vid, "uid": f"{vid}_{obj.cls.name}_{k}", "split": split, "fid": str(k), "exp": f"the {obj.cls.name}"})
        for k, row in enumerate(clip_rows):
            mask = lambda s: Image.fromarray(clip.visible[s][k].astype(np.uint8) * 255, mode="L")  # noqa: E731
            _write_record(RefAVS.record(out, row), clip, mask, media=k == 0)
        if split == "test_s":
            present = {obj.cls.name for obj in clip.scene.objects}
            absent = next(cls.name for cls in CLASSES if cls.name not in present)
            clip_rows.append({"vid": vid, "uid": f"null_c-{vid}_null_0", "split": "test_n", "fid": "0", "exp": f"the sounding {absent}"})
        rows.extend(clip_rows)
        objects[vid] = _objects_entry(clip, dense, vid, split)
    _write_csv(out / RefAVS.meta_file, rows)
    return rows, objects


def load_objects(root: str | Path) -> dict[str, dict[str, list[list[str]]]]:
    """Per clip id: the visible and sounding object names of each frame (oracle cues)."""
    from avseg.data.files import require_file

    path = require_file(Path(root) / OBJECTS_FILE)
    return json.loads(path.read_text(encoding="utf-8"))


def attach_sounding_labels(reader: ClipReader) -> ClipReader:
    """Give ``reader`` the synthetic benchmark's per-frame sounding names (``synthetic_objects.json``) as its
    ``label_source``, for the layout whose files name no category (MS3), and its visible names as its
    ``visible_source`` (every layout); returns ``reader``."""
    objects = load_objects(reader.root)
    reader.label_source = {clip: entry["sounding"] for clip, entry in objects.items()}
    reader.visible_source = {clip: entry["visible"] for clip, entry in objects.items()}
    return reader
