"""What the web app feeds the model: checked uploads, audio-replaced copies and synthetic examples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avseg.errors import ConfigError, MediaError
from avseg.media import MediaInfo, probe


def check_max_seconds(seconds: float) -> float:
    """``seconds`` if it is a length limit: positive and finite (a NaN limit compares false with every
    length, so it would switch the limit off, and so would infinity)."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--max-seconds must be a positive number of seconds, got {seconds:g}")
    return seconds


def check_upload(path: str | Path, max_seconds: float, name: str | None = None) -> MediaInfo:
    """The upload's media info, or a :class:`MediaError` naming the file by ``name`` (the user's file
    name, not the server's temporary path): not a video, no video stream, or longer than ``max_seconds``."""
    name = name or Path(path).name
    info = _probe_as(path, name)
    if not info.has_video:
        raise MediaError(name, "has no video stream (an audio file?); upload a video")
    if info.duration > max_seconds:
        raise MediaError(name, f"is {info.duration:.0f}s long; this app segments videos up to {max_seconds:g}s (--max-seconds)")
    return info


def check_audio_source(path: str | Path, name: str | None = None) -> None:
    """A :class:`MediaError` naming the file by ``name`` unless it has an audio stream to swap in."""
    name = name or Path(path).name
    if not _probe_as(path, name).has_audio:
        raise MediaError(name, "has no audio stream to swap in")


def _probe_as(path: str | Path, name: str) -> MediaInfo:
    try:
        return probe(path)
    except MediaError as error:
        raise MediaError(name, str(error).removeprefix(f"{path}: ")) from None


@dataclass(frozen=True)
class Example:
    video: Path
    cues: str
    """The names of the objects in the video, as TeSO's cues ("bell, drum")."""


def write_examples(folder: str | Path, count: int = 2, seconds: int = 6, size: int = 64, fps: int = 8) -> list[Example]:
    """Synthetic videos like the demo's (moving shapes, some of them sounding), drawn from fixed seeds,
    so the app works offline with the demo model. Each second's frame is held for ``fps`` frames."""
    from avseg.data.scene import AUDIO_RATE
    from avseg.data.synthetic import render_clip
    from avseg.media import write_video

    examples = []
    for index in range(count):
        clip = render_clip(np.random.default_rng([2026, index]), size, seconds, num_objects=3)
        video = write_video(Path(folder) / f"synthetic-{index}.mp4", np.repeat(np.stack(clip.frames), fps, axis=0), fps, clip.audio, AUDIO_RATE)
        names = sorted({name for second in range(seconds) for name in clip.object_names(second)})
        examples.append(Example(video, ", ".join(names)))
    return examples
