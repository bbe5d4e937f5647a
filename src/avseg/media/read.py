"""Decode video and audio files with PyAV (which bundles FFmpeg).

Everything that reads a user's media goes through this module, so every
failure becomes one :class:`~avseg.errors.MediaError` naming the file.

**Frames are placed by their presentation time**, the frame's ``pts`` times
its stream's time base (from the stream's start): the nominal and average
frame rates are only hints, and phones, screen recorders and messaging apps
write variable-frame-rate video. A frame is *shown* from its own time until
the next frame's (the last one for one average frame period). A video whose
frames have no timestamps, or whose timestamps do not increase, cannot be
placed in time and is refused.

**Frame sampling follows how AVSBench was built**, on the time axis: for
second ``l`` the frame shown at ``l + 15/16`` s is taken (at a constant rate
that is frame ``int(l * fps + 15/16 * fps)``, the official rule). A frame
that a gap in a variable-rate video leaves on screen over several sampling
instants stands in for each of them. :func:`sampling_instants` applies the
rule at any rate (``(j + 15/16) / rate`` s for interval ``j``).

**Frames are upright**, as a player shows them: the display matrix that
phones store beside portrait video (rotations of 90, 180 and 270 degrees,
mirrored or not) is applied to every frame (:mod:`avseg.media.orientation`),
and :func:`probe` reports the displayed size.

Audio is returned as mono float32 in [-1, 1]. Channels are averaged (the
same downmix as the official VGGish front end, ``np.mean(data, axis=1)``),
then resampled with :func:`avseg.audio.resample`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path
from typing import Iterable, Iterator, Literal

import av
import numpy as np

from avseg.audio import resample
from avseg.errors import MediaError
from avseg.media.orientation import UPRIGHT, Orientation

FrameSampling = Literal["avsbench", "all"]

# A stream whose decoded content ends this much earlier than its header says
# is reported as truncated rather than silently returned short.
_TRUNCATION_TOLERANCE_S = 0.5
_UNTIMED_HINT = " (a raw stream? put it in a container at its rate: ffmpeg -r 25 -i IN -c copy OUT.mp4)"
_ROUNDING_S = 1e-9
"""Float rounding of ``pts * time_base``: a frame this close after a sampling instant is shown at it."""


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
    rotation: int = 0
    """Degrees counter-clockwise a player turns the stored picture (``width``/``height`` are the displayed size)."""
    mirrored: bool = False
    """Whether a player mirrors the picture left-right (after the rotation)."""

    @property
    def has_video(self) -> bool:
        return self.width is not None

    @property
    def has_audio(self) -> bool:
        return self.sample_rate is not None


@dataclass(frozen=True)
class SampledFrame:
    index: int
    """Position of the frame among the video's decoded frames (0-based, in presentation order)."""
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
        fps = nominal = width = height = None
        orientation = UPRIGHT
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fps = float(rate) if rate else None
            declared = video.base_rate or video.guessed_rate
            nominal = float(declared) if declared else None
            orientation = _first_frame_orientation(container, video, path)
            width, height = orientation.displayed_size(video.codec_context.width, video.codec_context.height)
        return MediaInfo(
            path=str(path),
            duration=max(durations),
            width=width,
            height=height,
            fps=fps,
            sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            channels=audio.codec_context.channels if audio is not None else None,
            nominal_fps=nominal,
            rotation=orientation.rotation,
            mirrored=orientation.mirrored,
        )


def _first_frame_orientation(container, stream, path) -> Orientation:
    """The display orientation, read from the first decoded frame (PyAV gives the display matrix there, not on
    the stream)."""
    try:
        for frame in container.decode(stream):
            return frame_orientation(frame, path)
    except av.error.FFmpegError as exc:
        raise MediaError(path, f"video stream is corrupt ({_reason(exc)})") from None
    return UPRIGHT


def frame_orientation(frame: av.VideoFrame, path) -> Orientation:
    """How a player turns ``frame`` upright (its display matrix; none is upright already)."""
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX":
            orientation = Orientation.from_display_matrix(bytes(data))
            if orientation is None:
                raise MediaError(path, f"has a display rotation of {frame.rotation} degrees, not a multiple of 90 (or a skewed display matrix); "
                                 "re-encode it upright (ffmpeg -i IN OUT.mp4 applies it)")
            return orientation
    return UPRIGHT


def check_audio_track(path: str | os.PathLike, info: MediaInfo, allow_silent: bool) -> None:
    """Refuse a video without an audio track unless ``allow_silent`` (``--allow-silent``: silence stands in)."""
    if not info.has_audio and not allow_silent:
        raise MediaError(path, "has no audio track; pass --allow-silent to use silence as its audio")


def avsbench_frame_index(second: int, fps: float) -> int:
    """Index of the frame AVSBench samples for second ``second`` of a video at ``fps``."""
    return int(second * fps + 15 / 16 * fps)


def iter_frames(
    path: str | os.PathLike,
    sampling: FrameSampling = "avsbench",
    size: tuple[int, int] | None = None,
) -> Iterator[SampledFrame]:
    """Stream upright RGB frames from a video, decoding one frame at a time.

    Args:
        sampling: ``"avsbench"`` yields one frame per second (see module doc),
            and a video shorter than the first sampling instant is an error
            (no command has anything to do with it); ``"all"`` yields every
            decoded frame.
        size: displayed ``(width, height)`` to resize to (bilinear); native size if None.
    """
    if sampling not in ("avsbench", "all"):
        raise ValueError(f"unknown frame sampling {sampling!r}; expected 'avsbench' or 'all'")
    frames = decode_frames(path, size)
    if sampling == "all":
        yield from frames
        return
    sampled = False
    for frame, due in sampling_instants(frames, 1, frame_rate(path)):
        for _ in range(due):
            sampled = True
            yield frame
    if not sampled:
        raise MediaError(path, "is shorter than its first sampling instant (15/16 of a second); nothing to sample")


def frame_rate(path: str | os.PathLike) -> float:
    """The video stream's average frame rate (a hint: see the module doc); an error when it has none."""
    info = probe(path)
    if not info.has_video:
        raise MediaError(path, "has no video stream")
    if not info.fps:
        raise MediaError(path, "video stream has no frame rate")
    return info.fps


def decode_frames(path: str | os.PathLike, size: tuple[int, int] | None = None) -> Iterator[SampledFrame]:
    """Every frame of the video, upright, with its presentation time (see the module doc): refused when a
    frame has no timestamp or is not after the one before it, or when the stream is corrupt or truncated."""
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
        orientation, last_time = None, None
        try:
            for position, frame in enumerate(container.decode(stream)):
                if frame.pts is None:
                    raise MediaError(path, f"frame {position} has no timestamp, so it cannot be placed in time{_UNTIMED_HINT}")
                time = frame.time - start
                if last_time is not None and time <= last_time:
                    raise MediaError(path, f"frame {position} is shown at {time:.3f}s, not after frame {position - 1} ({last_time:.3f}s): "
                                     "its timestamps do not increase, so its frames cannot be placed in time")
                if orientation is None:
                    orientation = frame_orientation(frame, path)
                last_time = time
                yield SampledFrame(position, time, _to_rgb(frame, size, orientation))
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"video stream is corrupt ({_reason(exc)})") from None
        if last_time is None:
            raise MediaError(path, "video stream has no decodable frames")
        if declared and last_time + 1 / fps < declared - _TRUNCATION_TOLERANCE_S:
            raise MediaError(
                path, f"video stream is truncated: decoded {last_time + 1 / fps:.2f}s of {declared:.2f}s"
            )


def check_frame_times(path: str | os.PathLike, fps: float) -> Fraction | None:
    """Refuse a video whose frames cannot be placed in time (a frame without a timestamp, two frames at one
    time), before any work: reads the packets' timestamps only, no decoding. Returns None when every frame
    lies on the grid of ``fps`` (frame ``n`` at ``n / fps`` after the first, to within a tick of the time
    base: a constant-rate video), else the stream's time base, in which a copy keeps each frame's own time.
    Decoding checks the order of the frames it shows (:func:`decode_frames`)."""
    grid = Fraction(fps).limit_denominator(1001)  # the rate an overlay of a constant-rate video is written at
    with _open(path) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        ticks = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is None:
                    raise MediaError(path, f"frame {len(ticks)} has no timestamp, so it cannot be placed in time{_UNTIMED_HINT}")
                if packet.size:
                    ticks.append(packet.pts)
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"video stream is corrupt ({_reason(exc)})") from None
    ticks.sort()
    for before, after in zip(ticks, ticks[1:]):
        if before == after:
            raise MediaError(path, f"two frames are shown at {float((before - ticks[0]) * time_base):.3f}s: its timestamps do not increase, "
                             "so its frames cannot be placed in time")
    tolerance = max(float(time_base), 1e-6)
    for count, tick in enumerate(ticks):
        if abs(float((tick - ticks[0]) * time_base - count / grid)) > tolerance:
            return time_base
    return None


def sampling_instants(frames: Iterable[SampledFrame], rate: int, fps: float) -> Iterator[tuple[SampledFrame, int]]:
    """Each frame, in order, with the number of sampling instants ``(j + 15/16) / rate`` s it is shown at
    (AVSBench's rule on the time axis, see the module doc).

    A frame is shown from its time until the next frame's, the last one for ``1 / fps`` (the average
    period); the first also stands for instants before it (nothing else is on screen then). Each frame is
    yielded once the next one is decoded: only then is its time on screen known.
    """
    instant, held = 0, None
    for frame in frames:
        if held is not None:
            due = _instants_before(frame.time, instant, rate)
            yield held, due
            instant += due
        held = frame
    if held is not None:
        yield held, _instants_before(held.time + 1 / fps, instant, rate)


def _instants_before(time: float, first: int, rate: int) -> int:
    """How many sampling instants from number ``first`` on fall before ``time`` (a long gap costs no loop)."""

    def before(instant: int) -> bool:
        return (instant + 15 / 16) / rate < time - _ROUNDING_S

    count = max(0, math.ceil((time - _ROUNDING_S) * rate - 15 / 16) - first)
    while count and not before(first + count - 1):  # the estimate, settled by the exact comparison
        count -= 1
    while before(first + count):
        count += 1
    return count


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None, orientation: Orientation) -> np.ndarray:
    if size is None:
        image = frame.to_ndarray(format="rgb24")
    else:
        width, height = orientation.displayed_size(*size)  # the stored size that displays as ``size``
        image = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
    return image if orientation.identity else np.ascontiguousarray(orientation.apply(image))


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


def read_audio_channels(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream keeping its channels: ``(channels (C, S) float32, rate)``, each channel
    resampled as :func:`read_audio` resamples the mix (which is their mean)."""
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio track")
        native_rate = _audio_rate(container, path)
        chunks = list(_decode(container, path, mix=False))
    channels = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), dtype=np.float32)
    rate = sample_rate or native_rate
    return np.stack([resample(channel, native_rate, rate) for channel in channels]), rate


def iter_audio(
    path: str | os.PathLike,
    sample_rate: int,
    window_seconds: int,
    missing: Literal["error", "silence"] = "error",
    channels: int = 1,
) -> Iterator[np.ndarray]:
    """Mono float32 audio at ``sample_rate`` in consecutive windows of ``window_seconds``, streamed; with
    ``channels=2``, ``(2, S)`` windows of the track's own first two channels (a mono track duplicated, silence
    for a missing track when ``missing="silence"``), for models that hear stereo (AuralSAM2).

    Memory stays bounded by the window whatever the file's length. Each window
    is resampled with a margin of context on both sides, starting on the
    resampler's phase grid, so the windows join into :func:`read_audio`'s
    output (to float rounding). The last window may be shorter.
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    with _open(path) as container:
        if not container.streams.audio:
            silence = _silence(container, path, missing, sample_rate)
            for start in range(0, len(silence), window_seconds * sample_rate):
                piece = silence[start : start + window_seconds * sample_rate]
                yield piece if channels == 1 else np.stack([piece, piece])
            return
        native_rate = _audio_rate(container, path)
        common = gcd(native_rate, sample_rate)
        up, down = sample_rate // common, native_rate // common
        margin = down * -(-native_rate // (10 * down))  # >= 0.1 s, a whole number of phase periods
        step = window_seconds * native_rate
        if step % down:
            raise ValueError(f"{window_seconds}s windows do not fall on the {native_rate}->{sample_rate} Hz phase grid")
        buffer, buffer_start, position = np.zeros((channels, 0), dtype=np.float32), 0, 0

        def window(end: int) -> np.ndarray:
            low = max(0, position - margin)
            chunk = buffer[:, low - buffer_start : end + margin - buffer_start]
            out = np.stack([resample(row, native_rate, sample_rate) for row in chunk])
            first = (position - low) * up // down
            out = out[:, first : first + (min(end, buffer_start + buffer.shape[1]) - position) * up // down]
            return out[0] if channels == 1 else out

        for chunk in _decode(container, path, mix=channels == 1):
            chunk = chunk[None] if channels == 1 else np.repeat(chunk, 2, axis=0) if len(chunk) == 1 else chunk[:2]
            buffer = np.concatenate([buffer, chunk], axis=1)
            while buffer_start + buffer.shape[1] >= position + step + margin:
                yield window(position + step)
                position += step
                keep = max(0, position - margin) - buffer_start
                buffer, buffer_start = buffer[:, keep:], buffer_start + keep
        while position < buffer_start + buffer.shape[1]:
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
    return _decode(container, path, mix=True)


def _decode(container, path, mix: bool) -> Iterator[np.ndarray]:
    """Native-rate chunks of the first audio stream, mono (``mix``) or ``(channels, samples)``, checked for
    corruption, truncation and NaN."""
    stream = container.streams.audio[0]
    declared = _stream_duration(container, stream)
    decoded = 0
    try:
        for frame in container.decode(stream):
            chunk = _audio_frame_to_float(frame)
            chunk = chunk.mean(axis=0) if mix else chunk
            if not np.all(np.isfinite(chunk)):
                raise MediaError(path, "audio contains NaN or infinite samples")
            decoded += chunk.shape[-1]
            yield chunk
    except av.error.FFmpegError as exc:
        raise MediaError(path, f"audio stream is corrupt ({_reason(exc)})") from None
    seconds = decoded / stream.codec_context.sample_rate
    if declared and seconds < declared - _TRUNCATION_TOLERANCE_S:
        raise MediaError(path, f"audio stream is truncated: decoded {seconds:.2f}s of {declared:.2f}s")
