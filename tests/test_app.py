"""avseg app: the session functions, and the page end to end through gradio_client on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import make_audio_file, make_video, save_tiny_teso
from gradio_client import Client, handle_file
from PIL import Image

from avseg.app.inputs import check_upload, write_examples
from avseg.engine.session import mask_agreement, run_segment
from avseg.errors import MediaError
from avseg.media import (
    audio_condition_copy,
    iter_frames,
    probe,
    read_audio,
    read_frames,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained tiny TeSO saved as avseg train saves it (the page's plumbing does not need a good model)."""
    return save_tiny_teso(tmp_path_factory.mktemp("model") / "teso")


def test_audio_condition_copy_keeps_the_frames(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=10, tone_hz=440)
    other = make_audio_file(tmp_path / "other.mka", seconds=1.3, rate=16000, tone_hz=1000)
    muted = audio_condition_copy(video, tmp_path / "muted" / "clip.mp4", "mute", 16000)
    swapped = audio_condition_copy(video, tmp_path / "swapped" / "clip.mp4", other, 16000)
    frames, times = read_frames(video, "all")
    for copy in (muted, swapped):
        copied, copied_times = read_frames(copy, "all")
        np.testing.assert_array_equal(frames, copied)  # packets copied, not re-encoded
        np.testing.assert_array_equal(times, copied_times)
    silence, _ = read_audio(muted, 16000)
    assert len(silence) >= 3 * 16000 and np.abs(silence).max() == 0
    swapped_audio, _ = read_audio(swapped, 16000)
    tone, _ = read_audio(other, 16000)
    # AAC is lossy and adds a priming delay: compare loudness and pitch, not samples.
    spectrum = np.abs(np.fft.rfft(swapped_audio[8000:24000]))  # one second: bin k is k Hz
    assert np.argmax(spectrum) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(swapped_audio**2)) == pytest.approx(np.sqrt(np.mean(tone**2)), rel=0.1)


def test_mask_agreement_is_per_frame_iou(tmp_path):
    shapes = {"a": [np.zeros((4, 4)), np.eye(4)], "b": [np.zeros((4, 4)), np.triu(np.ones((4, 4)))]}
    for name, masks in shapes.items():
        (tmp_path / name / "masks").mkdir(parents=True)
        for k, mask in enumerate(masks):
            Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / name / "masks" / f"{k:05d}.png")
    assert mask_agreement(tmp_path / "a", tmp_path / "b") == [1.0, 4 / 10]  # empty vs empty agrees; eye is 4 of triu's 10


def test_bad_uploads_are_refused_by_name(tmp_path):
    text = tmp_path / "server-side.mp4"
    text.write_text("not a video\n")
    audio_only = make_audio_file(tmp_path / "tone.mka", seconds=1, rate=16000)
    long_video = make_video(tmp_path / "long.mp4", seconds=4, fps=5)
    for path, fragment in ((text, "notes.mp4: not a readable media file"), (audio_only, "notes.mp4: has no video stream"),
                           (long_video, "notes.mp4: is 4s long; this app segments videos up to 3s")):
        with pytest.raises(MediaError, match=fragment):
            check_upload(path, max_seconds=3, name="notes.mp4")
    assert check_upload(long_video, max_seconds=5).width == 64


def test_run_segment_with_muted_audio(tmp_path, tiny_model):
    [example, _] = write_examples(tmp_path / "examples")
    out = run_segment(tiny_model, example.video, tmp_path / "out", cues=example.cues.split(", "), audio="mute", device="cpu", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    frames = len(list(iter_frames(example.video, "all")))  # run_segment, like avseg segment, gives every frame
    assert summary["audio"] == "muted" and summary["video"] == str(example.video) and len(summary["frames"]) == frames > 6
    overlay_audio, _ = read_audio(out / "overlay.mp4", 16000)
    assert np.abs(overlay_audio).max() == 0  # the overlay plays the audio the model heard


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


@pytest.fixture(scope="module")
def page(tiny_model, tmp_path_factory):
    from avseg.app.server import SegmentApp

    with SegmentApp([str(tiny_model)], max_seconds=8, device="cpu") as app:
        url = app.launch("127.0.0.1", _free_port(), block=False)
        client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")), analytics_enabled=False)
        yield app, client
    assert not app.root.exists()  # uploads, examples and results go with the app


def _segment(page, video, cues, comparison="muted audio", swap=None):
    app, client = page
    swap = handle_file(str(swap)) if swap else None
    return client.predict(handle_file(str(video)), app.models[0], cues, "", comparison, swap, api_name="/segment")


def test_page_segments_an_example_and_compares_with_muted_audio(page):
    app, _ = page
    example = app.examples[0]
    status, overlay, compared, agreement, timeline, summary, masks = _segment(page, example.video, example.cues)
    assert status.startswith("Segmented **synthetic-0.mp4** with teso") and "6 masks" in status
    info = probe(overlay)
    assert (info.width, info.height, info.sample_rate) == (64, 64, 16000) and probe(compared).has_video
    assert agreement.startswith("**Agreement with muted audio: J = ")
    summary = json.loads(summary)
    assert len(summary["frames"]) == 6 and summary["video"] == "synthetic-0.mp4"  # the user's file name, not the server's upload path
    assert {row[2] for row in timeline["data"]} == {f"{s} ({c})" for s in ("sounding score", "mask area") for c in ("original", "muted audio")}
    with zipfile.ZipFile(masks) as archive:
        assert sorted(n for n in archive.namelist() if not n.endswith("/")) == [f"masks/{k:05d}.png" for k in range(6)]


def test_page_swaps_in_another_examples_audio(page):
    app, _ = page
    example = app.examples[0]
    status, _, compared, agreement, *_ = _segment(page, example.video, example.cues, comparison="swapped audio")
    assert status.startswith("Segmented") and agreement.startswith("**Agreement with swapped audio: J = ")
    heard, _ = read_audio(compared, 16000)
    other, _ = read_audio(app.examples[1].video, 16000)
    # the compared overlay carries the other example's audio (AAC twice: loudness within 10%)
    assert np.sqrt(np.mean(heard**2)) == pytest.approx(np.sqrt(np.mean(other[: len(heard)] ** 2)), rel=0.1)


def test_page_segments_a_video_without_audio_with_silence_and_says_so(page, tmp_path):
    """As ``avseg segment --allow-silent``: the page has no flag to give, and says what the model heard."""
    status, overlay, *_ , summary, _ = _segment(page, make_video(tmp_path / "mime.mp4", seconds=3, audio_rate=None), "bell")
    assert status.startswith("Segmented **mime.mp4**") and status.endswith("It has no audio track: the model heard silence.")
    assert json.loads(summary)["audio"].startswith("missing: the video has no audio track")


@pytest.mark.parametrize("kind", ["text", "audio only", "too long", "silent swap source", "breaks mid-stream"])
def test_page_refuses_bad_uploads_in_one_line(page, tmp_path, kind):
    swap = None
    if kind == "breaks mid-stream":  # passes the upload checks, then fails while segmenting
        source = make_video(tmp_path / "source.mp4", seconds=4, fps=10, faststart=True)
        upload, fragment = tmp_path / "holiday.mp4", "**Error:** holiday.mp4: "
        upload.write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 3])
    elif kind == "silent swap source":
        upload, swap, fragment = page[0].examples[0].video, make_video(tmp_path / "mime.mp4", audio_rate=None), "mime.mp4: has no audio stream to swap in"
    elif kind == "text":
        upload, fragment = tmp_path / "holiday.mp4", "holiday.mp4: not a readable media file"
        upload.write_text("this is a text file\n")
    elif kind == "audio only":
        upload, fragment = make_audio_file(tmp_path / "holiday.mka", seconds=1, rate=16000), "holiday.mka: has no video stream"
    else:
        upload, fragment = make_video(tmp_path / "holiday.mp4", seconds=9, fps=5), "holiday.mp4: is 9s long; this app segments videos up to 8s"
    status, *outputs = _segment(page, upload, "bell", comparison="swapped audio", swap=swap)
    assert status.startswith("**Error:** ") and fragment in status and "\n" not in status and "Traceback" not in status
    assert str(page[0].root) not in status  # the user's file name, never the server's upload path
    assert outputs == [None] * 6


def test_page_reports_a_missing_cue_list(page):
    app, _ = page
    status, *_ = _segment(page, app.examples[0].video, "")
    assert status == "**Error:** TeSO segments with text cues: pass cues 'guitar,man' (the objects that could sound), or cues auto"


def test_app_without_gradio_is_one_line():
    code = "import sys; sys.modules['gradio'] = None; from avseg.cli import main; sys.exit(main(['app']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == "avseg: error: avseg app needs the app extra: pip install 'avseg[app]'\n"


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_app_command_on_any_free_port_stops_and_leaves_nothing(tmp_path, tiny_model, stop):
    """`--port 0` crashed; after a normal stop, Gradio's cache folder (and torch's, once made) stayed in the
    temporary folder."""
    import os
    import signal
    import urllib.request

    environment = {**os.environ, "TMPDIR": str(tmp_path)}  # the app's temporary folder goes here, where we can look
    command = [sys.executable, "-m", "avseg.cli", "app", "--model", str(tiny_model), "--port", "0", "--device", "cpu"]
    server = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = server.stdout.readline()  # "avseg app: URL (Ctrl-C stops it)", or nothing if it failed
        assert started.startswith("avseg app: http://127.0.0.1:"), started + server.stderr.read()
        url = started.split()[2]
        assert not url.endswith(":0/")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert "avseg" in response.read().decode()
        assert len(list(tmp_path.glob("avseg-app-*"))) == 1
    finally:
        server.send_signal(getattr(signal, stop))
        stdout, _ = server.communicate(timeout=60)
    assert server.returncode == 0 and "avseg app: stopped" in stdout.splitlines()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option, message",
    [
        (["--max-seconds", "nan"], "--max-seconds must be a positive number of seconds, got nan"),
        (["--max-seconds", "inf"], "--max-seconds must be a positive number of seconds, got inf"),
        (["--max-seconds", "-5"], "--max-seconds must be a positive number of seconds, got -5"),
        (["--port", "65536"], "argument --port: must be between 0 and 65535, got 65536"),
    ],
)
def test_app_options_that_mean_nothing_are_one_line(capsys, option, message):
    from avseg.cli import main

    try:
        code = main(["app", *option])
    except SystemExit as exit:  # argparse usage errors leave through parser.exit
        code = exit.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"avseg: error: {message}")


def test_app_on_a_port_in_use_is_one_line(tiny_model):
    from avseg.app.server import SegmentApp
    from avseg.errors import ConfigError

    with socket.socket() as taken, SegmentApp([str(tiny_model)], device="cpu") as app:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^--port {port}: cannot listen on 127.0.0.1:{port} \(the port is in use"):
            app.launch("127.0.0.1", port, block=False)
