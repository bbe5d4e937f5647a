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

A dense rate needs a constant frame rate (frame ``n`` shown at ``n/fps``): a
video whose container gives no frame rate, or whose average frame rate differs
from its nominal one (ffprobe's ``avg_frame_rate`` vs ``r_frame_rate``) by more
than 1%, or whose frames fall off the ``n/fps`` grid while decoding, is refused.
``--rate 1`` keeps its timestamp-based sampling, which copes with variable rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from avseg.data.audio_span import CONTEXT_SECONDS, AudioSpan, centred_window_start
from avseg.errors import ConfigError, MediaError
from avseg.media import MediaInfo, avsbench_frame_index, iter_audio, iter_frames, probe

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

    def describe(self, fps: float) -> str:
        if self.avsbench:
            return "avsbench, one frame per second"
        rate = f"every frame ({fps:g} fps)" if self.rate is None else f"{self.rate} frames per second"
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


@dataclass
class ShownFrame:
    """A decoded frame of the overlay, tinted with the mask of output ``interval``."""

    interval: int
    image: np.ndarray


def check_sampling(video: Path, sampling: Sampling) -> float:
    """The video's frame rate, once ``sampling`` fits it (one line per problem); before any work."""
    info = probe(video)
    if not info.has_video:
        raise MediaError(video, "has no video stream")
    if not info.fps:
        raise MediaError(video, "video stream has no frame rate")
    if sampling.rate is not None and sampling.rate > info.fps + _TIME_EPSILON:
        raise ConfigError(f"--rate {sampling.rate} is more than {video.name}'s {info.fps:g} frames per second; use --rate all for every frame")
    rate = info.fps if sampling.rate is None else sampling.rate
    if sampling.keyframes > rate + _TIME_EPSILON:
        raise ConfigError(f"--keyframes {sampling.keyframes} is more than the {rate:g} output frames per second of {video.name}")
    if not sampling.avsbench:
        _check_constant_rate(video, info)
    return info.fps


def _check_constant_rate(video: Path, info: MediaInfo) -> None:
    average, nominal = info.fps, info.nominal_fps
    if average and nominal and abs(average / nominal - 1) > 0.01:
        raise MediaError(video, f"has a variable frame rate (average {average:g} fps, nominal {nominal:g}); "
                         "re-encode it at a constant rate (ffmpeg -i IN -vf fps=25 OUT.mp4) or use --rate 1")


def stream_frames(video: Path, sampling: Sampling, fps: float, sample_rate: int, window: int, propagated: bool) -> Iterator[OutputFrame | ShownFrame]:
    """The video decoded once, in order: each decoded frame as a :class:`ShownFrame`, preceded by the
    :class:`OutputFrame` (s) it provides, with their audio (only on the frames the model sees)."""
    step = fps if sampling.rate is None else fps / sampling.rate
    audio = _SecondChunks(video, sample_rate, window) if sampling.avsbench else _CentredWindows(video, sample_rate)
    outputs, last_key, first_index = 0, -1, None
    for decoded, frame in enumerate(iter_frames(video, "all")):
        if first_index is None:
            first_index = frame.index
        if not sampling.avsbench and frame.index != first_index + decoded:
            raise MediaError(video, f"has a variable frame rate: frame {decoded} is shown at {frame.time:.3f}s, off the {fps:g} fps grid; "
                             "re-encode it at a constant rate or use --rate 1")
        if sampling.rate is None:
            due, interval = 1, decoded
        else:  # a frame that jumps over several sampling points stands in for each (as AVSBench sampling does)
            due = 0
            while frame.index >= avsbench_frame_index(outputs + due, step):
                due += 1
            interval = int(frame.time * sampling.rate + (_TIME_EPSILON if sampling.rate > 1 else 0.0))
        for _ in range(due):
            key_interval = int(frame.time * sampling.keyframes + _TIME_EPSILON)
            keyframe = sampling.avsbench or not propagated or key_interval != last_key
            last_key = key_interval
            output = OutputFrame(outputs, frame.index, frame.time, frame.image, keyframe)
            if keyframe:
                output.audio = audio.next_for(output)
            outputs += 1
            yield output
        yield ShownFrame(interval, frame.image)
    if outputs == 0:
        raise MediaError(video, "is shorter than its first sampling instant (15/16 of a second); nothing to sample")


class _SecondChunks:
    """``--rate 1``: ``window`` seconds of contiguous audio on the first frame of each model call."""

    def __init__(self, video: Path, sample_rate: int, window: int):
        self.chunks = iter_audio(video, sample_rate, window)
        self.window = window
        self.seen = 0

    def next_for(self, output: OutputFrame) -> np.ndarray:
        self.seen += 1
        if (self.seen - 1) % self.window:
            return np.zeros(0, dtype=np.float32)
        return next(self.chunks, np.zeros(0, dtype=np.float32))


class _CentredWindows:
    """Dense rates: the second of audio centred on each frame, and the ``CONTEXT_SECONDS`` either side of it
    (:mod:`avseg.data.audio_span`), streamed (frames come in time order)."""

    def __init__(self, video: Path, sample_rate: int):
        self.chunks = iter_audio(video, sample_rate, 1)
        self.rate = sample_rate
        self.buffer = np.zeros(0, dtype=np.float32)
        self.start = 0
        self.ended = False

    def next_for(self, output: OutputFrame) -> np.ndarray:
        """``output``'s centred window; its context goes into ``output.context`` (starting at track sample
        ``output.context_start``)."""
        margin = CONTEXT_SECONDS * self.rate
        first = centred_window_start(output.time, self.rate) - margin
        last = first + self.rate + 2 * margin
        while not self.ended and self.start + len(self.buffer) < last:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.ended = True
            else:
                self.buffer = np.concatenate([self.buffer, chunk])
        drop = min(len(self.buffer), max(0, first - self.start))
        self.buffer, self.start = self.buffer[drop:], self.start + drop
        context = np.zeros(last - first, dtype=np.float32)
        low, high = max(first, self.start), min(last, self.start + len(self.buffer))
        if high > low:
            context[low - first : high - first] = self.buffer[low - self.start : high - self.start]
        output.context, output.context_start = context, first
        output.track_length = self.start + len(self.buffer) if self.ended else None
        return context[margin : margin + self.rate]


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
