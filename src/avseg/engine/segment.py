"""``avseg segment``: the sounding objects of any video, in every frame, streamed.

For each video, into ``OUT/<video stem>/`` (written under a temporary name
and moved into place whole, replacing an earlier run's result; see
:mod:`avseg.outputs`):

* ``masks/00000.png, ...``: one 0/255 mask per output frame (by default every
  decoded frame; :mod:`avseg.engine.dense` says which frames and which audio), at
  the video's own resolution; with ``mask_format="rle"`` one ``masks.jsonl``
  instead (COCO RLE, one line per frame);
* ``overlay.mp4``: every frame of the video with its own mask (or, at a rate
  below the frame rate, its interval's mask) tinted in, and the original audio
  track copied unchanged;
* ``summary.json``: per output frame its time, mask area (fraction of the frame)
  and sounding score (the highest foreground probability), plus the model; at a
  dense rate also the mask's number (``mask``), the video frame it was made from
  (``frame``; :mod:`avseg.engine.frame_outputs` gives each key its one meaning)
  and how its mask was made (``inferred`` by the model, or with a propagator
  ``keyframe`` / ``propagated``). A rotated video (a phone's portrait video) is
  segmented upright, as players show it, and ``orientation`` records the rotation
  applied; a video without an audio track (``allow_silent``) is segmented with
  silence, and ``audio`` says so.
  A segmenter with ``predict_with_details`` (logits and per-frame fields) adds
  its own fields or replaces the score (zero-shot: CLAP's top class probability
  and the prompted classes; VCT: where its mask images came from, which the
  frames propagated from a keyframe repeat). ``rate=1`` writes exactly what avseg wrote before
  dense output (AVSBench sampling, the same files byte for byte).

The video is decoded once, in a background thread a few frames ahead of the
model, and masks, summary rows and overlay frames are written by another
(:mod:`avseg.engine.stream`); the model runs on ``window`` frames per call, so
memory stays bounded whatever the video's length (frames wait at most
``window`` model frames for their mask).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from avseg.data.clip import Clip
from avseg.engine.dense import (
    MAX_WINDOW,
    OutputFrame,
    Sampling,
    ShownFrame,
    VideoTiming,
    audio_span,
    check_sampling,
    estimated_outputs,
    stream_frames,
)
from avseg.engine.frame_outputs import MASK_FORMATS, FrameOutputs
from avseg.engine.memory import model_call, release_freed_memory, reuse_freed_memory
from avseg.engine.stream import Prefetch, Worker
from avseg.errors import ConfigError
from avseg.media.write import partial_path
from avseg.outputs import safe_folder_name, staged_folder

RECORD = "record.json"
"""The completion record ``avseg segment`` commits with a video's outputs (:mod:`avseg.engine.corpus`)."""
OUTPUT_NAMES = {"masks": {"*.png": None}, "masks.jsonl": None, "overlay.mp4": None, "summary.json": None, RECORD: None}
"""What :func:`segment_video` writes in a video's folder (:data:`avseg.outputs.Layout`); a folder holding only
these is replaced."""
STAGING_NAMES = {**OUTPUT_NAMES, partial_path("overlay.mp4").name: None}
"""What a video's staging folder may hold while it is written (the overlay under its temporary name): what a
killed run leaves, and a rerun removes (:func:`avseg.outputs.remove_leftovers`)."""
QUEUE_FRAMES = 16
"""Decoded frames the decoder may run ahead, and frames the writer may lag behind."""
MISSING_AUDIO = "missing: the video has no audio track, so the model heard silence (--allow-silent)"
CARRIED_DETAILS = ("mask_images", "approximate")
"""The per-frame fields of a keyframe that the masks propagated from it repeat: how its mask was made (VCT's mask
images), which holds for them too. The others (a zero-shot model's scores of the keyframe) are the keyframe's own."""


@dataclass
class OpenedVideo:
    """A video that passed its checks and is being decoded in a background thread (:func:`open_video`)."""

    path: Path
    timing: VideoTiming
    frames: Prefetch
    """The output and shown frames of :func:`~avseg.engine.dense.stream_frames`, decoded ahead."""

    def close(self) -> None:
        self.frames.close()

    def __enter__(self) -> OpenedVideo:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_video(
    video: str | Path, sampling: Sampling, sample_rate: int, window: int, propagated: bool, allow_silent: bool = False, channels: int = 1
) -> OpenedVideo:
    """Check ``video`` (one line per problem) and start decoding it, at most :data:`QUEUE_FRAMES` frames ahead
    (``channels``: see :func:`avseg.engine.dense.stream_frames`). A corpus opens the next video this way while the
    model runs on the current one; close it when it is not segmented."""
    video = Path(video)
    timing = check_sampling(video, sampling, allow_silent)
    frames = stream_frames(video, sampling, timing.fps, sample_rate, window, propagated, channels)
    return OpenedVideo(video, timing, Prefetch(frames, QUEUE_FRAMES))


def segment_video(
    segmenter: Any,
    video: str | Path,
    out_root: str | Path,
    sample_rate: int,
    model_name: str,
    window: int = 5,
    threshold: float = 0.5,
    progress: bool = True,
    sampling: Sampling = Sampling(),
    propagator: Any = None,
    mask_format: str = "png",
    video_name: str | None = None,
    allow_silent: bool = False,
    opened: OpenedVideo | None = None,
    on_complete: Callable[[Path, int], None] | None = None,
) -> Path:
    """Segment ``video`` into ``out_root/<stem>/``, written whole or not at all (see :mod:`avseg.outputs`).
    ``window``: frames per model call; ``propagator``: carries keyframe masks over the other frames
    (:class:`avseg.propagation.Propagator`), or None for the model on every output frame; ``video_name``: what
    ``summary.json`` calls the video (the app gives the user's file name, not its upload path); ``allow_silent``:
    segment a video without an audio track with silence (else it is refused). A segmenter whose ``audio_channels``
    is 2 (AuralSAM2's stereo VGGish) hears the track's two channels (``clip.channels``; a mono track duplicated).
    ``opened``: ``video`` already opened by :func:`open_video` with these settings (it is closed here).
    ``on_complete(folder, masks)``: called once everything is written, with the folder not yet in place and the
    number of masks, so that what it adds there (the corpus's completion record) is committed with the outputs."""
    check_window(window)
    if mask_format not in MASK_FORMATS:
        raise ConfigError(f"--format {mask_format!r}: expected one of {', '.join(MASK_FORMATS)}")
    reuse_freed_memory()
    video = Path(video)
    out = Path(out_root) / output_folder_name(video)
    channels = getattr(segmenter, "audio_channels", 1)
    with opened or open_video(video, sampling, sample_rate, window, propagator is not None, allow_silent, channels) as decoded:
        info = decoded.timing.info
        header = _summary_header(model_name, video_name or str(video), sampling, decoded.timing)
        with staged_folder(out, replaceable=OUTPUT_NAMES) as staging:
            outputs = FrameOutputs(staging, video, info.fps, (info.width, info.height), info.has_audio, header, mask_format, time_base=decoded.timing.time_base)
            try:
                # leave=None: a bar under a corpus's bar is cleared when done, a lone video's stays
                bar = tqdm(total=estimated_outputs(info.duration, decoded.timing.fps, sampling), desc=video.name, unit="frame", leave=None, disable=None if progress else True)
                with bar:
                    writer = Worker(outputs.handle, QUEUE_FRAMES)
                    try:
                        _Loop(segmenter, video.stem, sample_rate, window, threshold, propagator, sampling, writer, bar).run(decoded.frames)
                    finally:
                        writer.close()
            except BaseException:
                outputs.abort()
                raise
            outputs.close()
            if on_complete is not None:
                on_complete(staging, outputs.rows)
    return out


def _summary_header(model_name: str, video_name: str, sampling: Sampling, timing: VideoTiming) -> dict[str, Any]:
    """``summary.json`` before its rows; what was done to an unusual video is named only when it was done."""
    header: dict[str, Any] = {"model": model_name, "video": video_name, "sampling": sampling.describe(timing)}
    if timing.info.rotation or timing.info.mirrored:
        header["orientation"] = {"rotation": timing.info.rotation, "mirrored": timing.info.mirrored, "applied": "masks and overlay are upright, as players show the video"}
    if not timing.info.has_audio:
        header["audio"] = MISSING_AUDIO
    return header


def check_window(window: int) -> None:
    if not 1 <= window <= MAX_WINDOW:
        raise ConfigError(f"--window must be between 1 and {MAX_WINDOW} frames per model call, got {window}")


def output_folder_name(video: Path) -> str:
    """``OUT/<name>/`` for ``video``: its stem, refused when that is not one plain folder name (``...mp4``)."""
    return safe_folder_name(video.stem, f"{video}: the output folder named after this video")


class _Loop:
    """Frames in decode order -> masks: the model on ``window`` model frames at a time, the propagator
    (if any) on the frames between keyframes, each decoded frame written once its mask is known."""

    def __init__(self, segmenter, clip_id, sample_rate, window, threshold, propagator, sampling, writer, bar):
        self.segmenter, self.clip_id, self.sample_rate = segmenter, clip_id, sample_rate
        self.window, self.threshold, self.propagator, self.sampling = window, threshold, propagator, sampling
        self.writer, self.bar = writer, bar
        self.outputs: list[OutputFrame] = []
        self.shown: deque[ShownFrame] = deque()
        self.masks: dict[int, np.ndarray] = {}
        self.carried: dict[str, Any] = {}
        """The last keyframe's :data:`CARRIED_DETAILS`, for the frames propagated from it."""

    def run(self, frames) -> None:
        for item in frames:
            if isinstance(item, ShownFrame):
                self.shown.append(item)
                continue
            self.outputs.append(item)
            if sum(output.keyframe for output in self.outputs) == self.window:
                self.flush()
        self.flush()
        self.write_shown(final=True)

    def flush(self) -> None:
        with model_call():  # the writer thread gives freed memory back only between model calls
            self.mask_outputs()
        self.bar.update(len(self.outputs))
        self.outputs = []
        self.write_shown()
        release_freed_memory()  # after each model call, so peak RSS stays that of one call

    def mask_outputs(self) -> None:
        """The masks of the pending outputs (the model on the keyframes, the propagator on the rest), queued for writing."""
        keyframes = [output for output in self.outputs if output.keyframe]
        logits, details = _predict(self.segmenter, self._clip(keyframes)) if keyframes else (None, [])
        probabilities = iter(_foreground_probability(logits)) if keyframes else iter(())
        details = iter(details)
        for output in self.outputs:
            if output.keyframe:
                probability, detail = next(probabilities), next(details)
                self.carried = {key: detail[key] for key in CARRIED_DETAILS if key in detail}
            else:
                probability, detail = torch.from_numpy(np.asarray(self.propagator.step(output.image), dtype=np.float32)), dict(self.carried)
            mask = probability > self.threshold
            if output.keyframe and self.propagator is not None:
                self.propagator.start(output.image, mask.numpy())
            row = {"time": output.time, "mask_area": float(mask.float().mean()), "sounding_score": float(probability.max()), **detail}
            if not self.sampling.avsbench:
                kind = "propagated" if not output.keyframe else "keyframe" if self.propagator is not None else "inferred"
                row = {"mask": output.index, "frame": output.frame, **row, "kind": kind}
            self.masks[output.index] = mask.numpy()
            self.writer.put(("mask", output.index, output.frame, output.time, self.masks[output.index], row))

    def write_shown(self, final: bool = False) -> None:
        """Overlay frames whose mask is known (at the end: the rest, with the last mask, as before)."""
        last = max(self.masks, default=None)
        if last is None:
            return
        while self.shown and (final or self.shown[0].interval <= last):
            frame = self.shown.popleft()
            self.writer.put(("overlay", frame.image, frame.time, self.masks[min(frame.interval, last)]))
            for index in [k for k in self.masks if k < min(frame.interval, last)]:
                del self.masks[index]

    def _clip(self, keyframes: list[OutputFrame]) -> Clip:
        meta: dict[str, Any] = {"id": self.clip_id}
        if not self.sampling.avsbench:  # TeSO's per-second cues: the second each frame falls in; its audio context
            meta["seconds"] = [int(output.time) for output in keyframes]
            meta["audio_span"] = audio_span(keyframes, self.sample_rate)
        waveform = np.concatenate([output.audio for output in keyframes])
        channels = np.concatenate([output.channels for output in keyframes], axis=1) if keyframes[0].channels is not None else None
        return Clip(frames=np.stack([output.image for output in keyframes]), waveform=waveform, sample_rate=self.sample_rate, meta=meta, channels=channels)


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


def fixed_cues(names: Sequence[str], clip_id: str, seconds: int) -> dict[str, list[list[str]]]:
    """The same cue names for every frame of a model call (user-supplied cues for TeSO)."""
    return {clip_id: [list(names)] * seconds}
