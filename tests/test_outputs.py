"""What avseg writes: bad arguments and failed writes are one line, leave nothing behind, overwrite nothing.

Tests run as root here, which ignores permission bits, so an unwritable place
is an output path under a *file*, and a full disk is an injected ENOSPC.
"""

import errno
import json
import os

import pytest
import torch
from conftest import make_video, one_line_error
from PIL import Image

from avseg.cli import main
from avseg.config import load_recipe
from avseg.engine.demo import DEMO_RECIPE
from avseg.errors import AvsegError
from avseg.models.registry import save_system_info
from avseg.models.teso import TeSO, TeSOConfig


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def disk_full_after(monkeypatch, saves):
    """Make the ``saves``-th and later ``PIL.Image.save`` calls fail as on a full disk."""
    original, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) > saves:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "v.mp4", "--model", "m", "--out", "o", "--window", "0"], "argument --window: must be between 1 and 256, got 0"),
        (["segment", "v.mp4", "--model", "m", "--out", "o", "--window", "-2"], "argument --window: must be between 1 and 256, got -2"),
        (["extract", "v.mp4", "--out", "o", "--size", "-1"], "argument --size: must be between 0 and 8192, got -1"),
        (["extract", "v.mp4", "--out", "o", "--rate", "0"], "argument --rate: must be between 1000 and 384000, got 0"),
        (["extract", "v.mp4", "--out", "o", "--rate", "16k"], "argument --rate: expected an integer, got '16k'"),
        (["synth", "--layout", "s4", "--out", "o", "--videos", "0"], "argument --videos: must be at least 1, got 0"),
        (["synth", "--layout", "s4", "--out", "o", "--size", "100000"], "argument --size: must be between 32 and 4096, got 100000"),
        (["synth", "--layout", "s9", "--out", "o"], "argument --layout: invalid choice: 's9'"),
    ],
)
def test_meaningless_arguments_are_one_line_usage_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, argv, message)
    assert listing(tmp_path) == []


def test_extract_output_paths_that_cannot_be_folders(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", seconds=2)
    (tmp_path / "taken").write_text("keep me")
    one_line_error(capsys, ["extract", video, "--out", tmp_path / "taken"], "taken: exists and is not a folder")
    one_line_error(capsys, ["extract", video, "--out", tmp_path / "taken" / "x"], "taken: is a file, not a folder")
    one_line_error(capsys, ["synth", "--layout", "s4", "--out", tmp_path / "taken" / "x" / "y", "--size", "32"], "is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "keep me" and listing(tmp_path) == ["taken", "v.mp4"]


def test_extract_on_a_full_disk_leaves_nothing(tmp_path, capsys, monkeypatch):
    video = make_video(tmp_path / "v.mp4", seconds=3)
    disk_full_after(monkeypatch, saves=1)
    one_line_error(capsys, ["extract", video, "--out", tmp_path / "new" / "x"], "new/x: cannot write (No space left on device)")
    assert listing(tmp_path) == ["v.mp4"]  # no partial folder, no empty frames/, no empty new/


def test_an_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    """As root, permission bits do not bite: the OS refusal is injected where the output folder is made."""
    video = make_video(tmp_path / "v.mp4", seconds=2)

    def read_only(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir, prefix + "xyz" + suffix))

    monkeypatch.setattr("avseg.outputs.tempfile.mkdtemp", read_only)
    one_line_error(capsys, ["extract", video, "--out", tmp_path / "new" / "x"], "new: cannot write (Permission denied)")
    assert listing(tmp_path) == ["v.mp4"]


def test_extract_replaces_an_earlier_run_whole(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["extract", str(make_video(tmp_path / "long.mp4", seconds=4)), "--out", str(out), "--size", "32"]) == 0
    assert main(["extract", str(make_video(tmp_path / "short.mp4", seconds=2)), "--out", str(out), "--size", "32"]) == 0
    assert listing(out) == ["audio.wav", "frames", "frames/0.png", "frames/1.png"]  # no stale 2.png, 3.png
    (out / "mine.txt").write_text("keep")
    one_line_error(capsys, ["extract", tmp_path / "short.mp4", "--out", out], "already holds files avseg did not write (mine.txt)")
    assert (out / "mine.txt").read_text() == "keep"


def test_replacing_an_output_folder_deletes_only_what_avseg_writes_there(tmp_path, capsys):
    """The names avseg writes were checked at the top level only: a user's file inside frames/ went with
    the folder, and a folder named like the one the earlier result was moved aside to was deleted."""
    from avseg.engine.segment import OUTPUT_NAMES
    from avseg.outputs import check_writable

    video = make_video(tmp_path / "v.mp4", seconds=2)
    out = tmp_path / "x"
    assert main(["extract", str(video), "--out", str(out), "--size", "32"]) == 0
    (tmp_path / ".x.previous").mkdir()
    (tmp_path / ".x.previous" / "mine.txt").write_text("keep")
    assert main(["extract", str(video), "--out", str(out), "--size", "32"]) == 0
    assert (tmp_path / ".x.previous" / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.previous", "v.mp4", "x"]
    (out / "frames" / "mine.jpg").write_text("keep")
    one_line_error(capsys, ["extract", video, "--out", out], "x: already holds files avseg did not write (frames/mine.jpg)")
    assert (out / "frames" / "mine.jpg").read_text() == "keep"
    (tmp_path / "link").symlink_to(tmp_path / ".x.previous")  # replacing it would have replaced the link
    one_line_error(capsys, ["extract", video, "--out", tmp_path / "link"], "link: is a link; choose the folder it points to")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "link" / "mine.txt").read_text() == "keep"
    (tmp_path / "o" / "clip" / "masks").mkdir(parents=True)
    (tmp_path / "o" / "clip" / "masks" / "notes.txt").write_text("mine")
    with pytest.raises(AvsegError, match=r"clip: already holds files avseg did not write \(masks/notes.txt\)"):
        check_writable(tmp_path / "o" / "clip", OUTPUT_NAMES)


def test_extract_refuses_a_video_with_nothing_to_sample_like_segment(tmp_path, capsys):
    video = make_video(tmp_path / "blip.mp4", seconds=0.1, fps=10)  # one frame, before the 15/16 s sampling instant
    one_line_error(capsys, ["extract", video, "--out", tmp_path / "x"], "blip.mp4: is shorter than its first sampling instant")
    assert listing(tmp_path) == ["blip.mp4"]
    assert main(["extract", str(video), "--out", str(tmp_path / "x"), "--sampling", "all", "--size", "0"]) == 0
    assert listing(tmp_path / "x" / "frames") == ["0.png"]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """An untrained tiny TeSO at 32 pixels (its deepest Mask2Former map is 1x1), saved as avseg train saves it."""
    folder = tmp_path_factory.mktemp("model") / "teso32"
    torch.manual_seed(0)
    TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64, image_size=32)).save_pretrained(folder)
    save_system_info(folder, load_recipe(DEMO_RECIPE))
    return folder


def segment(model, out, *videos, window=5):
    return main(["segment", *map(str, videos), "--model", str(model), "--out", str(out), "--cues", "bell", "--window", str(window), "--rate", "1"])


def test_a_last_window_of_one_frame(tmp_path, small_model):
    """6 s in windows of 5: the last model call gets a single frame, which crashed Mask2Former's GroupNorm."""
    video = make_video(tmp_path / "clip.mp4", seconds=6, fps=10, size=(40, 30))
    assert segment(small_model, tmp_path / "out", video) == 0
    assert len(json.loads((tmp_path / "out" / "clip" / "summary.json").read_text())["frames"]) == 6


def test_a_lone_frame_is_segmented_as_in_a_batch(small_model):
    model = TeSO.from_pretrained(small_model).eval()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, 32, 32, generator=generator)
    condition = torch.randn(2, 2 * model.mask2former.config.hidden_dim, generator=generator)
    with torch.no_grad():
        together = model._pixel_features(pixels, condition).decoder_last_hidden_state
        alone = model._pixel_features(pixels[:1], condition[:1]).decoder_last_hidden_state
    torch.testing.assert_close(alone[0], together[0], rtol=1e-4, atol=1e-5)  # batch size may change the float summation order


def test_segment_refuses_two_videos_with_one_output_folder(tmp_path, capsys, small_model):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        make_video(tmp_path / folder / "clip.mp4", seconds=2)
    one_line_error(capsys, ["segment", tmp_path / "a/clip.mp4", tmp_path / "b/clip.mp4", "--model", small_model, "--out", tmp_path / "o", "--cues", "x"],
                   "a/clip.mp4 and", "b/clip.mp4 would both write to OUT/clip/")
    assert not (tmp_path / "o").exists()
    (tmp_path / "o" / "clip").mkdir(parents=True)
    (tmp_path / "o" / "clip" / "notes.txt").write_text("mine")
    make_video(tmp_path / "first.mp4", seconds=2)
    one_line_error(capsys, ["segment", tmp_path / "first.mp4", tmp_path / "a/clip.mp4", "--model", small_model, "--out", tmp_path / "o", "--cues", "x"],
                   "o/clip: already holds files avseg did not write (notes.txt)")
    assert listing(tmp_path / "o") == ["clip", "clip/notes.txt"]  # refused before first.mp4 was segmented


def test_segment_replaces_an_earlier_longer_run_and_a_failed_run_changes_nothing(tmp_path, capsys, monkeypatch, small_model):
    out = tmp_path / "out"
    (tmp_path / "long").mkdir()
    assert segment(small_model, out, make_video(tmp_path / "long" / "clip.mp4", seconds=4)) == 0
    assert segment(small_model, out, make_video(tmp_path / "clip.mp4", seconds=2)) == 0
    assert listing(out / "clip" / "masks") == ["00000.png", "00001.png"]  # not the stale 00002.png, 00003.png
    before = {p: p.read_bytes() for p in (out / "clip").rglob("*") if p.is_file()}

    disk_full_after(monkeypatch, saves=1)
    one_line_error(capsys, ["segment", tmp_path / "long" / "clip.mp4", "--model", small_model, "--out", out, "--cues", "bell"],
                   "out/clip: cannot write (No space left on device)")
    assert {p: p.read_bytes() for p in (out / "clip").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["clip", "failures.jsonl", "index.jsonl"]  # no partial folder beside it

    monkeypatch.undo()
    (out / "clip" / "notes.txt").write_text("mine")
    one_line_error(capsys, ["segment", tmp_path / "clip.mp4", "--model", small_model, "--out", out, "--cues", "bell"],
                   "clip: already holds files avseg did not write (notes.txt)")


def test_segment_output_under_a_file(tmp_path, capsys, small_model):
    video = make_video(tmp_path / "clip.mp4", seconds=2)
    (tmp_path / "o").write_text("")
    one_line_error(capsys, ["segment", video, "--model", small_model, "--out", tmp_path / "o", "--cues", "x"], "o: is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "o"]


@pytest.mark.parametrize(
    "name, problem",
    [
        ("..", "means the parent folder"),
        (".", "means the current folder"),
        ("", "is empty"),
        ("/tmp/elsewhere", "holds a path separator"),
        ("a/../..", "holds a path separator"),
        ("..\\up", "holds a path separator"),
        ("nul\0byte", "holds a control character"),
        ("two\nlines", "holds a control character"),
        ("x" * 256, "is longer than 255 bytes"),
    ],
)
def test_a_folder_name_must_be_one_plain_name(name, problem):
    from avseg.errors import ConfigError
    from avseg.outputs import safe_folder_name

    with pytest.raises(ConfigError) as raised:
        safe_folder_name(name, "name")
    assert str(raised.value) == f"name: {name!r} {problem}; it must be one plain folder name"


@pytest.mark.parametrize("name", ["run", "...", ".hidden", "clip 10:30", "é" * 127, "a..b"])
def test_plain_folder_names_pass(name):
    from avseg.outputs import safe_folder_name

    assert safe_folder_name(name, "name") == name
