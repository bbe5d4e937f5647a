"""AuralSAM2 (tiny, random weights) through the rest of avseg: ``segment --format rle``, ``--precision bf16``, compiled
blocks, ``evaluate --perturb`` and ``--robust``, the web app's model loading (a Ref-AVS model with its expression) and
``push`` (a Ref-AVS model's tokenizer travels)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_video
from test_auralsam2 import randomised
from test_push import stand_in  # noqa: F401 (the fixture)

from avseg.cli import main
from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.models.auralsam2.model import AuralSAM2, AuralSAM2Config, tiny_tokenizer
from avseg.models.system_info import save_system_info


def save(model: AuralSAM2, folder):
    model.save_pretrained(folder)
    save_system_info(folder, Recipe(model="auralsam2", encoders=EncodersConfig(audio="vggish"), data=DataConfig(sample_rate=16000)))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    return save(randomised(AuralSAM2(AuralSAM2Config.tiny())), tmp_path_factory.mktemp("auralsam2") / "model")


@pytest.fixture(scope="module")
def refavs_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = randomised(AuralSAM2(AuralSAM2Config.tiny(referring=True)), seed=3)
    model.tokenizer = tiny_tokenizer()
    return save(model, tmp_path_factory.mktemp("auralsam2_refavs") / "model")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2.0, layout="stereo")


def test_segment_as_rle_in_bf16_and_with_compiled_blocks(folder, video, tmp_path, capsys):
    from avseg.engine.dense import Sampling
    from avseg.engine.precision import Inference
    from avseg.engine.session import load_segmenter

    assert main(["segment", str(video), "--model", str(folder), "--out", str(tmp_path / "rle"), "--rate", "1", "--format", "rle"]) == 0
    lines = (tmp_path / "rle" / "clip" / "masks.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("counts" in line for line in lines)
    assert main(["segment", str(video), "--model", str(folder), "--out", str(tmp_path / "bf16"), "--rate", "1", "--precision", "bf16"]) == 0
    plain = load_segmenter(folder, device="cpu").segment(video, tmp_path / "plain", progress=False, sampling=Sampling(1))
    low = json.loads((tmp_path / "bf16" / "clip" / "summary.json").read_text())["frames"]
    for first, second in zip(json.loads((plain / "summary.json").read_text())["frames"], low):
        assert first["sounding_score"] == pytest.approx(second["sounding_score"], abs=0.05)  # bf16 keeps ~3 significant digits
    loaded = load_segmenter(folder, device="cpu")
    loaded.inference = Inference(torch.device("cpu"), "fp32", compile=True, compile_backend="eager")  # inductor's C++ build takes minutes
    loaded.inference.prepare(loaded.segmenter)
    compiled = loaded.segment(video, tmp_path / "compiled", progress=False, sampling=Sampling(1))
    assert loaded.inference.first_call_seconds is not None
    for first, second in zip(*(json.loads((out / "summary.json").read_text())["frames"] for out in (plain, compiled))):
        assert first["sounding_score"] == pytest.approx(second["sounding_score"], abs=1e-4)  # compiled kernels may reorder sums


RECIPE = """
name: auralsam2_eval
model: auralsam2
preset: tiny
data: {{layout: ms3, root: {root}, synthetic_videos: 10, synthetic_size: 64, channels: 2}}
train: {{seed: 666, eval_batch_clips: 2}}
output: {out}
"""


def test_evaluate_with_perturbations_and_robust_audio(folder, tmp_path):
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(root=tmp_path / "ms3", out=tmp_path / "runs"))
    out = tmp_path / "eval"
    args = ["evaluate", str(tmp_path / "recipe.yaml"), "--checkpoint", str(folder), "--perturb", "mute,swap", "--robust", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert {row["condition"] for row in report["drops"]} >= {"normal", "mute", "swap"}
    assert report["robust"] and (out / "robust.png").is_file()


def test_the_app_loads_auralsam2_and_gives_a_refavs_model_its_expression(folder, refavs_folder, video):
    pytest.importorskip("gradio")
    from avseg.app.server import SegmentApp
    from avseg.errors import ConfigError

    with SegmentApp([str(folder), str(refavs_folder)], device="cpu") as app:
        assert app._segmenter(str(folder), "", "").segmenter.audio_channels == 2
        with pytest.raises(ConfigError, match="reads no expression"):
            app._segmenter(str(folder), "", "", "the dog")
        with pytest.raises(ConfigError, match="Ref-AVS model.*expression"):
            app._segmenter(str(refavs_folder), "", "", "")
        loaded = app._segmenter(str(refavs_folder), "", "", "the dog")
        assert loaded.segmenter.expression == "the dog"
        status = app.segment(str(video), str(refavs_folder), "", "", "none", None, "the dog")[0]
        assert status.startswith("Segmented"), status


def test_push_carries_a_refavs_models_tokenizer(stand_in, refavs_folder):  # noqa: F811
    import avseg

    assert main(["push", str(refavs_folder), "me/aural-refavs"]) == 0
    pushed = dict(stand_in)["me/aural-refavs"]
    assert "tokenizer.json" in pushed and "model.safetensors" in pushed
    loaded = avseg.load_model("me/aural-refavs")
    assert loaded.config.referring and torch.equal(loaded.read("the dog"), AuralSAM2.from_pretrained(refavs_folder).read("the dog"))
