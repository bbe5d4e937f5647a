"""``avseg segment`` at every frame: rates, centred audio windows, keyframes with a propagator, RLE masks,
the streaming threads, and ``--rate 1`` byte for byte as before, on a tiny TeSO of the real classes."""

import json

import numpy as np
import pytest
import torch
from conftest import make_video
from legacy_segment import legacy_segment
from PIL import Image

from avseg.cli import main
from avseg.engine.dense import OutputFrame, Sampling, _CentredWindows, stream_frames
from avseg.engine.rle import decode, encode
from avseg.engine.segment import fixed_cues, segment_video
from avseg.engine.stream import Prefetch, Worker
from avseg.errors import MediaError
from avseg.media import iter_frames, read_audio
from avseg.propagation.hold import HoldPropagator


def masks_of(folder):
    return [np.asarray(Image.open(path)) > 0 for path in sorted((folder / "masks").glob("*.png"))]


def test_rate_1_reproduces_the_per_second_output_byte_for_byte(tmp_path, tiny_teso):
    video = make_video(tmp_path / "clip.mp4", seconds=7.5, fps=12, size=(80, 60), audio_rate=44100, layout="stereo")
    new = tiny_teso.segment(video, tmp_path / "new", window=3, progress=False, sampling=Sampling(rate=1))
    tiny_teso.segmenter.cues = fixed_cues(tiny_teso.cue_names, video.stem, 3)
    old = legacy_segment(tiny_teso.segmenter, video, tmp_path / "old" / "clip", tiny_teso.info["sample_rate"], tiny_teso.label, window=3)
    names = sorted(p.name for p in (old / "masks").iterdir())
    assert names == sorted(p.name for p in (new / "masks").iterdir()) and len(names) == 7
    for name in names:
        assert (old / "masks" / name).read_bytes() == (new / "masks" / name).read_bytes(), name
    assert (old / "summary.json").read_bytes() == (new / "summary.json").read_bytes()
    assert (old / "overlay.mp4").read_bytes() == (new / "overlay.mp4").read_bytes()


def test_every_frame_by_default_with_its_own_row(tmp_path, tiny_teso_dir, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=6, size=(40, 30))
    assert main(["segment", str(video), "--model", str(tiny_teso_dir), "--out", str(tmp_path / "out"), "--cues", "bell", "--window", "4"]) == 0
    out = tmp_path / "out" / "clip"
    masks = masks_of(out)
    frames = list(iter_frames(video, "all"))
    assert len(masks) == len(frames) == 12 and masks[0].shape == (30, 40)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampling"] == "every frame (6 fps), each with the 1-second audio window centred on it"
    assert [row["frame"] for row in summary["frames"]] == list(range(12))
    assert [row["time"] for row in summary["frames"]] == [frame.time for frame in frames]
    assert {row["kind"] for row in summary["frames"]} == {"inferred"}
    assert [row["mask_area"] for row in summary["frames"]] == [float(m.mean()) for m in masks]
    assert len(list(iter_frames(out / "overlay.mp4", "all"))) == 12


def test_rate_n_samples_each_interval_like_avsbench(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=12, audio_rate=16000)
    items = list(stream_frames(video, Sampling(rate=4), 12.0, 16000, window=5, propagated=False))
    outputs = [item for item in items if isinstance(item, OutputFrame)]
    assert [o.frame for o in outputs] == [int((j + 15 / 16) * 3) for j in range(12)]  # 15/16 of each 1/4 s
    shown = [item.interval for item in items if not isinstance(item, OutputFrame)]
    assert shown == [k // 3 for k in range(36)]  # the overlay holds interval j's mask over its 3 frames
    assert all(len(o.audio) == 16000 for o in outputs)


def test_each_frame_hears_the_second_centred_on_it(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=10, audio_rate=16000, tone_hz=300)
    waveform, _ = read_audio(video, 16000)
    windows = _CentredWindows(video, 16000)
    for time in (0.0, 0.3, 1.25, 2.0, 2.9):
        window = windows.next_for(OutputFrame(0, 0, time, np.zeros((1, 1, 3), np.uint8), True))
        first = int(round((time - 0.5) * 16000))
        expected = np.zeros(16000, dtype=np.float32)
        low, high = max(0, first), min(len(waveform), first + 16000)
        expected[low - first : high - first] = waveform[low:high]
        # streamed resampling joins read_audio's output to float rounding (avseg.media.iter_audio)
        np.testing.assert_allclose(window, expected, atol=1e-5)
        assert window[: max(0, -first)].max(initial=0) == 0  # silence before the start


def test_the_model_gets_window_frames_with_their_own_windows(tmp_path, tiny_teso):
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=5, audio_rate=16000)
    calls = []
    segmenter = tiny_teso.segmenter

    class Recording:  # the real segmenter, its inputs recorded
        def predict(self, clips):
            calls.append(clips[0])
            return segmenter.predict(clips)

    segmenter.cues = fixed_cues(("bell",), "clip", 4)
    segment_video(Recording(), video, tmp_path / "out", 16000, "teso", window=4, progress=False)
    assert [len(c.frames) for c in calls] == [4, 4, 2]
    assert all(len(c.waveform) == 16000 * len(c.frames) for c in calls)
    assert calls[0].meta["seconds"] == [0, 0, 0, 0] and calls[2].meta["seconds"] == [1, 1]


def test_auto_cues_of_a_dense_clip_are_those_of_the_second_each_frame_falls_in(tiny_teso):
    from avseg.cues.video import PerSecondCues
    from avseg.data.clip import Clip

    per_second = PerSecondCues(tiny_teso.segmenter, [["bell"], ["dog"], ["cat"]])
    clip = Clip(frames=np.zeros((5, 16, 16, 3), np.uint8), waveform=np.zeros(5 * 16000, np.float32), sample_rate=16000, meta={"id": "v", "seconds": [0, 0, 1, 2, 5]})
    assert len(per_second.predict([clip])[0]) == 5
    assert tiny_teso.segmenter.cues == {"v": [["bell"], ["bell"], ["dog"], ["cat"], ["cat"]]}


def test_keyframes_anchor_the_propagator_and_the_rest_are_propagated(tmp_path, tiny_teso):
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=6, audio_rate=16000)
    out = tiny_teso.segment(video, tmp_path / "out", window=2, progress=False, sampling=Sampling(keyframes=2), propagator=HoldPropagator())
    rows = json.loads((out / "summary.json").read_text())["frames"]
    assert [row["kind"] for row in rows] == (["keyframe"] + ["propagated"] * 2) * 4
    masks = masks_of(out)
    for k, row in enumerate(rows):
        assert np.array_equal(masks[k], masks[k - k % 3])  # held from its keyframe


def test_dense_segment_with_a_sam2_video_propagator_end_to_end(tmp_path, tiny_teso_dir):
    """Through ``avseg segment --propagator FOLDER``: a tiny random ``Sam2VideoModel`` (random weights cannot track;
    only the flow and the bounded memory are checked)."""
    from test_propagation import random_video_model

    random_video_model().save_pretrained(tmp_path / "sam2")
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=4, size=(48, 40))
    args = ["segment", str(video), "--model", str(tiny_teso_dir), "--out", str(tmp_path / "out"), "--cues", "bell", "--propagator", str(tmp_path / "sam2")]
    assert main(args) == 0
    rows = json.loads((tmp_path / "out" / "clip" / "summary.json").read_text())["frames"]
    assert [row["kind"] for row in rows] == (["keyframe"] + ["propagated"] * 3) * 2
    assert len(masks_of(tmp_path / "out" / "clip")) == 8


def test_an_empty_keyframe_ends_the_hold():
    hold = HoldPropagator()
    frame = np.zeros((4, 5, 3), np.uint8)
    hold.start(frame, np.eye(4, 5, dtype=bool))
    assert hold.step(frame).sum() == 4 and hold.memory_entries() == 1
    hold.start(frame, np.zeros((4, 5), bool))
    assert hold.step(frame).dtype == np.float32 and not hold.step(frame).any() and hold.memory_entries() == 0


def test_rle_format_writes_the_png_masks_as_coco_rle(tmp_path, tiny_teso):
    video = make_video(tmp_path / "clip.mp4", seconds=1, fps=8, size=(40, 30), audio_rate=16000)
    png = tiny_teso.segment(video, tmp_path / "png", window=3, progress=False)
    rle = tiny_teso.segment(video, tmp_path / "rle", window=3, progress=False, mask_format="rle")
    assert sorted(p.name for p in rle.iterdir()) == ["masks.jsonl", "overlay.mp4", "summary.json"]
    lines = [json.loads(line) for line in (rle / "masks.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(8)) and all(line["size"] == [30, 40] for line in lines)
    for line, mask in zip(lines, masks_of(png)):
        assert np.array_equal(decode(line), mask)


# pycocotools 2.0.11: mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode() on these masks
# (and on 200 random masks and a 720p one, all identical, checked in a scratch environment)
PYCOCOTOOLS_COUNTS = {"empty": "`1", "full": "0`1", "eye": "01X1" + "0" * 77 + "X;", "blob": "bQm3X6h3" + "0" * 597 + "^l0"}


def rle_examples():
    rng = np.random.default_rng(0)
    return {"empty": np.zeros((6, 8), bool), "full": np.ones((6, 8), bool), "eye": np.eye(40, 50, dtype=bool),
            "random": rng.random((37, 53)) > 0.5, "blob": np.pad(np.ones((200, 300), bool), ((50, 70), (400, 3)))}


def test_rle_round_trips_exactly_and_matches_pycocotools():
    for name, mask in rle_examples().items():
        rle = encode(mask)
        assert rle["size"] == list(mask.shape) and np.array_equal(decode(rle), mask), name
        if name in PYCOCOTOOLS_COUNTS:
            assert rle["counts"] == PYCOCOTOOLS_COUNTS[name], name
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = rng.random(tuple(rng.integers(1, 40, 2))) > rng.random()
        assert np.array_equal(decode(encode(mask)), mask)


def test_a_decoder_error_is_raised_as_itself_in_the_loop():
    def frames():
        yield from range(3)
        raise MediaError("clip.mp4", "video stream is corrupt")

    seen = []
    with pytest.raises(MediaError, match="clip.mp4: video stream is corrupt"):
        with Prefetch(frames(), 1) as prefetch:
            seen.extend(prefetch)
    assert seen == [0, 1, 2]


def test_a_writer_error_is_raised_as_itself_and_the_writer_stops():
    handled = []

    def handle(item):
        if item == 2:
            raise OSError(28, "No space left on device")
        handled.append(item)

    writer = Worker(handle, 1)
    with pytest.raises(OSError, match="No space left"):
        for item in range(100):
            writer.put(item)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert handled == [0, 1] and not writer._thread.is_alive()


def make_chirp_video(path, seconds, fps, rate=16000):
    """A grey video whose audio changes every instant (a rising, swelling chirp), so each second embeds apart."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(int(seconds * fps)):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((24, 32, 3), 5 * i, np.uint8), format="rgb24")))
        container.mux(video.encode(None))
        t = np.arange(int(seconds * rate)) / rate
        chirp = (0.8 * t / seconds * np.sin(2 * np.pi * (100 + 400 * t) * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(chirp, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def test_teso_hears_the_seconds_around_each_dense_frame(tmp_path, tiny_teso):
    """At a dense rate SeDAM's audio rows for frame ``t`` are the windows centred at ``t-1, t, t+1`` seconds
    (not the neighbouring frames' windows 1/fps apart); past the track's ends they are invalid."""
    video = make_chirp_video(tmp_path / "clip.mp4", seconds=4, fps=4)
    segmenter = tiny_teso.segmenter
    received = []
    hook = segmenter.model.sedam.register_forward_pre_hook(lambda module, args: received.append(args[2:4]))  # (cues, cue_valid, audio, audio_valid)
    try:
        segmenter.cues = fixed_cues(("bell",), "clip", 4)
        segment_video(segmenter, video, tmp_path / "out", 16000, "teso", window=4, progress=False, sampling=Sampling(rate=None))
    finally:
        hook.remove()
    audio = torch.cat([call[0] for call in received]).cpu()
    valid = torch.cat([call[1] for call in received]).cpu()
    frames = list(iter_frames(video, "all"))
    assert len(audio) == len(frames) == 16
    waveform, _ = read_audio(video, 16000)
    encoder = segmenter.inputs.audio_encoder
    for index in (2, 7, 9, 15):
        time = frames[index].time
        for column, offset in enumerate((-1, 0, 1)):
            first = int(round((time + offset - 0.5) * 16000))
            inside = first + 16000 > 0 and first < len(waveform)
            assert bool(valid[index, column]) == inside, (index, offset)
            if not inside:
                assert not audio[index, column].any()
                continue
            window = np.zeros(16000, np.float32)
            low, high = max(0, first), min(len(waveform), first + 16000)
            window[low - first : high - first] = waveform[low:high]
            expected = encoder.embed(window, 16000, 1)[0].float()
            # the same window embedded alone in both; tolerance as streamed decoding may round differently
            # from read_audio's (see test_each_frame_hears_the_second_centred_on_it)
            torch.testing.assert_close(audio[index, column], expected, atol=1e-4, rtol=1e-4)


def test_a_teso_hearing_more_than_the_dense_context_is_refused():
    from avseg.data.audio_span import CONTEXT_SECONDS, AudioSpan
    from avseg.encoders.logmel import LogMelEncoder
    from avseg.errors import ConfigError
    from avseg.models.teso.inputs import TeSOInputs

    span = AudioSpan((1.0,), np.zeros(16000 * (1 + 2 * CONTEXT_SECONDS), np.float32), -16000 * CONTEXT_SECONDS + 8000, 16000)
    inputs = TeSOInputs(LogMelEncoder(), None, text_dim=8, image_size=16, audio_window=CONTEXT_SECONDS + 1)
    with pytest.raises(ConfigError, match=f"audio_window of {CONTEXT_SECONDS + 1} s is more than the {CONTEXT_SECONDS} s"):
        inputs.span_windows(span)
    inputs.audio_window = CONTEXT_SECONDS  # the most a span holds
    audio, valid = inputs.span_windows(span)
    assert audio.shape == (1, 2 * CONTEXT_SECONDS + 1, LogMelEncoder.dim) and valid.tolist() == [[False, True, True, True, True]]
