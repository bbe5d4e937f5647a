import shutil
import subprocess
import sys

import pytest
from conftest import make_video

from avseg.cli import main


def run_cli(*args):
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "avseg.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("avseg: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_synth_then_check(tmp_path, capsys):
    assert main(["synth", "--layout", "ms3", "--out", str(tmp_path / "d"), "--videos", "5", "--size", "32"]) == 0
    assert main(["check", str(tmp_path / "d"), "--layout", "ms3", "--json"]) == 0
    out = capsys.readouterr().out
    assert "wrote a synthetic ms3 dataset" in out and '"annotated_frames": 15' in out


def test_extract_writes_frames_and_audio(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", seconds=3, fps=10)
    assert main(["extract", str(video), "--out", str(tmp_path / "x"), "--size", "32"]) == 0
    assert sorted(p.name for p in (tmp_path / "x" / "frames").iterdir()) == ["0.png", "1.png", "2.png"]
    assert (tmp_path / "x" / "audio.wav").is_file()
    assert "wrote 3 frames" in capsys.readouterr().out


def test_bad_media_errors(tmp_path):
    video = make_video(tmp_path / "good.mp4", seconds=3)
    data = video.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.mp4").write_text("hello\n" * 100)
    silent = make_video(tmp_path / "silent.mp4", seconds=2, audio_rate=None)
    assert_one_line_error(run_cli("extract", tmp_path / "truncated.mp4", "--out", tmp_path / "o"), "truncated.mp4", "truncated")
    assert_one_line_error(run_cli("extract", tmp_path / "text.mp4", "--out", tmp_path / "o"), "text.mp4", "not a readable media file")
    assert_one_line_error(run_cli("extract", silent, "--out", tmp_path / "o"), "silent.mp4", "has no audio track")
    assert run_cli("extract", silent, "--out", tmp_path / "o", "--allow-silent").returncode == 0
    assert_one_line_error(run_cli("probe", tmp_path / "missing.mp4"), "missing.mp4", "no such file")


@pytest.fixture()
def s4_copy(synthetic, tmp_path):
    shutil.copytree(synthetic / "s4", tmp_path / "s4")
    return tmp_path / "s4"


def test_missing_frame_error(s4_copy):
    victim = next((s4_copy / "s4_data" / "visual_frames" / "test").rglob("*_4.png"))
    victim.unlink()
    assert_one_line_error(run_cli("check", s4_copy, "--layout", "s4", "--split", "test"), victim.name, "missing file")


def test_csv_missing_column_error(s4_copy):
    csv = s4_copy / "s4_meta_data.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(",".join(line.split(",")[:3]) for line in lines) + "\n")  # drop the split column
    assert_one_line_error(run_cli("check", s4_copy, "--layout", "s4"), "s4_meta_data.csv", "missing column(s) split")


def test_usage_errors_exit_non_zero(tmp_path):
    result = run_cli("synth", "--layout", "s9", "--out", tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert_one_line_error(run_cli("check", tmp_path, "--layout", "refavs"), "metadata.csv", "missing file")
    assert_one_line_error(run_cli("check", tmp_path, "--layout", "s4", "--split", "bogus"), "unknown split 'bogus'")
