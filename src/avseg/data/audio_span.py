"""The audio around a batch of frames, for models that hear more than each frame's own second.

A dense ``avseg segment`` call (:mod:`avseg.engine.dense`) gives the model a
:class:`~avseg.data.clip.Clip` whose waveform is each frame's 1-second window
centred on it, one after the other. A model that attends to the seconds
around a frame (TeSO's SeDAM: the windows centred at ``t-w .. t+w``) cannot
find them in that waveform, so the clip also carries, in
``clip.meta["audio_span"]``, an :class:`AudioSpan`: the frames' times and the
contiguous audio from ``CONTEXT_SECONDS`` before the first frame's window to
``CONTEXT_SECONDS`` after the last one's, silence past the track's ends.
A model needing more context than ``CONTEXT_SECONDS`` refuses the span.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTEXT_SECONDS = 2
"""Seconds of audio a dense clip carries beyond each frame's own window, on either side."""


def centred_window_start(time: float, sample_rate: int) -> int:
    """The first sample of the 1-second window centred on ``time`` (may be negative: before the track)."""
    return int(round((time - 0.5) * sample_rate))


@dataclass(frozen=True)
class AudioSpan:
    """``samples`` start at sample ``start`` of the track (negative: silence before it); ``track_length``: the
    track's length in samples, or None where it ends after the span; ``times``: each frame's time in seconds."""

    times: tuple[float, ...]
    samples: np.ndarray
    start: int
    sample_rate: int
    track_length: int | None = None
    context: int = CONTEXT_SECONDS

    def window_start(self, frame: int, offset: int) -> int:
        """Track sample where the window centred ``offset`` seconds from frame ``frame`` begins."""
        if abs(offset) > self.context:
            raise ValueError(f"offset {offset} s is beyond the span's {self.context} s of context")
        return centred_window_start(self.times[frame], self.sample_rate) + offset * self.sample_rate

    def window(self, first: int) -> np.ndarray:
        """The second of audio from track sample ``first``."""
        begin = first - self.start
        return self.samples[begin : begin + self.sample_rate]

    def holds_track(self, first: int) -> bool:
        """Whether the second from ``first`` overlaps the track (otherwise it is nothing but padding)."""
        end = self.track_length if self.track_length is not None else self.start + len(self.samples)
        return first + self.sample_rate > 0 and first < end
