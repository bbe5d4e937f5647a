"""Videos as phones and apps write them: variable frame rates, display rotations, no audio track; and what
``avseg segment`` writes for them (one meaning per key, the closing line when piped, safe folder names)."""

import json
import re
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import make_timed_video, make_video
from PIL import Image

from avseg.cli import main
from avseg.engine.dense import Sampling
from avseg.engine.segment import fixed_cues, segment_video
from avseg.errors import AvsegError, MediaError
from avseg.media import (
    avsbench_frame_index,
    decode_frames,
    iter_frames,
    probe,
    read_audio,
    sampling_instants,
)
from avseg.media.read import SampledFrame

UNEVEN = [0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.6, 0.8, 1.0, 1.05, 1.1, 1.15, 1.2, 1.4, 1.8, 2.0, 2.3, 2.35, 2.9]
"""A phone's frame times: bursts, gaps and a steady stretch (about 7 fps on average, 20 at the fastest)."""



def shown_at(times: list[float], instant: float) -> int:
    """The frame on screen at ``instant``: the last one that started by then (the first before any starts)."""
    return max([k for k, time in enumerate(times) if time <= instant + 1e-9], default=0)


def overlay_times(folder) -> list[float]:
    with av.open(str(folder / "overlay.mp4")) as container:
        return [frame.time for frame in container.decode(container.streams.video[0])]


# --- 1. variable frame rates, placed by presentation time ----------------------------------------------------


@pytest.mark.parametrize("fps", [Fraction(10), Fraction(16), Fraction(25), Fraction(30000, 1001), Fraction(48), Fraction(60000, 1001), Fraction(240)])
def test_time_axis_sampling_picks_avsbench_frames_at_constant_rates(fps):
    """On a constant-rate video the frame shown at l + 15/16 s is frame int(l*fps + 15/16*fps), as the benchmark
    was built and as ``--rate 1`` sampled before: frame times as a muxer stores them (ticks of 1/fps or of 1/90000)."""
    count = int(fps * 120)
    for tick in (1 / fps, Fraction(1, 90000)):
        frames = [SampledFrame(k, float(round(k / fps / tick) * tick), None) for k in range(count)]
        sampled = [frame.index for frame, due in sampling_instants(iter(frames), 1, float(fps)) for _ in range(due)]
        expected = [avsbench_frame_index(second, float(fps)) for second in range(int(count / fps) + 1)]
        expected = [index for index in expected if index < count]
        assert sampled == expected


def test_a_gap_leaves_its_frame_standing_in_for_each_instant():
    frames = [SampledFrame(k, time, None) for k, time in enumerate([0.0, 0.5, 3.2])]
    assert [(frame.index, due) for frame, due in sampling_instants(iter(frames), 1, 1.0)] == [(0, 0), (1, 3), (2, 1)]


def test_every_frame_of_a_variable_rate_video_gets_its_own_time_mask_and_window(tmp_path, tiny_teso):
    video = make_timed_video(tmp_path / "phone.mp4", UNEVEN)
    calls = []

    class Recording:  # the real segmenter, its inputs recorded
        def predict(self, clips):
            calls.append(clips[0])
            return tiny_teso.segmenter.predict(clips)

    tiny_teso.segmenter.cues = fixed_cues(("bell",), "phone", 4)
    out = segment_video(Recording(), video, tmp_path / "out", 16000, "teso", window=4, progress=False, sampling=Sampling(rate=None))
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["frames"]
    assert [row["time"] for row in rows] == pytest.approx(UNEVEN, abs=1e-9)
    assert [row["frame"] for row in rows] == [row["mask"] for row in rows] == list(range(len(UNEVEN)))
    assert len(list((out / "masks").iterdir())) == len(UNEVEN)
    assert "variable rate" in summary["sampling"]
    assert overlay_times(out) == pytest.approx(UNEVEN, abs=1e-3)  # every overlay frame at its own time
    waveform, _ = read_audio(video, 16000)
    heard = np.concatenate([clip.waveform for clip in calls])
    for k, time in enumerate(UNEVEN):  # the second centred on each frame's own time
        first = int(round((time - 0.5) * 16000))
        expected = np.zeros(16000, dtype=np.float32)
        low, high = max(0, first), min(len(waveform), first + 16000)
        expected[low - first : high - first] = waveform[low:high]
        np.testing.assert_allclose(heard[k * 16000 : (k + 1) * 16000], expected, atol=1e-5)  # streamed resampling: float rounding


@pytest.mark.parametrize("rate", [1, 2, 4])
def test_rate_n_takes_the_frame_shown_at_each_instant_of_a_variable_rate_video(tmp_path, tiny_teso, rate):
    video = make_timed_video(tmp_path / "phone.mp4", UNEVEN)
    out = tiny_teso.segment(video, tmp_path / "out", window=3, progress=False, sampling=Sampling(rate=rate))
    rows = json.loads((out / "summary.json").read_text())["frames"]
    end = UNEVEN[-1] + 1 / probe(video).fps  # the last frame stays one average period
    instants = [(j + 15 / 16) / rate for j in range(int(end * rate) + 1) if (j + 15 / 16) / rate < end]
    expected = [shown_at(UNEVEN, instant) for instant in instants]
    assert len(rows) == len(expected) and len(list((out / "masks").iterdir())) == len(expected)
    assert [row["time"] for row in rows] == pytest.approx([UNEVEN[k] for k in expected], abs=1e-9)
    if rate > 1:
        assert [row["frame"] for row in rows] == expected
    assert overlay_times(out) == pytest.approx(UNEVEN, abs=1e-3)


def write_packets(path, ticks: list[int]):
    """An MKV of intra-coded frames whose packets carry ``ticks`` (ms) as they are, in order."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, tick in enumerate(ticks):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * k, np.uint8), format="rgb24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = 100 * k, Fraction(1, 1000)
            for packet in stream.encode(frame):
                packet.pts, packet.dts = tick, 10 * k
                container.mux(packet)
    return path


def test_frames_that_cannot_be_placed_in_time_are_refused_in_one_line(tmp_path):
    raw = tmp_path / "raw.h264"
    with av.open(str(raw), "w", format="h264") as container:  # an elementary stream: no timestamps at all
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(12):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 9 * k, np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    twice = write_packets(tmp_path / "twice.mkv", [0, 100, 200, 200, 300, 400])
    backwards = write_packets(tmp_path / "backwards.mkv", [0, 100, 200, 300, 250, 400])
    for video, fragment in ((raw, "frame 0 has no timestamp"), (twice, "two frames are shown at 0.200s")):
        with pytest.raises(MediaError, match=re.escape(fragment)):  # before any work: the model is never called
            segment_video(None, video, tmp_path / "out", 16000, "m", allow_silent=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(MediaError, match=re.escape("frame 4 is shown at 0.250s, not after frame 3 (0.300s)")):
        list(decode_frames(backwards))  # in order when sorted: only decoding sees the frames out of order


# --- 2. rotation -----------------------------------------------------------------------------------------------

STORED = np.zeros((48, 64, 3), np.uint8)
STORED[:16, :24] = 255  # a marker at the stored top-left


def displayed(rotation: int, hflip: bool, vflip: bool) -> np.ndarray:
    """What a player shows: turned counter-clockwise, then mirrored (PyAV's set_display_rotation)."""
    image = np.rot90(STORED, rotation // 90)
    return image[::-1] if vflip else image[:, ::-1] if hflip else image


ORIENTATIONS = [(0, False, False), (90, False, False), (180, False, False), (270, False, False), (0, True, False), (90, True, False), (0, False, True), (270, True, False)]


@pytest.mark.parametrize("rotation, hflip, vflip", ORIENTATIONS)
def test_frames_are_decoded_upright_as_players_show_them(tmp_path, rotation, hflip, vflip):
    video = make_timed_video(tmp_path / "portrait.mp4", [k / 10 for k in range(6)], rotation=rotation, hflip=hflip, vflip=vflip, image=lambda k: STORED)
    expected = displayed(rotation, hflip, vflip)
    info = probe(video)
    assert (info.height, info.width) == expected.shape[:2]
    assert (info.rotation, info.mirrored) == ((rotation + (180 if vflip else 0)) % 360, hflip or vflip)
    for frame in iter_frames(video, "all"):
        assert frame.image.shape == expected.shape and np.abs(frame.image.astype(int) - expected).mean() < 8  # H.264 loss
    small = next(iter_frames(video, "all", size=(expected.shape[1] // 2, expected.shape[0] // 2)))
    assert small.image.shape == (expected.shape[0] // 2, expected.shape[1] // 2, 3)


def test_masks_overlay_and_summary_of_a_rotated_video_are_upright(tmp_path, tiny_teso):
    video = make_timed_video(tmp_path / "portrait.mp4", [k / 10 for k in range(12)], rotation=90, hflip=True, image=lambda k: STORED)
    expected = displayed(90, True, False)
    seen = []

    class Recording:
        def predict(self, clips):
            seen.extend(clips[0].frames)
            return tiny_teso.segmenter.predict(clips)

    tiny_teso.segmenter.cues = fixed_cues(("bell",), "portrait", 5)
    out = segment_video(Recording(), video, tmp_path / "out", 16000, "teso", progress=False, sampling=Sampling(rate=None))
    assert all(np.abs(frame.astype(int) - expected).mean() < 8 for frame in seen)  # the model sees the video upright
    assert all(np.asarray(Image.open(path)).shape == expected.shape[:2] for path in (out / "masks").iterdir())
    with av.open(str(out / "overlay.mp4")) as container:
        frame = next(container.decode(container.streams.video[0]))
        assert (frame.height, frame.width) == expected.shape[:2] and frame.rotation == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["orientation"]["rotation"] == 90 and summary["orientation"]["mirrored"] is True


# --- 3. one meaning per key ------------------------------------------------------------------------------------


def test_mask_frame_and_time_mean_the_same_in_every_output(tmp_path, tiny_teso):
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=10)
    png = tiny_teso.segment(video, tmp_path / "png", window=3, progress=False, sampling=Sampling(rate=2))
    rle = tiny_teso.segment(video, tmp_path / "rle", window=3, progress=False, sampling=Sampling(rate=2), mask_format="rle")
    rows = json.loads((png / "summary.json").read_text())["frames"]
    lines = [json.loads(line) for line in (rle / "masks.jsonl").read_text().splitlines()]
    frames = list(iter_frames(video, "all"))
    assert [row["mask"] for row in rows] == [line["mask"] for line in lines] == list(range(6))
    assert sorted(path.name for path in (png / "masks").iterdir()) == [f"{row['mask']:05d}.png" for row in rows]
    assert [row["frame"] for row in rows] == [line["frame"] for line in lines] == [int((j + 15 / 16) * 5) for j in range(6)]
    assert [row["time"] for row in rows] == [line["time"] for line in lines] == [frames[row["frame"]].time for row in rows]


# --- 4. no audio track -----------------------------------------------------------------------------------------


def test_a_video_without_audio_is_segmented_with_silence_only_when_asked(tmp_path, tiny_teso_dir, capsys):
    video = make_video(tmp_path / "mute.mp4", seconds=2, audio_rate=None)
    segment = ["segment", str(video), "--model", str(tiny_teso_dir), "--cues", "bell", "--out", str(tmp_path / "out"), "--rate", "2"]
    assert main(segment) == 2
    assert f"{video}: has no audio track; pass --allow-silent to use silence as its audio" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main([*segment, "--allow-silent"]) == 0
    summary = json.loads((tmp_path / "out" / "mute" / "summary.json").read_text())
    assert summary["audio"].startswith("missing: the video has no audio track") and len(summary["frames"]) == 4
    with av.open(str(tmp_path / "out" / "mute" / "overlay.mp4")) as container:
        assert not container.streams.audio
    extract = ["extract", str(video), "--out", str(tmp_path / "frames")]
    assert main(extract) == 2 and "pass --allow-silent to use silence as its audio" in capsys.readouterr().err
    assert main([*extract, "--allow-silent"]) == 0 and "(silence: the video has no audio track)" in capsys.readouterr().out


# --- 8, 10, 12: safe folder names, the window, the closing line ---------------------------------------------


def test_a_video_whose_name_is_dots_cannot_write_outside_out(tmp_path, tiny_teso_dir, capsys):
    (tmp_path / "in").mkdir()
    video = make_video(tmp_path / "in" / "...mp4", seconds=2)
    out = tmp_path / "in" / "out"
    assert main(["segment", str(video), "--model", str(tiny_teso_dir), "--cues", "bell", "--out", str(out)]) == 2
    assert "means the parent folder; it must be one plain folder name" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "in").iterdir()) == ["...mp4"]
    with pytest.raises(AvsegError, match="must be one plain folder name"):
        segment_video(None, video, out, 16000, "m")


def test_a_huge_window_is_refused_before_any_work(tmp_path, tiny_teso_dir, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=2)
    with pytest.raises(SystemExit, match="2"):  # a usage error, as argparse reports them
        main(["segment", str(video), "--model", str(tiny_teso_dir), "--cues", "bell", "--out", str(tmp_path / "out"), "--window", "1000000000000"])
    assert "argument --window: must be between 1 and 256" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_segment_ends_with_frames_seconds_and_speed_when_piped(tmp_path, tiny_teso_dir):
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=5)
    command = [sys.executable, "-m", "avseg.cli", "segment", str(video), "--model", str(tiny_teso_dir), "--cues", "bell", "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)  # stdout is a pipe, not a terminal
    assert result.returncode == 0, result.stderr
    video_line, total, last = result.stdout.strip().splitlines()[-3:]
    match = re.search(r": (\d+) frames in ([\d.]+)s \(([\d.]+) frames/s\)", video_line)
    assert match and int(match.group(1)) == 10, video_line
    assert total.startswith("total: 1 video, 10 frames in ") and last.startswith("1 video: 1 segmented, 0 already done, 0 failed;")
