"""``avseg segment --cues auto``: TeSO on any video, its cues made by the captioner and the LLM of
``avseg cues`` (tiny instances of the real BLIP-2 and Qwen2 classes) through the same cached pipeline."""

import json

import torch
from conftest import make_video
from test_cues import model_dirs  # noqa: F401 (the tiny captioner and LLM folders)

from avseg.cli import main
from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.cues.video import PerSecondCues
from avseg.models.registry import save_system_info
from avseg.models.teso import TeSO, TeSOConfig


def teso_folder(path):
    torch.manual_seed(0)
    TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64)).save_pretrained(path)  # MiniLM and log-mel widths
    recipe = Recipe(model="teso", encoders=EncodersConfig(audio="logmel", text="minilm-offline"), data=DataConfig(sample_rate=16000))
    save_system_info(path, recipe)
    return path


def entries(folder):
    return [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]


def test_segment_with_auto_cues_runs_end_to_end_and_caches_the_cues(tmp_path, model_dirs, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AVSEG_CACHE", str(tmp_path / "cache"))
    model = teso_folder(tmp_path / "teso")
    video = make_video(tmp_path / "clip.mp4", seconds=3.0, size=(48, 40))
    args = [
        "segment", str(video), "--model", str(model), "--out", str(tmp_path / "out"), "--cues", "auto",
        "--captioner", str(model_dirs / "captioner"), "--llm", str(model_dirs / "llm"), "--device", "cpu", "--window", "2",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cues for 3 seconds" in out and "3 new" in out
    (cache,) = (tmp_path / "cache" / "cues").iterdir()  # one cache per captioner and LLM, outside the replaced outputs
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["captioner"]["model"] == str(model_dirs / "captioner") and manifest["dataset"] == "VideoFrames"
    assert [entry["frame"] for entry in entries(cache)] == [0, 1, 2]
    assert all(isinstance(entry["caption"], str) and isinstance(entry["cues"], list) for entry in entries(cache))
    assert len(json.loads((tmp_path / "out" / "clip" / "summary.json").read_text())["frames"]) == 30  # every frame, 10 fps

    assert main(args) == 0  # its record matches: the video is not segmented again
    assert "1 already done" in capsys.readouterr().out
    again = [*args[:5], str(tmp_path / "out2"), *args[6:]]  # segmented again, elsewhere: the cues come from the cache
    assert main(again) == 0
    assert "0 new, 3 cached" in capsys.readouterr().out and len(entries(cache)) == 3

    assert main([*args[:6], "--cues", "guitar, man", "--device", "cpu"]) == 0  # typed cues keep working


def test_auto_cues_are_an_error_for_models_without_cues(tmp_path, capsys):
    from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig

    AV2TSAM(AV2TSAMConfig.tiny(audio_dim=64, vision_dim=48)).save_pretrained(tmp_path / "av2t")
    save_system_info(tmp_path / "av2t", Recipe(model="av2t-sam", encoders=EncodersConfig(audio="logmel", image="thumbnail")))
    video = make_video(tmp_path / "clip.mp4", seconds=1.0)
    assert main(["segment", str(video), "--model", str(tmp_path / "av2t"), "--out", str(tmp_path / "o"), "--cues", "auto"]) == 2
    assert "takes no text cues" in capsys.readouterr().err


class RecordingSegmenter:
    """Records which cues each window was given (the wiring under test), and returns empty logits."""

    def __init__(self):
        self.cues, self.seen = {}, []

    def predict(self, clips):
        self.seen += [self.cues[clip.id] for clip in clips]
        return [torch.zeros(clip.num_frames, 2, 2) for clip in clips]


def test_each_streamed_window_gets_its_own_seconds_cues():
    from avseg.data.clip import Clip

    inner = RecordingSegmenter()
    per_second = [["dog"], ["dog", "man"], ["piano"], [], ["car"]]
    runner = PerSecondCues(inner, per_second)
    for seconds in (2, 2, 1):
        clip = Clip(frames=torch.zeros(seconds, 4, 4, 3, dtype=torch.uint8).numpy(), waveform=torch.zeros(0).numpy(), sample_rate=16000, meta={"id": "v"})
        runner.predict([clip])
    assert inner.seen == [per_second[0:2], per_second[2:4], per_second[4:5]]


def test_the_app_makes_auto_cues_through_the_shared_session(tmp_path, model_dirs, monkeypatch):  # noqa: F811
    """``avseg app`` with cues "auto": the page's model loading (``SegmentApp._segmenter``) hands the
    captioner and LLM to the same session ``avseg segment`` uses, and the cues land in the shared cache."""
    from avseg.app.server import SegmentApp

    monkeypatch.setenv("AVSEG_CACHE", str(tmp_path / "cache"))
    model = teso_folder(tmp_path / "teso")
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, size=(48, 40))
    app = SegmentApp([str(model)], device="cpu", captioner=str(model_dirs / "captioner"), llm=str(model_dirs / "llm"))
    loaded = app._segmenter(str(model), " auto ", None)
    out = loaded.segment(video, tmp_path / "out", window=2, progress=False)
    assert len(json.loads((out / "summary.json").read_text())["frames"]) == 20  # every frame, 10 fps
    (cache,) = (tmp_path / "cache" / "cues").iterdir()
    assert [entry["frame"] for entry in entries(cache)] == [0, 1]
    assert app._segmenter(str(model), "guitar", None).cue_models is None  # typed cues again: no captioner
