from fractions import Fraction

import numpy as np
import pytest
from conftest import make_audio_file, make_video

from avseg.errors import MediaError
from avseg.media import (
    avsbench_frame_index,
    iter_frames,
    probe,
    read_audio,
    read_frames,
    write_video,
)


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fps", [10, Fraction(30000, 1001), 25])
def test_avsbench_sampling_takes_frame_at_15_16_of_each_second(tmp_path, fps):
    path = make_video(tmp_path / "v.mp4", seconds=5, fps=fps)
    frames, times = read_frames(path)
    expected_index = [int(second * float(fps) + 15 / 16 * float(fps)) for second in range(5)]
    assert [avsbench_frame_index(s, float(fps)) for s in range(5)] == expected_index
    assert frames.shape == (5, 48, 64, 3)
    # frame i is a flat grey of level 5*i (mod 256); H.264 keeps flat levels within a few steps
    levels = frames.reshape(5, -1).mean(1)
    np.testing.assert_allclose(levels, [(5 * i) % 256 for i in expected_index], atol=3)
    np.testing.assert_allclose(times, np.array(expected_index) / float(fps), atol=1e-3)


def test_all_frames_and_resize(tmp_path):
    path = make_video(tmp_path / "v.mp4", seconds=2, fps=10)
    samples = list(iter_frames(path, "all", size=(32, 20)))
    assert len(samples) == 20
    assert [s.index for s in samples] == list(range(20))
    assert samples[7].image.shape == (20, 32, 3)
    assert abs(samples[7].image.mean() - 35) < 3


def test_probe_reports_streams(tmp_path):
    info = probe(make_video(tmp_path / "v.mp4", seconds=3, fps=12, audio_rate=44100, layout="stereo"))
    assert (info.width, info.height, info.fps, info.sample_rate, info.channels) == (64, 48, 12.0, 44100, 2)
    assert abs(info.duration - 3.0) < 0.1


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("layout", ["mono", "stereo", "5.1"])
def test_audio_downmix_and_resample(tmp_path, rate, layout):
    path = make_audio_file(tmp_path / "a.mka", seconds=1.0, rate=rate, layout=layout, tone_hz=440.0)
    waveform, out_rate = read_audio(path, 16000)
    assert out_rate == 16000 and waveform.dtype == np.float32
    assert abs(len(waveform) - 16000) <= 1
    channels = {"mono": 1, "stereo": 2, "5.1": 6}[layout]
    expected_amplitude = 0.5 * sum(c + 1 for c in range(channels)) / channels**2  # mean of the channels
    middle = waveform[2000:-2000]
    assert abs(np.sqrt(2 * np.mean(middle**2)) - expected_amplitude) < 0.01
    assert abs(dominant_frequency(middle, 16000) - 440.0) < 3


def test_audio_native_rate_kept_when_not_asked(tmp_path):
    waveform, rate = read_audio(make_audio_file(tmp_path / "a.mka", 0.5, 22050), None)
    assert rate == 22050 and len(waveform) == 11025


def test_write_video_roundtrip_keeps_frames_and_audio(tmp_path):
    frames = np.zeros((6, 50, 70, 3), dtype=np.uint8)
    for i in range(6):
        frames[i, :, :, i % 3] = 200
    t = np.arange(3 * 16000) / 16000
    audio = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    path = write_video(tmp_path / "out" / "o.mp4", frames, fps=2, audio=audio, sample_rate=16000)
    info = probe(path)
    assert (info.width, info.height, info.fps) == (70, 50, 2.0)  # even sizes are kept
    decoded, _ = read_frames(path, "all")
    assert decoded.shape == (6, 50, 70, 3)
    assert np.all(decoded[np.arange(6), 25, 35, np.arange(6) % 3] > 180)
    waveform, rate = read_audio(path)
    assert rate == 16000 and abs(len(waveform) - len(audio)) < 2048
    assert abs(dominant_frequency(waveform[4000:40000], rate) - 330) < 3
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_write_video_rounds_odd_sizes_down_to_even(tmp_path):
    path = write_video(tmp_path / "o.mp4", np.zeros((2, 33, 45, 3), np.uint8), fps=5)
    info = probe(path)
    assert (info.width, info.height) == (44, 32)


def test_missing_audio_track(tmp_path):
    path = make_video(tmp_path / "v.mp4", seconds=2, audio_rate=None)
    with pytest.raises(MediaError, match="v.mp4: has no audio track"):
        read_audio(path)
    silence, rate = read_audio(path, 16000, missing="silence")
    assert rate == 16000 and len(silence) == 32000 and not silence.any()


def test_text_file_renamed_to_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    for read in (probe, read_frames, read_audio):
        with pytest.raises(MediaError, match="notes.mp4: not a readable media file"):
            read(path)


def test_truncated_mp4_without_index(tmp_path):
    data = make_video(tmp_path / "v.mp4", seconds=3).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.mp4: a truncated or corrupt MP4/MOV file"):
        read_frames(tmp_path / "cut.mp4")


def test_truncated_mp4_with_index_up_front(tmp_path):
    data = make_video(tmp_path / "v.mp4", seconds=6, fps=10, faststart=True).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(MediaError, match=r"cut.mp4: video stream is truncated: decoded [\d.]+s of 6.00s"):
        read_frames(tmp_path / "cut.mp4")
    with pytest.raises(MediaError, match="cut.mp4: audio stream"):
        read_audio(tmp_path / "cut.mp4")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(MediaError, match="nope.mp4: no such file"):
        read_frames(tmp_path / "nope.mp4")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MediaError, match="empty.wav: file is empty"):
        read_audio(tmp_path / "empty.wav")


def test_audio_only_file_has_no_video(tmp_path):
    path = make_audio_file(tmp_path / "a.mka", 1.0, 16000)
    with pytest.raises(MediaError, match="a.mka: has no video stream"):
        read_frames(path)


@pytest.mark.parametrize("rate,layout", [(44100, "stereo"), (8000, "5.1"), (16000, "mono")])
def test_streamed_audio_windows_join_into_the_whole(tmp_path, rate, layout):
    from avseg.media import iter_audio

    path = make_audio_file(tmp_path / "a.mka", seconds=12.3, rate=rate, layout=layout)
    whole, _ = read_audio(path, 16000)
    windows = list(iter_audio(path, 16000, 5))
    assert [len(w) for w in windows] == [80000, 80000, len(whole) - 160000]
    np.testing.assert_array_equal(np.concatenate(windows), whole)


def test_streamed_audio_of_a_silent_video(tmp_path):
    from avseg.media import iter_audio

    path = make_video(tmp_path / "v.mp4", seconds=3, audio_rate=None)
    with pytest.raises(MediaError, match="has no audio track"):
        list(iter_audio(path, 16000, 2))
    assert [len(w) for w in iter_audio(path, 16000, 2, missing="silence")] == [32000, 16000]


def test_a_video_with_nothing_to_sample(tmp_path):
    path = make_video(tmp_path / "blip.mp4", seconds=0.5, fps=10)  # frames 0-4; the first sampling instant is frame 9
    with pytest.raises(MediaError, match="blip.mp4: is shorter than its first sampling instant"):
        read_frames(path)
    assert len(read_frames(path, "all")[0]) == 5


def test_a_failed_finish_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno
    import os

    def full_disk(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        write_video(tmp_path / "v.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=10)
    assert list(tmp_path.iterdir()) == []
