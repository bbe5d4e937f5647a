"""Which frames ``avseg segment`` outputs, which of them the model sees, and the audio each one hears.

* ``--rate 1`` is AVSBench's sampling, exactly as before dense output existed: for
  second ``l`` the frame ``int(l*fps + 15/16*fps)``, with audio second ``[l, l+1)``
  (the model gets ``window`` seconds of contiguous audio per call), and the overlay
  holds a second's mask over that second.
* ``--rate N`` generalises the rule to intervals of ``1/N`` s (frame
  ``int((j + 15/16) * fps/N)`` for interval ``j``; the overlay holds its mask
  over the interval); ``--rate all`` outputs every decoded frame. Each output frame
  hears the 1-second window centred on its own time (silence past either end of
  the track), the length of audio every model was trained to pair with a frame.
  A model call gets a :class:`~avseg.data.clip.Clip` of ``window`` frames whose
  waveform is their windows one after the other, so a model that pairs frame
  ``i`` with second ``i`` of its clip pairs each frame with its own window. The
  clip's ``meta["audio_span"]`` (:class:`~avseg.data.audio_span.AudioSpan`)
  holds the frames' times and the audio ``CONTEXT_SECONDS`` around them, for a
  model that hears the seconds around a frame (TeSO): neighbouring frames of a
  dense call are 1/rate s apart, not the second before and after.
* With a propagator, the first output frame of each ``1/keyframes`` s interval is
  a keyframe: the model segments it and its mask re-anchors the propagator, which
  carries the mask over the frames in between.

Frames are placed by their presentation times (:mod:`avseg.media.read`), so all of
this holds for variable-frame-rate video too: every decoded frame has its own time
and window, ``--rate N`` takes the frame shown at each interval's instant, and the
overlay keeps every frame's own time. A video without an audio track is refused
unless ``allow_silent``: then every model hears silence (what each model makes of
silence is in the README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from avseg.data.audio_span import CONTEXT_SECONDS, AudioSpan, centred_window_start
from avseg.errors import ConfigError, MediaError
from avseg.media import (
    MediaInfo,
    check_audio_track,
    check_frame_times,
    decode_frames,
    iter_audio,
    probe,
    sampling_instants,
)

MAX_WINDOW = 256
"""Frames per model call beyond which ``--window`` is a typo: no device holds a model's activations for more."""
_TIME_EPSILON = 1e-6  # a frame time a hair under a boundary (float rounding of pts * time_base) is on it


@dataclass(frozen=True)
class Sampling:
    """``rate``: output frames per second (None: every decoded frame); ``keyframes``: model frames per second
    with a propagator."""

    rate: int | None = None
    keyframes: int = 1

    @property
    def avsbench(self) -> bool:
        return self.rate == 1

    def describe(self, video: VideoTiming) -> str:
        if self.avsbench:
            return "avsbench, one frame per second"
        fps = f"a variable rate, {video.fps:g} fps on average" if video.variable else f"{video.fps:g} fps"
        rate = f"every frame ({fps})" if self.rate is None else f"{self.rate} frames per second"
        return f"{rate}, each with the 1-second audio window centred on it"


@dataclass
class OutputFrame:
    """A frame that gets a mask: ``index`` among the outputs, ``frame`` its index in the video."""

    index: int
    frame: int
    time: float
    image: np.ndarray
    keyframe: bool
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    context: np.ndarray | None = None
    """Dense rates, model frames: the audio from ``CONTEXT_SECONDS`` before ``audio`` to as many after it."""
    context_start: int = 0
    track_length: int | None = None
    channels: np.ndarray | None = None
    """Models that hear stereo (``channels=2``): ``audio``'s two channels ``(2, S)`` (``audio`` is their mean)."""


@dataclass
class ShownFrame:
    """A decoded frame of the overlay, shown at ``time``, tinted with the mask of output ``interval``."""

    interval: int
    time: float
    image: np.ndarray


@dataclass(frozen=True)
class VideoTiming:
    """What segmenting a video needs to know before decoding it: its header, and whether its frames keep
    their own times in a time base of their own (a variable rate) or fall on the grid of its rate."""

    info: MediaInfo
    time_base: Fraction | None
    """A variable-rate video's time base (its overlay frames keep their own times in it); None at a constant rate."""

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def variable(self) -> bool:
        return self.time_base is not None


def check_sampling(video: Path, sampling: Sampling, allow_silent: bool = False) -> VideoTiming:
    """The video's timing, once ``sampling`` fits it and it has audio (or ``allow_silent``): one line per
    problem, before any work."""
    info = probe(video)
    if not info.has_video:
        raise MediaError(video, "has no video stream")
    if not info.fps:
        raise MediaError(video, "video stream has no frame rate")
    check_audio_track(video, info, allow_silent)
    if sampling.rate is not None and sampling.rate > info.fps + _TIME_EPSILON:
        raise ConfigError(f"--rate {sampling.rate} is more than {video.name}'s {info.fps:g} frames per second; use --rate all for every frame")
    rate = info.fps if sampling.rate is None else sampling.rate
    if sampling.keyframes > rate + _TIME_EPSILON:
        raise ConfigError(f"--keyframes {sampling.keyframes} is more than the {rate:g} output frames per second of {video.name}")
    return VideoTiming(info, check_frame_times(video, info.fps))


def stream_frames(
    video: Path, sampling: Sampling, fps: float, sample_rate: int, window: int, propagated: bool, channels: int = 1
) -> Iterator[OutputFrame | ShownFrame]:
    """The video decoded once, in order: each decoded frame as a :class:`ShownFrame`, preceded by the
    :class:`OutputFrame` (s) it provides, with their audio (only on the frames the model sees; silence
    for a video without an audio track). ``channels=2``: the track's two channels too (a mono track
    duplicated; see :func:`avseg.media.iter_audio`), for a model that hears stereo."""
    audio = _SecondChunks(video, sample_rate, window, channels) if sampling.avsbench else _CentredWindows(video, sample_rate, channels)
    frames = decode_frames(video)
    # at a rate, a frame that stays on screen over several sampling instants stands in for each (as AVSBench's rule)
    paired = ((frame, 1) for frame in frames) if sampling.rate is None else sampling_instants(frames, sampling.rate, fps)
    outputs, last_key = 0, -1
    for frame, due in paired:
        if sampling.rate is None:
            interval = frame.index
        else:
            interval = max(0, int(frame.time * sampling.rate + (_TIME_EPSILON if sampling.rate > 1 else 0.0)))
        for _ in range(due):
            key_interval = int(frame.time * sampling.keyframes + _TIME_EPSILON)
            keyframe = sampling.avsbench or not propagated or key_interval != last_key
            last_key = key_interval
            output = OutputFrame(outputs, frame.index, frame.time, frame.image, keyframe)
            if keyframe:
                heard = audio.next_for(output)
                output.audio, output.channels = (heard, None) if channels == 1 else (heard.mean(axis=0), heard)
            outputs += 1
            yield output
        yield ShownFrame(interval, frame.time, frame.image)
    if outputs == 0:
        first = "15/16 of a second" if sampling.rate in (None, 1) else f"15/16 of 1/{sampling.rate} s"
        raise MediaError(video, f"is shorter than its first sampling instant ({first}); nothing to sample")


class _SecondChunks:
    """``--rate 1``: ``window`` seconds of contiguous audio on the first frame of each model call."""

    def __init__(self, video: Path, sample_rate: int, window: int, channels: int = 1):
        self.chunks = iter_audio(video, sample_rate, window, missing="silence", channels=channels)
        self.window = window
        self.seen = 0
        self.empty = np.zeros(0 if channels == 1 else (channels, 0), dtype=np.float32)

    def next_for(self, output: OutputFrame) -> np.ndarray:
        self.seen += 1
        if (self.seen - 1) % self.window:
            return self.empty.copy()
        return next(self.chunks, self.empty.copy())


class _CentredWindows:
    """Dense rates: the second of audio centred on each frame, and the ``CONTEXT_SECONDS`` either side of it
    (:mod:`avseg.data.audio_span`), streamed (frames come in time order); ``channels=2``: ``(2, S)`` windows of
    the track's two channels (the context is then their mean)."""

    def __init__(self, video: Path, sample_rate: int, channels: int = 1):
        self.chunks = iter_audio(video, sample_rate, 1, missing="silence", channels=channels)
        self.rate = sample_rate
        self.lead = () if channels == 1 else (channels,)
        self.buffer = np.zeros((*self.lead, 0), dtype=np.float32)
        self.start = 0
        self.ended = False

    def next_for(self, output: OutputFrame) -> np.ndarray:
        """``output``'s centred window; its context goes into ``output.context`` (starting at track sample
        ``output.context_start``)."""
        margin = CONTEXT_SECONDS * self.rate
        first = centred_window_start(output.time, self.rate) - margin
        last = first + self.rate + 2 * margin
        held = lambda: self.buffer.shape[-1]  # noqa: E731
        while not self.ended and self.start + held() < last:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.ended = True
            else:
                self.buffer = np.concatenate([self.buffer, chunk], axis=-1)
        drop = min(held(), max(0, first - self.start))
        self.buffer, self.start = self.buffer[..., drop:], self.start + drop
        context = np.zeros((*self.lead, last - first), dtype=np.float32)
        low, high = max(first, self.start), min(last, self.start + held())
        if high > low:
            context[..., low - first : high - first] = self.buffer[..., low - self.start : high - self.start]
        output.context, output.context_start = (context if not self.lead else context.mean(axis=0)), first
        output.track_length = self.start + held() if self.ended else None
        return context[..., margin : margin + self.rate]


def audio_span(outputs: list[OutputFrame], sample_rate: int) -> AudioSpan:
    """The contexts of a model call's frames joined into one :class:`AudioSpan`."""
    start = outputs[0].context_start
    samples = np.zeros(outputs[-1].context_start + len(outputs[-1].context) - start, dtype=np.float32)
    for output in outputs:
        samples[output.context_start - start : output.context_start - start + len(output.context)] = output.context
    lengths = [output.track_length for output in outputs if output.track_length is not None]
    return AudioSpan(tuple(output.time for output in outputs), samples, start, sample_rate, max(lengths, default=None))


def estimated_outputs(duration: float, fps: float, sampling: Sampling) -> int:
    """For the progress bar: about how many output frames a video of ``duration`` seconds gives."""
    return max(1, int(duration * (fps if sampling.rate is None else sampling.rate)))
