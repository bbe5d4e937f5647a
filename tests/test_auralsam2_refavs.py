"""AuralSAM2's Ref-AVS variant at toy size (the same classes as the released model, a RoBERTa 32 wide): the expression
enters the fuser, the converter places the release's Ref-AVS checkpoint strictly, and a Ref-AVS model refuses to
segment a video without an expression, in one line.

Parity with the release's ref-avs code at equal random weights is measured outside the repository; see the README."""

from __future__ import annotations

import pytest
import torch
from test_auralsam2 import inputs, official_state, randomised

from avseg.errors import AvsegError
from avseg.models.auralsam2 import convert as conversion
from avseg.models.auralsam2.model import AuralSAM2, AuralSAM2Config, tiny_tokenizer


@pytest.fixture(scope="module")
def model() -> AuralSAM2:
    torch.manual_seed(0)
    model = randomised(AuralSAM2(AuralSAM2Config.tiny(referring=True)), seed=3).eval()
    model.tokenizer = tiny_tokenizer()
    return model


@pytest.fixture()
def tiny_release(monkeypatch):
    monkeypatch.setattr(conversion, "release_config", lambda referring=False: AuralSAM2Config.tiny(referring=referring))


@pytest.fixture()
def text_folder(model, tmp_path):
    """The model's text encoder and tokenizer saved as transformers saves distilbert/distilroberta-base."""
    from transformers import RobertaModel

    encoder = RobertaModel(model.text_encoder.config)  # with the pooler transformers builds (and avseg drops)
    encoder.load_state_dict(model.text_encoder.state_dict(), strict=False)
    encoder.save_pretrained(tmp_path / "text")
    model.tokenizer.save_pretrained(tmp_path / "text")
    return tmp_path / "text"


def test_the_expression_enters_the_fuser_and_the_clip_is_tracked_from_its_middle_frame(model):
    batch = inputs(frames=4)
    dog, bell = model.read("the dog"), model.read("the bell on the left")
    assert dog.shape == (25, 32)  # the release pads every expression to 25 tokens
    with torch.no_grad():
        output = model(**batch, expression=dog)
        other = model(**batch, expression=bell)
        from_middle = model(**batch, conditioning_frame=2, expression=dog)
    assert output.multimask_logits.shape == (4, 3, 16, 16)
    assert [a.shape for a in output.audio_prompts] == [(4, 128)] * 3  # the expression's rows are not the frames'
    assert not torch.allclose(output.multimask_logits, other.multimask_logits)
    assert torch.equal(output.multimask_logits, from_middle.multimask_logits)
    with pytest.raises(ValueError, match="expression"):
        model(**batch)


def test_the_contrastive_heads_give_unit_embeddings_per_pixel_and_per_frame(model):
    with torch.no_grad():
        output = model(**inputs(frames=2), expression=model.read("the dog"))
        visual, audio = model.aural_fuser.project(output.visual_prompts, output.audio_prompts, output.visual_updates)
    assert visual[0].shape == (2, 128, 4, 4) and audio[0].shape == (2, 128, 1)
    torch.testing.assert_close(visual[0].norm(dim=1), torch.ones(2, 4, 4))  # tolerance: float rounding of a norm
    torch.testing.assert_close(audio[0].norm(dim=1), torch.ones(2, 1))


def test_convert_round_trip_of_the_refavs_checkpoint(model, tmp_path, tiny_release, text_folder):
    """The release's ``aural_fuser.state_dict()`` (with ``text_proj.*``) takes DistilRoBERTa from transformers; a
    whole-model file places ``t_model.*`` (its never-run pooler dropped); both give the same logits."""
    state = official_state(model)
    fuser = {k[len("aural_fuser.") :]: v for k, v in state.items() if k.startswith("aural_fuser.")}
    assert any(k.startswith("text_proj.") for k in fuser)
    torch.save(fuser, tmp_path / "auralsam2_refavs_best.pth")
    sam = tmp_path / "sam2"
    from transformers import Sam2VideoModel

    backbone = Sam2VideoModel(model.sam.config)
    backbone.load_state_dict(model.sam.state_dict())
    backbone.save_pretrained(sam)
    whole = {**state, "t_model.pooler.dense.weight": torch.zeros(32, 32), "t_model.pooler.dense.bias": torch.zeros(32)}
    torch.save(whole, tmp_path / "whole.pth")
    batch = inputs()
    with torch.no_grad():
        reference = model(**batch, expression=model.read("the dog")).multimask_logits
        alone = conversion.convert(tmp_path / "auralsam2_refavs_best.pth", tmp_path / "a", sam=str(sam), text=str(text_folder)).eval()
        renamed = conversion.convert(tmp_path / "whole.pth", tmp_path / "b", text=str(text_folder)).eval()
        loaded = AuralSAM2.from_pretrained(tmp_path / "a").eval()
        for converted in (alone, renamed, loaded):
            assert converted.config.referring and converted.config.conditioning_frame == "middle"
            assert torch.equal(converted(**batch, expression=converted.read("the dog")).multimask_logits, reference)


def test_a_refavs_checkpoint_with_a_broken_text_projection_names_it(model, tmp_path, tiny_release, text_folder):
    state = official_state(model)
    state["aural_fuser.text_proj.0.weight"] = torch.zeros(3, 3)
    state.pop("aural_fuser.train_proj_v1.proj.3.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(AvsegError) as error:
        conversion.convert(tmp_path / "broken.pth", tmp_path / "out", text=str(text_folder))
    message = str(error.value)
    assert "\n" not in message
    assert "missing: aural_fuser.train_proj_v1.proj.3.weight" in message and "wrong shape: aural_fuser.text_proj.0.weight" in message


def test_segment_by_name_needs_an_expression_and_refuses_none_in_one_line(model, tmp_path, monkeypatch, tiny_release, text_folder, capsys):
    """``avseg segment clip.mp4 --model auralsam2-refavs --expression ...`` offline from a pre-filled hub cache (the
    release's file name; DistilRoBERTa under its hub name); without ``--expression`` one line, before any download."""
    import json

    import huggingface_hub.constants as constants
    from conftest import make_video
    from hub_stand_in import publish, publish_folder, use_hub_cache

    from avseg.cli import main
    from avseg.hub.pretrained import find_pretrained

    cache = use_hub_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # transformers takes the cache folder from here
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    assert main(["segment", str(video), "--model", "auralsam2-refavs", "--out", str(tmp_path / "out")]) != 0
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "--expression" in error and "Ref-AVS" in error
    torch.save({k: v for k, v in official_state(model).items() if not k.startswith("t_model.")}, tmp_path / "release.pth")
    row = find_pretrained("auralsam2-refavs")
    assert row.files == ("ckpts/auralsam2_refavs_best.pth",) and row.repo == "yyliu01/AuralSAM2"
    publish(cache, row.repo, {row.files[0]: tmp_path / "release.pth"})
    publish_folder(cache, "distilbert/distilroberta-base", text_folder)
    args = ["segment", str(video), "--model", "auralsam2-refavs", "--out", str(tmp_path / "out"), "--rate", "1", "--expression", "the dog"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "clip" / "summary.json").read_text())
    assert len(summary["frames"]) == 2


def test_an_avs_model_refuses_an_expression(tmp_path, capsys):
    from conftest import make_video

    from avseg.cli import main

    folder = tmp_path / "avs"
    AuralSAM2(AuralSAM2Config.tiny()).save_pretrained(folder)
    from avseg.config import DataConfig, EncodersConfig, Recipe
    from avseg.models.system_info import save_system_info

    save_system_info(folder, Recipe(model="auralsam2", encoders=EncodersConfig(audio="vggish"), data=DataConfig(sample_rate=16000)))
    video = make_video(tmp_path / "clip.mp4", seconds=1.0, size=(64, 48))
    assert main(["segment", str(video), "--model", str(folder), "--out", str(tmp_path / "out"), "--expression", "the dog"]) != 0
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "reads no expression" in error


RECIPE = """
name: auralsam2_refavs_tiny
model: auralsam2
preset: tiny-refavs
data: {{layout: refavs, root: {root}, synthetic_videos: 4, synthetic_size: 64, channels: 2}}
train: {{epochs: 1, batch_clips: 2, micro_batches: 2, lr: 1.0e-4, seed: 666, schedule: poly, mute_probability: 0.0}}
output: {out}
"""


def test_avseg_train_reads_the_refavs_expressions_and_the_folder_keeps_its_tokenizer(tmp_path):
    import json
    import math

    from avseg.config import load_recipe
    from avseg.engine.train import train

    (tmp_path / "recipe.yaml").write_text(RECIPE.format(root=tmp_path / "refavs", out=tmp_path / "runs"))
    out = train(load_recipe(tmp_path / "recipe.yaml", []))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in log if "total" in row]
    assert steps and all(math.isfinite(row[key]) for row in steps for key in ("total", "mask", "contrastive"))
    trained = AuralSAM2.from_pretrained(out / "final")
    assert trained.config.referring and trained.read("the dog").shape == (25, 32)
    (tmp_path / "bad.yaml").write_text(RECIPE.format(root=tmp_path / "refavs", out=tmp_path / "runs2").replace("micro_batches: 2", "micro_batches: 1"))
    with pytest.raises(AvsegError, match="one clip and its expression per micro-batch"):
        train(load_recipe(tmp_path / "bad.yaml", []))
