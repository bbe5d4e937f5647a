"""``avseg segment``: the sounding objects of any video, streamed.

For each video, into ``OUT/<video stem>/`` (written under a temporary name
and moved into place whole, replacing an earlier run's result; see
:mod:`avseg.outputs`):

* ``masks/00000.png, ...``: one 0/255 mask per second, at the video's own
  resolution, for the frame AVSBench would sample (``int(l*fps + 15/16*fps)``);
* ``overlay.mp4``: every frame of the video with the mask of its second
  tinted in, and the original audio track copied unchanged;
* ``summary.json``: per mask, its time, mask area (fraction of the frame)
  and sounding score (the highest foreground probability), plus the model.
  A segmenter with ``predict_with_details`` (logits and per-frame fields)
  adds its own fields or replaces the score (zero-shot: CLAP's top class
  probability and the prompted classes).

The video is decoded as streams (sampled frames and audio together, then all
frames again for the overlay) and the model runs on windows of ``window``
seconds, so memory stays bounded whatever the video's length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from avseg.data.clip import Clip
from avseg.engine.memory import release_freed_memory, reuse_freed_memory
from avseg.errors import ConfigError
from avseg.media import VideoWriter, iter_audio, iter_frames, probe
from avseg.outputs import check_writable, staged_folder

OVERLAY_COLOUR = np.array([255, 40, 40], dtype=np.float32)
OUTPUT_NAMES = ("masks", "overlay.mp4", "summary.json")
"""What :func:`segment_video` writes in a video's folder; a folder holding only these is replaced."""


def segment_video(
    segmenter: Any,
    video: str | Path,
    out_root: str | Path,
    sample_rate: int,
    model_name: str,
    window: int = 5,
    threshold: float = 0.5,
    progress: bool = True,
) -> Path:
    """Segment ``video`` into ``out_root/<stem>/``, written whole or not at all (see :mod:`avseg.outputs`)."""
    if window < 1:
        raise ConfigError(f"window must be at least 1 second, got {window}")
    reuse_freed_memory()
    video = Path(video)
    out = Path(out_root) / video.stem
    info = probe(video)
    with staged_folder(out, replaceable=OUTPUT_NAMES) as staging:
        rows = _segment_masks(segmenter, video, staging / "masks", sample_rate, window, threshold, progress, info.duration)
        write_overlay(video, staging / "masks", staging / "overlay.mp4", info.fps, len(rows))
        summary = {"model": model_name, "video": str(video), "sampling": "avsbench, one frame per second", "frames": rows}
        (staging / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    return out


def _segment_masks(
    segmenter: Any, video: Path, masks_dir: Path, sample_rate: int, window: int, threshold: float, progress: bool, duration: float
) -> list[dict[str, Any]]:
    """Write one mask per sampled frame into ``masks_dir``; return the summary rows."""
    masks_dir.mkdir()
    audio = iter_audio(video, sample_rate, window)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=int(duration), desc=video.name, unit="s", disable=None if progress else True)  # None: only on a TTY

    def flush(samples: list) -> None:
        clip = Clip(
            frames=np.stack([s.image for s in samples]),
            waveform=next(audio, np.zeros(0, dtype=np.float32)),
            sample_rate=sample_rate,
            meta={"id": video.stem},
        )
        logits, details = _predict(segmenter, clip)
        probabilities = _foreground_probability(logits)
        for sample, probability, detail in zip(samples, probabilities, details):
            mask = probability > threshold
            Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(masks_dir / f"{len(rows):05d}.png")
            rows.append({"time": sample.time, "mask_area": float(mask.float().mean()), "sounding_score": float(probability.max()), **detail})
        bar.update(len(samples))
        release_freed_memory()  # between windows, so peak RSS stays that of one window

    buffer = []
    for sample in iter_frames(video, "avsbench"):
        buffer.append(sample)
        if len(buffer) == window:
            flush(buffer)
            buffer = []
    if buffer:
        flush(buffer)
    bar.close()
    return rows


def check_output_folders(videos: Sequence[str | Path], out_root: str | Path) -> None:
    """Refuse, before any work, videos whose outputs would go to the same ``OUT/<stem>/`` folder,
    or to one that holds files avseg did not write."""
    seen: dict[str, Path] = {}
    for video in map(Path, videos):
        if video.stem in seen:
            raise ConfigError(f"{seen[video.stem]} and {video} would both write to OUT/{video.stem}/; segment them in separate calls or rename one")
        seen[video.stem] = video
        check_writable(Path(out_root) / video.stem, OUTPUT_NAMES)


def _predict(segmenter: Any, clip: Clip) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The logits of one clip and, per frame, the summary fields the segmenter adds (if it has any)."""
    if hasattr(segmenter, "predict_with_details"):
        logits, details = segmenter.predict_with_details([clip])
        return logits[0], details[0]
    logits = segmenter.predict([clip])[0]
    return logits, [{}] * len(logits)


def _foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """Binary logits ``(T, H, W)`` -> sigmoid; per-class log-scores ``(T, C, H, W)`` -> 1 - p(background)."""
    if logits.ndim == 4:
        return 1 - logits.softmax(1)[:, 0]
    return torch.sigmoid(logits)


def write_overlay(video: Path, masks_dir: Path, path: Path, fps: float, num_masks: int, alpha: float = 0.5) -> None:
    """Every frame of ``video`` with the mask of its second tinted in, and the original audio."""
    info = probe(video)
    writer = VideoWriter(path, fps, info.width, info.height, audio_from=video if info.has_audio else None)
    current, mask = -1, None
    with writer:
        for frame in iter_frames(video, "all"):
            second = min(int(frame.time), num_masks - 1)
            if second != current:
                current = second
                release_freed_memory()  # once a second: every frame passes through the heap here
                mask = np.asarray(Image.open(masks_dir / f"{second:05d}.png")) > 0
            image = frame.image.astype(np.float32)
            image[mask] = (1 - alpha) * image[mask] + alpha * OVERLAY_COLOUR
            image[_outline(mask)] = 255.0  # visible whatever the object's own colour
            writer.write_frame(image.astype(np.uint8))


def _outline(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def fixed_cues(names: Sequence[str], clip_id: str, seconds: int) -> dict[str, list[list[str]]]:
    """The same cue names for every second of a video (user-supplied cues for TeSO)."""
    return {clip_id: [list(names)] * seconds}
