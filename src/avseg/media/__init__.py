"""Video and audio files: :mod:`~avseg.media.read` decodes (probe, sampled
frames, mono audio), :mod:`~avseg.media.write` encodes (mp4 with H.264/AAC).
"""

from avseg.media.read import (
    FrameSampling,
    MediaInfo,
    SampledFrame,
    avsbench_frame_index,
    iter_audio,
    iter_frames,
    probe,
    read_audio,
    read_frames,
)
from avseg.media.write import VideoWriter, audio_condition_copy, replace_audio, write_video

__all__ = [
    "FrameSampling",
    "MediaInfo",
    "SampledFrame",
    "VideoWriter",
    "audio_condition_copy",
    "avsbench_frame_index",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
    "read_frames",
    "replace_audio",
    "write_video",
]
