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
from avseg.media.write import VideoWriter, write_video

__all__ = [
    "FrameSampling",
    "MediaInfo",
    "SampledFrame",
    "VideoWriter",
    "avsbench_frame_index",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
    "read_frames",
    "write_video",
]
