"""Decode video and audio files with PyAV (which bundles FFmpeg).

Everything that reads a user's media goes through this module, so every
failure becomes one :class:`~avseg.errors.MediaError` naming the file.

Frame sampling follows how AVSBench was built: for second ``l`` of the video,
the frame with index ``int(l * fps + 15/16 * fps)`` is taken, one per second.
Frame indices come from presentation timestamps (``round(t * fps)``), so
variable-frame-rate files sample the frame shown at that instant rather than
the n-th decoded frame.

Audio is returned as mono float32 in [-1, 1]. Channels are averaged (the
same downmix as the official VGGish front end, ``np.mean(data, axis=1)``),
then resampled with :func:`avseg.audio.resample`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Iterator, Literal

import av
import numpy as np

from avseg.audio import resample
from avseg.errors import MediaError

FrameSampling = Literal["avsbench", "all"]

# A stream whose decoded content ends this much earlier than its header says
# is reported as truncated rather than silently returned short.
_TRUNCATION_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float
    width: int | None
    height: int | None
    fps: float | None
    sample_rate: int | None
    channels: int | None
    nominal_fps: float | None = None
    """The stream's declared frame rate; differs from ``fps`` (the average) in a variable-rate video."""

    @property
    def has_video(self) -> bool:
        return self.width is not None

    @property
    def has_audio(self) -> bool:
        return self.sample_rate is not None


@dataclass(frozen=True)
class SampledFrame:
    index: int
    """Index of the frame in the video's nominal frame grid."""
    time: float
    """Presentation time in seconds from the start of the stream."""
    image: np.ndarray
    """uint8 (H, W, 3) RGB."""


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "no such file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        with open(path, "rb") as handle:
            head = handle.read(12)
        kind = "a truncated or corrupt MP4/MOV file" if head[4:8] == b"ftyp" else "not a readable media file"
        raise MediaError(path, f"{kind} ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _stream_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _stream_start(stream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read the container header: duration, frame size, frame rate and audio format."""
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(path, "has neither a video nor an audio stream")
        durations = [_stream_duration(container, s) for s in (video, audio) if s is not None]
        fps = nominal = None
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fps = float(rate) if rate else None
            declared = video.base_rate or video.guessed_rate
            nominal = float(declared) if declared else None
        return MediaInfo(
            path=str(path),
            duration=max(durations),
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            fps=fps,
            sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            channels=audio.codec_context.channels if audio is not None else None,
            nominal_fps=nominal,
        )


def avsbench_frame_index(second: int, fps: float) -> int:
    """Index of the frame AVSBench samples for second ``second`` of a video at ``fps``."""
    return int(second * fps + 15 / 16 * fps)


def iter_frames(
    path: str | os.PathLike,
    sampling: FrameSampling = "avsbench",
    size: tuple[int, int] | None = None,
) -> Iterator[SampledFrame]:
    """Stream RGB frames from a video, decoding one frame at a time.

    Args:
        sampling: ``"avsbench"`` yields one frame per second (see module doc),
            and a video shorter than the first sampling instant is an error
            (no command has anything to do with it); ``"all"`` yields every
            decoded frame.
        size: ``(width, height)`` to resize to (bilinear); native size if None.
    """
    if sampling not in ("avsbench", "all"):
        raise ValueError(f"unknown frame sampling {sampling!r}; expected 'avsbench' or 'all'")
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise MediaError(path, "video stream has no frame rate")
        fps = float(rate)
        start = _stream_start(stream)
        declared = _stream_duration(container, stream)
        width, height = size if size is not None else (None, None)

        second, counter, last_time = 0, 0, None
        try:
            for frame in container.decode(stream):
                time = (frame.time - start) if frame.time is not None else counter / fps
                index = int(round(time * fps))
                counter += 1
                last_time = time
                if sampling == "all":
                    yield SampledFrame(index, time, _to_rgb(frame, width, height))
                    continue
                image = None
                # A frame that jumps over several sampling points (a gap in a
                # variable-frame-rate file) stands in for each of them.
                while index >= avsbench_frame_index(second, fps):
                    if image is None:
                        image = _to_rgb(frame, width, height)
                    yield SampledFrame(index, time, image)
                    second += 1
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"video stream is corrupt ({_reason(exc)})") from None
        if last_time is None:
            raise MediaError(path, "video stream has no decodable frames")
        if declared and last_time + 1 / fps < declared - _TRUNCATION_TOLERANCE_S:
            raise MediaError(
                path, f"video stream is truncated: decoded {last_time + 1 / fps:.2f}s of {declared:.2f}s"
            )
        if sampling == "avsbench" and second == 0:
            raise MediaError(path, "is shorter than its first sampling instant (15/16 of a second); nothing to sample")


def _to_rgb(frame: av.VideoFrame, width: int | None, height: int | None) -> np.ndarray:
    if width is None:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")


def read_frames(
    path: str | os.PathLike,
    sampling: FrameSampling = "avsbench",
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode frames into memory. Returns ``(frames uint8 (T,H,W,3), times float64 (T,))``."""
    samples = list(iter_frames(path, sampling, size))
    return np.stack([s.image for s in samples]), np.array([s.time for s in samples])


_INT_SCALE = {"u8": None, "s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}


def _audio_frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """(channels, samples) float32 from any FFmpeg sample format."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    name = frame.format.name.rstrip("p")
    if name == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    if name in _INT_SCALE:
        return (data.astype(np.float64) / _INT_SCALE[name]).astype(np.float32)
    return data.astype(np.float32)


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    missing: Literal["error", "silence"] = "error",
) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to mono float32.

    Args:
        sample_rate: resample to this rate; the stream's own rate if None.
        missing: what to do when the file has no audio stream: ``"error"``
            raises; ``"silence"`` returns zeros as long as the video (at
            ``sample_rate``, or 16 kHz if None).

    Returns:
        ``(waveform (S,), rate)``.
    """
    with _open(path) as container:
        if not container.streams.audio:
            rate = sample_rate or 16000
            return _silence(container, path, missing, rate), rate
        native_rate = _audio_rate(container, path)
        chunks = list(_decode_mono(container, path))
    waveform = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    rate = sample_rate or native_rate
    return resample(waveform, native_rate, rate), rate


def iter_audio(
    path: str | os.PathLike,
    sample_rate: int,
    window_seconds: int,
    missing: Literal["error", "silence"] = "error",
) -> Iterator[np.ndarray]:
    """Mono float32 audio at ``sample_rate`` in consecutive windows of ``window_seconds``, streamed.

    Memory stays bounded by the window whatever the file's length. Each window
    is resampled with a margin of context on both sides, starting on the
    resampler's phase grid, so the windows join into :func:`read_audio`'s
    output (to float rounding). The last window may be shorter.
    """
    with _open(path) as container:
        if not container.streams.audio:
            silence = _silence(container, path, missing, sample_rate)
            for start in range(0, len(silence), window_seconds * sample_rate):
                yield silence[start : start + window_seconds * sample_rate]
            return
        native_rate = _audio_rate(container, path)
        common = gcd(native_rate, sample_rate)
        up, down = sample_rate // common, native_rate // common
        margin = down * -(-native_rate // (10 * down))  # >= 0.1 s, a whole number of phase periods
        step = window_seconds * native_rate
        if step % down:
            raise ValueError(f"{window_seconds}s windows do not fall on the {native_rate}->{sample_rate} Hz phase grid")
        buffer, buffer_start, position = np.zeros(0, dtype=np.float32), 0, 0

        def window(end: int) -> np.ndarray:
            low = max(0, position - margin)
            chunk = buffer[low - buffer_start : end + margin - buffer_start]
            out = resample(chunk, native_rate, sample_rate)
            first = (position - low) * up // down
            return out[first : first + (min(end, buffer_start + len(buffer)) - position) * up // down]

        for chunk in _decode_mono(container, path):
            buffer = np.concatenate([buffer, chunk])
            while buffer_start + len(buffer) >= position + step + margin:
                yield window(position + step)
                position += step
                keep = max(0, position - margin) - buffer_start
                buffer, buffer_start = buffer[keep:], buffer_start + keep
        while position < buffer_start + len(buffer):
            yield window(position + step)
            position += step


def _audio_rate(container, path) -> int:
    rate = container.streams.audio[0].codec_context.sample_rate
    if not rate:
        raise MediaError(path, "audio stream has no sample rate")
    return rate


def _silence(container, path, missing: str, rate: int) -> np.ndarray:
    if missing != "silence":
        raise MediaError(path, "has no audio track")
    duration = max(_stream_duration(container, s) for s in container.streams)
    return np.zeros(int(round(duration * rate)), dtype=np.float32)


def _decode_mono(container, path) -> Iterator[np.ndarray]:
    """Native-rate mono chunks of the first audio stream, checked for corruption, truncation and NaN."""
    stream = container.streams.audio[0]
    declared = _stream_duration(container, stream)
    decoded = 0
    try:
        for frame in container.decode(stream):
            mono = _audio_frame_to_float(frame).mean(axis=0)
            if not np.all(np.isfinite(mono)):
                raise MediaError(path, "audio contains NaN or infinite samples")
            decoded += len(mono)
            yield mono
    except av.error.FFmpegError as exc:
        raise MediaError(path, f"audio stream is corrupt ({_reason(exc)})") from None
    seconds = decoded / stream.codec_context.sample_rate
    if declared and seconds < declared - _TRUNCATION_TOLERANCE_S:
        raise MediaError(path, f"audio stream is truncated: decoded {seconds:.2f}s of {declared:.2f}s")
