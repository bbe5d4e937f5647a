"""Encode H.264/AAC mp4 files with PyAV (which bundles FFmpeg)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avseg.errors import MediaError
from avseg.media.read import _open, probe, read_audio


def partial_path(path: str | os.PathLike) -> Path:
    """Where :class:`VideoWriter` writes ``path`` until it is complete."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")


class VideoWriter:
    """Write an H.264 (yuv420p) mp4, optionally with an AAC mono audio track.

    The file appears at ``path`` only when :meth:`close` succeeds; until then it
    is written to a temporary name beside it, so a crash never leaves a
    half-written video under the final name. Odd frame sizes are rounded down to
    even, which yuv420p requires.

    Frames follow one another at ``fps``, or, with a ``time_base``, each at the
    time given with it (a variable-rate video's frames keep their own times;
    ``fps`` is then only the encoder's hint).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        sample_rate: int | None = None,
        crf: int = 20,
        audio_from: str | os.PathLike | None = None,
        time_base: Fraction | None = None,
    ):
        self.path = Path(path)
        self._tmp = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._video.width = max(2, width - width % 2)
        self._video.height = max(2, height - height % 2)
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._time_base = time_base
        if time_base is not None:
            self._video.codec_context.time_base = time_base
        self._audio = None
        self._audio_samples = 0
        self._audio_source = None
        if sample_rate is not None:
            self._audio = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        elif audio_from is not None:
            # The original audio track, copied packet by packet (no re-encoding).
            self._audio_source = _open(audio_from)
            if not self._audio_source.streams.audio:
                raise MediaError(audio_from, "has no audio track to copy")
            self._copied = self._container.add_stream_from_template(self._audio_source.streams.audio[0])
        self._closed = False

    def write_frame(self, image: np.ndarray, time: float | None = None) -> None:
        """The next frame; ``time`` (seconds) is required with a ``time_base`` and ignored without."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
        frame = frame.reformat(width=self._video.width, height=self._video.height, format="yuv420p")
        if self._time_base is not None:
            if time is None:
                raise ValueError("a writer with a time base needs each frame's time")
            frame.pts, frame.time_base = round(time / self._time_base), self._time_base
        self._container.mux(self._video.encode(frame))

    def write_audio(self, samples: np.ndarray) -> None:
        if self._audio is None:
            raise ValueError("this writer was created without an audio track")
        samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = self._audio.codec_context.sample_rate
        frame.pts = self._audio_samples
        self._audio_samples += len(samples)
        self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        """Finish the file and move it to its final name; if that fails, nothing is left behind."""
        if self._closed:
            return
        try:
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._container.mux(self._audio.encode(None))
            if self._audio_source is not None:
                for packet in self._audio_source.demux(self._audio_source.streams.audio[0]):
                    if packet.dts is not None:
                        packet.stream = self._copied
                        self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._audio_source is not None:
            self._audio_source.close()

    def abort(self) -> None:
        """Drop the partial file (after a failure: closing errors are secondary to the one raised)."""
        if self._closed:
            return
        self._closed = True
        for resource in (self._container, self._audio_source):
            if resource is not None:
                try:
                    resource.close()
                except (OSError, av.error.FFmpegError):
                    pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> Path:
    """Write ``frames`` (T,H,W,3 uint8) and optional mono ``audio`` as an H.264/AAC mp4."""
    if audio is not None and sample_rate is None:
        raise ValueError("sample_rate is required with audio")
    height, width = frames.shape[1:3]
    with VideoWriter(path, fps, width, height, sample_rate if audio is not None else None) as writer:
        for image in frames:
            writer.write_frame(image)
        if audio is not None:
            writer.write_audio(audio)
    return Path(path)


def audio_condition_copy(video: Path, dest: Path, audio: str | Path, sample_rate: int) -> Path:
    """``video`` with its audio muted (``audio="mute"``) or replaced by another file's audio (cut, or
    looped, to the video's duration), as a new file ``dest``. The video packets are copied unchanged."""
    duration = probe(video).duration
    length = max(1, round(duration * sample_rate))
    if audio == "mute":
        waveform = np.zeros(length, dtype=np.float32)
    else:
        other, _ = read_audio(audio, sample_rate)
        if not len(other):
            raise MediaError(audio, "has no audio samples to swap in")
        waveform = np.resize(other, length).astype(np.float32)  # np.resize repeats a short clip
    replace_audio(video, dest, waveform, sample_rate)
    return dest


def replace_audio(video: Path, dest: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Remux: ``video``'s video stream copied packet by packet, and ``waveform`` as its mono AAC audio."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as source, av.open(str(dest), "w", format="mp4") as out:
        stream = source.streams.video[0]
        copied = out.add_stream_from_template(stream)
        encoder = out.add_stream("aac", rate=sample_rate, layout="mono")
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.stream = copied
                out.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.clip(waveform, -1, 1)[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, 0
        out.mux(encoder.encode(frame))
        out.mux(encoder.encode(None))
