"""avseg segment over a corpus: inputs, records and resume, failures, the index; torchrun with gloo on CPU.

The torchrun tests run the real command in 2 processes (``--standalone``: a free port, so that they never
meet another run's rendezvous) with one thread each, and compare with one process run here with one
thread: the same operations on the same machine, so the same bytes.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import make_video, one_line_error

import avseg
from avseg.cli import main
from avseg.engine.corpus import corpus_videos, read_record
from avseg.errors import ConfigError

CUES = ["--cues", "bell, dog"]


def torchrun(*args) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` with the avseg under test (its src first on the path,
    its console script on PATH) and one thread per process."""
    scripts = Path(sys.executable).parent
    assert (scripts / "avseg").is_file(), f"no avseg console script beside {sys.executable}"
    env = dict(
        os.environ, PATH=f"{scripts}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(Path(avseg.__file__).parents[1]), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(launcher: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """The launcher's output once it ends; stopped (with its workers) if it outlives ``timeout``."""
    try:
        return launcher.communicate(timeout=timeout)
    finally:
        if launcher.poll() is None:
            launcher.terminate()  # torchrun stops its workers on SIGTERM
            launcher.communicate(timeout=60)


def one_thread(function, *args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args)
    finally:
        torch.set_num_threads(threads)


def index(out: Path) -> dict[str, dict]:
    return {Path(row["video"]).stem: row for row in map(json.loads, (out / "index.jsonl").read_text().splitlines())}


def files(folder: Path) -> dict[str, bytes]:
    """Every output file's bytes, the record without its timing."""
    found = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "record.json"}
    record = read_record(folder)
    found["record.json"] = json.dumps({**record, "result": {**record["result"], "time_spent_s": None}}).encode()
    return found


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith((".partial", ".previous")))


def test_folders_globs_and_lists(tmp_path):
    for name in ("a.mp4", "sub/b.MOV", ".hidden/c.mp4", "sub/.d.mp4", "notes.txt"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    assert [v.path.name for v in corpus_videos([tmp_path / "in"], None).videos] == ["a.mp4", "b.MOV"]
    assert [v.path.name for v in corpus_videos([str(tmp_path / "in" / "**" / "*.*")], None).videos] == ["a.mp4", "notes.txt", "b.MOV"]
    listed = tmp_path / "lists" / "corpus.txt"
    listed.parent.mkdir()
    listed.write_text('../in/a.mp4\n\n{"path": "../in/sub/b.MOV", "cues": "guitar, man"}\n{"path": "../in/a.mp4"}\n'
                      '{"path": "../in/notes.txt", "vocabulary": ["dog barking: dog", "piano"]}\n')
    corpus = corpus_videos([], listed)
    a, b, notes = corpus.videos
    assert a.path == tmp_path / "lists" / "../in/a.mp4" and a.origin == f"{listed}:1" and a.cues is None  # beside the list
    assert b.cues == ("guitar", "man") and notes.vocabulary == "dog barking: dog, piano"
    assert corpus.note() == f"1 repeated entry ({listed}:4 repeats {listed}:1): each video is segmented once"


@pytest.mark.parametrize(
    "lines, message",
    [
        ("\n  \n", "lists no videos"),
        ("a.mp4\nother/a.mp4\n", "a.mp4 (LIST:1) and LIST_DIR/other/a.mp4 (LIST:2) would both write to OUT/a/"),
        ('a.mp4\n{"path": "a.mp4", "cues": "dog"}\n', "LIST_DIR/a.mp4 (LIST:2) repeats LIST_DIR/a.mp4 (LIST:1) with other cues"),
        ('{"path": "a.mp4", "cue": "dog"}\n', "LIST:1: unknown key 'cue' (a line holds path, cues, vocabulary)"),
        ('{"path": "a.mp4",}\n', "LIST:1: not a JSON object (Expecting property name"),
        ('{"cues": "dog"}\n', "LIST:1: 'path' must name the video file"),
        ('{"path": "a.mp4", "cues": "auto"}\n', "LIST:1: cues 'auto' is for the whole run"),
        ('{"path": "a.mp4", "vocabulary": "mine.txt"}\n', "LIST:1: mine.txt: vocabulary file not found"),
        ("index.jsonl.mp4\n", "its output folder OUT/index.jsonl would take the place of the corpus's index.jsonl"),
    ],
)
def test_a_bad_list_is_one_line(tmp_path, lines, message):
    listed = tmp_path / "corpus.txt"
    listed.write_text(lines)
    with pytest.raises(ConfigError) as raised:
        corpus_videos([], listed)
    assert message.replace("LIST_DIR", str(tmp_path)).replace("LIST", str(listed)) in str(raised.value)


def test_bad_corpus_input_on_the_command_line_is_one_line(tmp_path, capsys, tiny_teso_dir):
    listed = tmp_path / "corpus.txt"
    listed.write_text('{"path": "a.mp4", "cues": ["dog"]}\nb.mp4\n')
    (tmp_path / "empty").mkdir()
    segment = ["segment", "--model", tiny_teso_dir, "--out", tmp_path / "out"]
    one_line_error(capsys, [*segment, "--list", listed, tmp_path / "c.mp4"], "--list and videos on the command line")
    one_line_error(capsys, segment, "no videos: name video files, folders or glob patterns, or --list FILE")
    one_line_error(capsys, [*segment, tmp_path / "empty"], "empty: a folder with no video files in it")
    one_line_error(capsys, [*segment, str(tmp_path / "*.mkv")], "*.mkv: the pattern matches no file")
    one_line_error(capsys, [*segment, "--list", tmp_path / "missing.txt"], "--list", "missing.txt: no such file")
    # cues on some lines only: the others need the command's
    one_line_error(capsys, [*segment, "--list", listed], f"b.mp4 ({listed}:2): TeSO segments with text cues: give this line cues, or pass --cues")
    listed.write_text('{"path": "a.mp4", "vocabulary": "dog"}\n')
    one_line_error(capsys, [*segment, "--list", listed, *CUES], f"{listed}:1: vocabulary: {tiny_teso_dir} takes no vocabulary")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "index.jsonl").write_text("my notes\n")
    listed.write_text("a.mp4\n")
    one_line_error(capsys, [*segment, "--list", listed, *CUES], "index.jsonl: is not a index.jsonl avseg wrote")
    assert (tmp_path / "out" / "index.jsonl").read_text() == "my notes\n"


def test_a_rerun_skips_matching_records_and_redoes_the_rest(tmp_path, capsys, monkeypatch, tiny_teso_dir):
    import avseg.engine.corpus_run

    (tmp_path / "in").mkdir()
    for name in ("one", "two", "three"):
        make_video(tmp_path / "in" / f"{name}.mp4", seconds=1, fps=4, size=(32, 24))
    out = tmp_path / "out"
    segment = ["segment", tmp_path / "in", "--model", tiny_teso_dir, "--out", out, *CUES]  # a folder's videos: each checked in its turn
    opened_in, open_video = [], avseg.engine.corpus_run.open_video

    def opening(video, *args):  # the videos are opened (probed, checked, decoding) by the opener thread
        opened_in.append((Path(video).stem, threading.current_thread().name))
        return open_video(video, *args)

    monkeypatch.setattr(avseg.engine.corpus_run, "open_video", opening)
    assert main(list(map(str, segment))) == 0
    assert [name for name, _ in opened_in] == ["one", "three", "two"] and all(thread.startswith("avseg-open") for _, thread in opened_in)
    monkeypatch.undo()
    assert {name: row["status"] for name, row in index(out).items()} == {"one": "done", "two": "done", "three": "done"}
    first = {name: (out / name / "record.json").stat().st_mtime_ns for name in ("one", "two", "three")}

    (out / "two" / "record.json").unlink()  # a folder without a record is not done
    os.utime(tmp_path / "in" / "three.mp4", ns=(1, 1))  # a changed input is not the one recorded
    leftover = out / ".one.abcd1234.partial"  # what a killed run leaves: only what avseg writes there
    (leftover / "masks").mkdir(parents=True)
    (leftover / "masks" / "00000.png").write_bytes(b"")
    capsys.readouterr()
    assert main(list(map(str, segment))) == 0
    assert {name: row["status"] for name, row in index(out).items()} == {"one": "skipped", "two": "done", "three": "done"}
    assert (out / "one" / "record.json").stat().st_mtime_ns == first["one"] and leftovers(out) == []
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"3 videos: 2 segmented, 1 already done, 0 failed; index in {out / 'index.jsonl'}"

    # other settings are not the ones recorded; a folder holding a user's file fails alone, and the corpus goes on
    (out / "two" / "notes.txt").write_text("mine")
    assert main(list(map(str, [*segment, "--window", "2"]))) == 1
    rows = index(out)
    assert [rows[name]["status"] for name in ("one", "two", "three")] == ["done", "failed", "done"]
    assert "two: already holds files avseg did not write (notes.txt)" in rows["two"]["reason"]
    assert read_record(out / "one")["settings"]["window"] == 2 and (out / "two" / "notes.txt").read_text() == "mine"
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [row["video"] for row in failures] == [str(tmp_path / "in" / "two.mp4")]
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(f"2 segmented, 0 already done, 1 failed (reasons in {out / 'failures.jsonl'}); index in {out / 'index.jsonl'}")


def rank_process(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker with ``RANK=rank`` (a child of the launcher)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                environment = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError):
                continue
            if parent == launcher.pid and f"RANK={rank}".encode() in environment:
                return int(entry.name)
    raise AssertionError(f"no process of rank {rank} under {launcher.pid}")


def kill_in_the_middle_of(launcher: subprocess.Popen, out: Path, name: str, rank: int) -> None:
    """SIGKILL ``rank`` once ``name``'s staging folder holds a mask (its video is half done)."""
    deadline = time.monotonic() + 300
    while launcher.poll() is None and time.monotonic() < deadline:
        if any(out.glob(f".{name}.*.partial/masks/*.png")):
            os.kill(rank_process(launcher, rank), signal.SIGKILL)
            return
        time.sleep(0.005)
    raise AssertionError(f"the run ended (or stalled) before {name} was under way")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds torchrun's workers through /proc")
def test_torchrun_corpus_with_a_broken_video_and_a_killed_rank_equals_one_process(tmp_path, tiny_teso_dir):
    videos = tmp_path / "videos"
    videos.mkdir()
    for k in range(8):
        make_video(videos / f"clip{k}.mp4", seconds=1.5, fps=10, size=(32, 24), tone_hz=300 + 60 * k, faststart=True)
    whole = (videos / "clip5.mp4").read_bytes()
    (videos / "clip5.mp4").write_bytes(whole[: len(whole) * 2 // 3])  # its header is whole: it breaks while decoding
    listed = tmp_path / "corpus.txt"
    listed.write_text("".join(f"videos/clip{k}.mp4\n" if k != 2 else '{"path": "videos/clip2.mp4", "cues": ["dog"]}\n' for k in range(8)))
    command = ["segment", "--list", listed, "--model", tiny_teso_dir, *CUES]

    assert one_thread(main, list(map(str, [*command, "--out", tmp_path / "single"]))) == 1

    out = tmp_path / "two"
    launcher = torchrun("--no-python", "avseg", *command, "--out", out)
    # videos 1, 3, 5, 7 are rank 1's: kill it in the middle of its second
    try:
        kill_in_the_middle_of(launcher, out, "clip3", rank=1)
    finally:
        finish(launcher)
    assert launcher.returncode != 0 and leftovers(out)  # clip3's half-written folder, and rank 0's if it was mid-video
    assert not (out / "clip3").exists() and (out / "clip1" / "record.json").is_file()
    finished = {p.name: (p / "record.json").stat() for p in out.iterdir() if (p / "record.json").is_file()}

    launcher = torchrun("--no-python", "avseg", *command, "--out", out)
    stdout, stderr = finish(launcher)
    assert launcher.returncode != 0, stderr[-3000:]  # a video failed
    lines = stdout.strip().splitlines()
    assert re.fullmatch(rf"8 videos: {7 - len(finished)} segmented, {len(finished)} already done, 1 failed \(reasons in .*\); index in .*", lines[-1]), stdout
    assert lines[-2].startswith("total on 2 processes: ") and {line.split(":")[0] for line in lines[-4:-2]} == {"rank 0", "rank 1"}
    assert re.search(r"^\[rank [01]\] avseg: error: .*clip5\.mp4: ", stderr, re.MULTILINE), stderr[-3000:]
    assert leftovers(out) == []
    for name, record in finished.items():  # not segmented again
        now = (out / name / "record.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (record.st_ino, record.st_mtime_ns), name
    rows = index(out)
    assert list(rows) == [f"clip{k}" for k in range(8)]
    assert {name for name, row in rows.items() if row["status"] == "skipped"} == set(finished)
    assert rows["clip5"]["status"] == "failed" and {row["rank"] for row in rows.values() if row["status"] == "done"} <= {0, 1}
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(row["video"]).name for row in failures] == ["clip5.mp4"] and failures[0]["reason"].startswith(str(tmp_path / "videos" / "clip5.mp4"))

    single = tmp_path / "single"
    assert (out / "failures.jsonl").read_text() == (single / "failures.jsonl").read_text().replace('"rank": 0', f'"rank": {failures[0]["rank"]}')
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single.iterdir())
    for k in (0, 1, 2, 3, 4, 6, 7):
        assert files(out / f"clip{k}") == files(single / f"clip{k}"), k
    assert read_record(out / "clip2")["settings"]["cues"] == ["dog"] and read_record(out / "clip0")["settings"]["cues"] == ["bell", "dog"]


def test_torchrun_evaluation_equals_one_process(tmp_path):
    """Binary (J, F, FPR, the robust conditions and G-metrics, the preference rows) and AVSS (mIoU, F and each
    class's), on splits whose batches do not divide evenly among the processes."""
    from avseg.config import load_recipe
    from avseg.data.avsbench import AVSS
    from avseg.engine.demo import DEMO_RECIPE
    from avseg.models.registry import save_system_info
    from avseg.models.teso import TeSO, TeSOConfig

    assert main(["synth", "--layout", "ms3", "--out", str(tmp_path / "ms3"), "--videos", "24", "--size", "32"]) == 0  # 5 test clips
    assert main(["synth", "--layout", "avss", "--out", str(tmp_path / "avss"), "--videos", "16", "--size", "32"]) == 0  # 3 test clips
    models = {}
    for layout in ("ms3", "avss"):
        torch.manual_seed(0)
        classes = AVSS(tmp_path / "avss", "test").num_classes if layout == "avss" else 2
        TeSO(TeSOConfig.tiny(num_classes=classes, text_dim=384, audio_dim=64, image_size=32)).save_pretrained(tmp_path / f"teso_{layout}")
        save_system_info(tmp_path / f"teso_{layout}", load_recipe(DEMO_RECIPE))
        models[layout] = tmp_path / f"teso_{layout}"

    def evaluate(layout, out, *extra):
        return ["evaluate", DEMO_RECIPE, "--checkpoint", str(models[layout]), "--out", str(out), "--set", f"data.root={tmp_path / layout}",
                "--set", f"data.layout={layout}", "--set", "model_config.image_size=32", *extra]

    binary = ("--set", "train.eval_batch_clips=2", "--perturb", "mute,swap", "--robust")  # batches of 2, 2 and 1 clips
    semantic = ("--set", "train.eval_batch_clips=1",)
    script = tmp_path / "evaluate_both.py"
    script.write_text(f"import sys\nfrom avseg.cli import main\nsys.exit(main({evaluate('ms3', tmp_path / 'ddp_ms3', *binary)!r}) or main({evaluate('avss', tmp_path / 'ddp_avss', *semantic)!r}))\n")
    launcher = torchrun(script)
    assert one_thread(main, evaluate("ms3", tmp_path / "one_ms3", *binary)) == 0
    assert one_thread(main, evaluate("avss", tmp_path / "one_avss", *semantic)) == 0
    _, stderr = finish(launcher)
    assert launcher.returncode == 0, stderr[-3000:]
    for layout in ("ms3", "avss"):
        single = json.loads((tmp_path / f"one_{layout}" / "report.json").read_text())
        ddp = json.loads((tmp_path / f"ddp_{layout}" / "report.json").read_text())
        assert (single.pop("processes"), ddp.pop("processes")) == (1, 2)
        assert_close_everywhere(ddp, single)
    assert len(single["results"]["normal"]["IoU_per_class"]) == AVSS(tmp_path / "avss", "test").num_classes
    assert set(ddp_ms3 := json.loads((tmp_path / "ddp_ms3" / "report.json").read_text())["results"]) == {"normal", "mute", "mute (gate off)", "swap"}
    assert ddp_ms3["normal"]["num_batches"] == 3 and set(json.loads((tmp_path / "ddp_ms3" / "report.json").read_text())["robust"]["conditions"]) == {"positive", "silence", "noise", "offscreen"}


def assert_close_everywhere(actual, expected, where="report"):
    """Equal structure, numbers within 1e-6, everything else equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            assert_close_everywhere(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_close_everywhere(a, e, f"{where}[{k}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert actual == pytest.approx(expected, abs=1e-6, rel=0), where
    else:
        assert actual == expected, where
