"""Video and audio files: :mod:`~avseg.media.read` decodes (probe, sampled
frames, mono audio), :mod:`~avseg.media.write` encodes (mp4 with H.264/AAC).
"""

from avseg.media.orientation import Orientation
from avseg.media.read import (
    FrameSampling,
    MediaInfo,
    SampledFrame,
    avsbench_frame_index,
    check_audio_track,
    check_frame_times,
    decode_frames,
    frame_rate,
    iter_audio,
    iter_frames,
    probe,
    read_audio,
    read_audio_channels,
    read_frames,
    sampling_instants,
)
from avseg.media.write import (
    VideoWriter,
    audio_condition_copy,
    replace_audio,
    write_video,
)

__all__ = [
    "FrameSampling",
    "MediaInfo",
    "Orientation",
    "SampledFrame",
    "VideoWriter",
    "audio_condition_copy",
    "avsbench_frame_index",
    "decode_frames",
    "frame_rate",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
    "read_audio_channels",
    "read_frames",
    "replace_audio",
    "sampling_instants",
    "check_audio_track",
    "check_frame_times",
    "write_video",
]
