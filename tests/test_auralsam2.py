"""AuralSAM2 at toy size (the same classes as the released model): forward, backward, the clip's memory over many
frames, the inference modes, stereo audio, and the converter's round trips and one-line refusals.

Parity with the release's own code (at equal random weights, SAM 2 and AuralFuser at full width) is measured by a
script outside the repository (the release's code is not vendored); its figures are in the README."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avseg.data.clip import Clip
from avseg.errors import AvsegError
from avseg.models.auralsam2 import convert as conversion
from avseg.models.auralsam2.inputs import stereo_examples
from avseg.models.auralsam2.model import AuralSAM2, AuralSAM2Config

FRAMES = 3


def randomised(model: AuralSAM2, seed: int = 0) -> AuralSAM2:
    """Random norms, gates and BatchNorm statistics too (the fusion's gates start at zero, which would hide it)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.startswith("vggish.") and value.dim() > 1:  # He-normal: nine ReLU layers keep their scale
                value.copy_(torch.randn(value.shape, generator=generator) * (2 / value[0].numel()) ** 0.5)
            elif value.is_floating_point():
                scale = 0.2 if value.dim() == 1 else 0.05
                value.copy_(torch.randn(value.shape, generator=generator) * scale + (1.0 if name.endswith(("running_var", "norm.weight")) else 0.0))
                if name.endswith("running_var"):
                    value.abs_()
        # one official tensor fills both of transformers' copies of SAM's positional matrix
        model.sam.prompt_encoder.shared_embedding.positional_embedding.copy_(model.sam.shared_image_embedding.positional_embedding)
    return model


@pytest.fixture(scope="module")
def model() -> AuralSAM2:
    torch.manual_seed(0)
    return randomised(AuralSAM2(AuralSAM2Config.tiny())).eval()


def inputs(frames: int = FRAMES, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"pixels": torch.randn(frames, 3, 64, 64, generator=generator), "spectrograms": torch.randn(frames, 2, 96, 64, generator=generator)}


def official_state(model: AuralSAM2) -> dict[str, torch.Tensor]:
    """The model's weights in the release's whole-model layout (``v_model.*`` official SAM 2 names, ``aural_fuser.*``)."""
    expected = model.state_dict()
    state = {}
    for key, value in expected.items():
        names = conversion.to_official(key, expected)
        if len(names) > 1:  # SAM 2's point embeddings: one row each
            state.update({name: value[i : i + 1].clone() for i, name in enumerate(names)})
        else:
            state[names[0]] = value.clone()
    return state


@pytest.fixture()
def tiny_release(monkeypatch):
    monkeypatch.setattr(conversion, "release_config", AuralSAM2Config.tiny)


def test_a_clip_gives_three_masks_per_frame_and_each_mode_picks_one(model):
    with torch.no_grad():
        output = model(**inputs())
    assert output.multimask_logits.shape == (FRAMES, 3, 16, 16) and output.iou_scores.shape == (FRAMES, 3)
    assert output.object_scores.shape == (FRAMES, 1)
    chosen = {mode: model.select(output, (24, 24), mode) for mode in ("default", "iou_select", "iou_occ_select")}
    assert all(logits.shape == (FRAMES, 24, 24) for logits in chosen.values())
    absent = output.object_scores[:, 0] < 0
    assert torch.equal(chosen["iou_occ_select"][~absent], chosen["iou_select"][~absent])
    assert torch.all(chosen["iou_occ_select"][absent] == 0)
    best = output.iou_scores.argmax(1)
    assert torch.equal(best == 0, torch.isclose(chosen["default"], chosen["iou_select"]).flatten(1).all(1))
    with pytest.raises(AvsegError, match="unknown inference mode"):
        model.select(output, mode="best")


def test_the_audio_changes_the_prompts_and_the_masks(model):
    """(Deterministic: the same inputs give bit-equal outputs, so any difference is the audio's.)"""
    batch = inputs()
    with torch.no_grad():
        heard, again = model(**batch), model(**batch)
        other = model(batch["pixels"], batch["spectrograms"].flip(0) + 1)
    assert torch.equal(heard.multimask_logits, again.multimask_logits)
    assert (heard.audio_prompts[-1] - other.audio_prompts[-1]).abs().max() > 1e-3
    assert not torch.equal(heard.multimask_logits, other.multimask_logits)


def test_gradients_reach_the_fuser_and_nothing_frozen(model):
    model.train()
    try:
        output = model(**inputs(), conditioning_frame=FRAMES // 2)
        visual, audio = model.aural_fuser.project(output.visual_prompts, output.audio_prompts)
        (output.multimask_logits.sum() + output.iou_scores.sum() + output.object_scores.sum() + sum(v.sum() for v in visual + audio)).backward()
        assert all(p.grad is None for p in [*model.sam.parameters(), *model.vggish.parameters()])
        unused = ("align_channel_back", ".g.", "audio_blocks")
        without = [n for n, p in model.aural_fuser.named_parameters() if p.grad is None]
        assert without and all(any(u in n for u in unused) for n in without), without
        assert all(not any(u in n for u in ("dwconv", "attn.sr", "attn.norm")) or "audio_blocks" not in n or n in without for n, _ in model.aural_fuser.named_parameters())
        assert sum(p.grad.abs().sum() for p in model.trainable_parameters() if p.grad is not None) > 0
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_memory_over_many_frames_is_bounded_like_sam2(model):
    """Every frame after the first attends to the conditioning frame and at most six earlier frames, plus the
    conditioning frame's object pointer and at most 15 earlier ones (``min(frames, 16) - 1``; 2 tokens each here:
    128-d features, 64-d memory)."""
    lengths = []
    hook = model.sam.memory_attention.register_forward_hook(lambda module, args, kwargs, out: lengths.append(kwargs["memory"].shape[0]), with_kwargs=True)
    try:
        with torch.no_grad():
            output = model(**inputs(frames=20))
    finally:
        hook.remove()
    assert torch.isfinite(output.multimask_logits).all()
    tokens = 4 * 4  # a memory is the 4x4 lowest level
    pointer_tokens = model.sam.config.vision_config.fpn_hidden_size // model.sam.mem_dim
    expected = [(1 + min(t - 1, 6)) * tokens + (1 + min(t - 1, 15)) * pointer_tokens for t in range(1, 20)]
    assert lengths == expected


def test_stereo_channels_are_heard_apart_and_mono_is_duplicated():
    rate = 16000
    left, right = np.sin(np.arange(3 * rate) * 0.05).astype(np.float32), np.sin(np.arange(3 * rate) * 0.3).astype(np.float32) * 0.5
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    stereo = Clip(frames, (left + right) / 2, rate, channels=np.stack([left, right]))
    examples = stereo_examples(stereo)
    assert examples.shape == (3, 2, 96, 64) and not torch.equal(examples[:, 0], examples[:, 1])
    mono = stereo_examples(Clip(frames, left, rate))
    assert torch.equal(mono[:, 0], mono[:, 1]) and torch.equal(mono[:, 0], examples[:, 0])
    assert stereo.with_audio(left).channels is None, "replacing the sound must drop the channels it came with"


def test_convert_round_trip_of_the_whole_model_layout(model, tmp_path, tiny_release):
    torch.save(official_state(model), tmp_path / "auralsam2.pth")
    converted = conversion.convert(tmp_path / "auralsam2.pth", tmp_path / "converted").eval()
    loaded = AuralSAM2.from_pretrained(tmp_path / "converted").eval()
    batch = inputs()
    with torch.no_grad():
        reference = model(**batch).multimask_logits
        assert torch.equal(converted(**batch).multimask_logits, reference)
        assert torch.equal(loaded(**batch).multimask_logits, reference)


def test_the_fuser_alone_takes_sam2_from_transformers_and_legacy_names_load(model, tmp_path, tiny_release):
    from transformers import Sam2VideoModel

    sam = Sam2VideoModel(model.sam.config)
    sam.load_state_dict(model.sam.state_dict())
    sam.save_pretrained(tmp_path / "sam2")
    fuser = {k[len("aural_fuser.") :]: v for k, v in official_state(model).items() if k.startswith("aural_fuser.")}
    torch.save(fuser, tmp_path / "fuser.pth")
    legacy = {}
    for key, value in fuser.items():
        name = key
        for old, new in conversion.LEGACY_NAMES[::-1]:
            name = name.replace(new + ".", old + ".") if name.startswith(new + ".") else name
        legacy[f"audio_prompter.{name}"] = value
    legacy["audio_prompter.training_layers.0.weight"] = torch.zeros(1)
    torch.save({**legacy, **{k: v for k, v in official_state(model).items() if k.startswith("v_model.")}}, tmp_path / "legacy.pth")
    batch = inputs()
    with torch.no_grad():
        reference = model(**batch).multimask_logits
        alone = conversion.convert(tmp_path / "fuser.pth", tmp_path / "a", sam=str(tmp_path / "sam2")).eval()
        assert torch.equal(alone(**batch).multimask_logits, reference)
        renamed = conversion.convert(tmp_path / "legacy.pth", tmp_path / "b").eval()
        assert torch.equal(renamed(**batch).multimask_logits, reference)


def test_every_problem_is_named_at_once_in_one_line(model, tmp_path, tiny_release):
    state = official_state(model)
    state.pop("aural_fuser.f_blocks.0.0.attn.q.weight")
    state.pop("v_model.memory_attention.layers.0.self_attn.q_proj.weight")
    state["aural_fuser.f_blocks.9.0.attn.q.weight"] = torch.zeros(1)
    state["aural_fuser.smooth_convs.0.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(AvsegError) as error:
        conversion.convert(tmp_path / "broken.pth", tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    for part in (
        "no place in AuralSAM2: aural_fuser.f_blocks.9.0.attn.q.weight",
        "missing: aural_fuser.f_blocks.0.0.attn.q.weight, v_model.memory_attention.layers.0.self_attn.q_proj.weight",
        "wrong shape: aural_fuser.smooth_convs.0.weight",
    ):
        assert part in message, message


@pytest.mark.parametrize(
    ("state", "named"),
    [
        ({"model.visual_model.image_encoder.trunk.pos_embed": torch.zeros(1), "projector.audio_proj.weight": torch.zeros(1)}, "AV2T-SAM"),
        ({"image_encoder.trunk.pos_embed": torch.zeros(1), "sam_mask_decoder.iou_token.weight": torch.zeros(1)}, "SAM 2 checkpoint"),
        ({"features.0.weight": torch.zeros(1), "embeddings.0.weight": torch.zeros(1)}, "VGGish"),
    ],
)
def test_a_checkpoint_of_another_model_is_one_line(tmp_path, state, named):
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(AvsegError, match=f"{named}.*not an AuralSAM2 checkpoint"):
        conversion.convert(tmp_path / "other.pth", tmp_path / "out")


RECIPE = """
name: auralsam2_tiny
model: auralsam2
preset: tiny
data: {{layout: ms3, root: {root}, synthetic_videos: 4, synthetic_size: 64, channels: 2}}
train: {{epochs: 1, batch_clips: 2, lr: 1.0e-4, seed: 666, schedule: poly, mute_probability: 0.0}}
output: {out}
"""


def test_the_release_losses_train_through_avseg_train_and_the_folder_segments_a_video(tmp_path):
    import json
    import math

    from conftest import make_video

    from avseg.cli import main
    from avseg.config import load_recipe
    from avseg.engine.train import train

    (tmp_path / "recipe.yaml").write_text(RECIPE.format(root=tmp_path / "ms3", out=tmp_path / "runs"))
    out = train(load_recipe(tmp_path / "recipe.yaml", []))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in log if "total" in row]
    assert steps and all(math.isfinite(row[key]) for row in steps for key in ("total", "mask", "dice", "iou", "class", "contrastive"))
    assert any(row["contrastive"] > 0 for row in steps)
    assert 0.0 <= log[-1]["val"]["J"] <= 1.0
    video = make_video(tmp_path / "clip.mp4", seconds=3.0, size=(80, 64))
    assert main(["segment", str(video), "--model", str(out / "final"), "--out", str(tmp_path / "seg"), "--rate", "1"]) == 0
    assert (tmp_path / "seg" / "clip" / "overlay.mp4").is_file() and len(list((tmp_path / "seg" / "clip" / "masks").iterdir())) == 3


def test_segment_by_name_offline_from_a_prefilled_hub_cache(model, tmp_path, monkeypatch, tiny_release):
    """``avseg segment clip.mp4 --model auralsam2-ms3``: the release's file name in the release's repo, converted once."""
    import json

    from conftest import make_video
    from hub_stand_in import publish, use_hub_cache

    from avseg.cli import main
    from avseg.hub.pretrained import find_pretrained

    cache = use_hub_cache(monkeypatch, tmp_path)
    torch.save(official_state(model), tmp_path / "release.pth")
    row = find_pretrained("auralsam2-ms3")
    assert row.files == ("ckpts/auralsam2_avs_v1m.pth",) and row.repo == "yyliu01/AuralSAM2"
    publish(cache, row.repo, {row.files[0]: tmp_path / "release.pth"})
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    assert main(["segment", str(video), "--model", "auralsam2-ms3", "--out", str(tmp_path / "out"), "--rate", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "clip" / "summary.json").read_text())
    assert len(summary["frames"]) == 2 and summary["model"].startswith("auralsam2 (")


def test_runs_under_bf16_autocast_and_picks_the_masks_fp32_picks(model):
    batch = inputs()
    with torch.no_grad():
        reference = model(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch)
    assert low.multimask_logits.dtype == torch.float32 and torch.isfinite(low.multimask_logits).all()
    assert (low.multimask_logits - reference.multimask_logits).abs().max() < 0.1


def test_avss_trains_as_binary_foreground_with_data_foreground_and_is_refused_without(tmp_path):
    """The release trains AVSBench-semantic as one binary mask (label > 0); ``data.foreground: true`` reads it so."""
    import json

    from avseg.config import ConfigError, load_recipe
    from avseg.data.avsbench import AVSS
    from avseg.engine.data import open_split
    from avseg.engine.train import train

    recipe = RECIPE.replace("layout: ms3", "layout: avss, foreground: true").format(root=tmp_path / "avss", out=tmp_path / "runs")
    (tmp_path / "recipe.yaml").write_text(recipe)
    loaded = load_recipe(tmp_path / "recipe.yaml", [])
    out = train(loaded)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val"]["J"] >= 0.0  # binary metrics, not mIoU
    semantic, binary = AVSS(tmp_path / "avss", split="val"), open_split(loaded.data, "val")
    assert semantic.num_classes > 2 and binary.num_classes == 2
    clip, classes = binary[0], semantic[0]
    assert set(np.unique(clip.masks)) <= {0, 1} and np.array_equal(clip.masks, (classes.masks > 0).astype(np.uint8))
    (tmp_path / "semantic.yaml").write_text(recipe.replace(", foreground: true", "").replace("runs", "runs2"))
    with pytest.raises(ConfigError, match="data.foreground: true"):
        train(load_recipe(tmp_path / "semantic.yaml", []))
    (tmp_path / "ms3.yaml").write_text(RECIPE.replace("layout: ms3", "layout: ms3, foreground: true").format(root=tmp_path / "ms3", out=tmp_path / "runs3"))
    with pytest.raises(ConfigError, match="only for the avss layout"):
        train(load_recipe(tmp_path / "ms3.yaml", []))


def test_segment_hears_a_stereo_video_s_two_channels_and_a_mono_one_duplicated(tmp_path, monkeypatch, capsys):
    """``avseg segment`` decodes both channels for a model that hears stereo (dense rate and ``--rate 1``); a
    video without audio is still refused in one line, or heard as silence with ``--allow-silent``."""
    from conftest import make_video

    from avseg.cli import main
    from avseg.config import DataConfig, EncodersConfig, Recipe
    from avseg.media import iter_audio
    from avseg.models.auralsam2.system import AuralSAM2Segmenter
    from avseg.models.system_info import save_system_info

    stereo = make_video(tmp_path / "stereo.mp4", seconds=2.0, layout="stereo")  # right = 2 x left
    mono = make_video(tmp_path / "mono.mp4", seconds=2.0)
    silent = make_video(tmp_path / "silent.mp4", seconds=1.0, audio_rate=None)
    pair = np.concatenate(list(iter_audio(stereo, 16000, 1, channels=2)), axis=1)
    assert pair.shape[0] == 2
    rms = np.sqrt((pair**2).mean(axis=1))
    assert abs(rms[1] / rms[0] - 2) < 0.1  # AAC is lossy per channel: the level ratio, not the samples
    np.testing.assert_allclose(pair.mean(0), np.concatenate(list(iter_audio(stereo, 16000, 1))), atol=1e-5)
    duplicated = np.concatenate(list(iter_audio(mono, 16000, 1, channels=2)), axis=1)
    assert np.array_equal(duplicated[0], duplicated[1])

    folder = tmp_path / "model"
    AuralSAM2(AuralSAM2Config.tiny()).save_pretrained(folder)
    save_system_info(folder, Recipe(model="auralsam2", encoders=EncodersConfig(audio="vggish"), data=DataConfig(sample_rate=16000)))
    heard = []
    predict = AuralSAM2Segmenter.predict

    def spy(self, clips):
        heard.extend(clips)
        return predict(self, clips)

    monkeypatch.setattr(AuralSAM2Segmenter, "predict", spy)
    for rate in ("1", "all"):
        heard.clear()
        assert main(["segment", str(stereo), "--model", str(folder), "--out", str(tmp_path / rate), "--rate", rate]) == 0
        assert heard and all(clip.channels is not None and clip.channels.shape == (2, len(clip.waveform)) for clip in heard)
        left, right = np.concatenate([c.channels[0] for c in heard]), np.concatenate([c.channels[1] for c in heard])
        assert np.abs(right).max() > 1.5 * np.abs(left).max()  # the channels stay apart
    heard.clear()
    assert main(["segment", str(mono), "--model", str(folder), "--out", str(tmp_path / "mono"), "--rate", "1"]) == 0
    assert all(np.array_equal(clip.channels[0], clip.channels[1]) for clip in heard)
    capsys.readouterr()
    assert main(["segment", str(silent), "--model", str(folder), "--out", str(tmp_path / "s")]) != 0
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no audio track" in error
    heard.clear()
    assert main(["segment", str(silent), "--model", str(folder), "--out", str(tmp_path / "s"), "--allow-silent"]) == 0
    assert heard and all(not clip.channels.any() for clip in heard)


def test_evaluate_by_name_on_its_test_set_prints_the_published_numbers_beside(model, tmp_path, monkeypatch, tiny_release, capsys):
    """``avseg evaluate --model auralsam2-s4 --data DIR``: the release's weights (here random, official format, from a
    pre-filled hub cache) on S4's test split, stereo as the release, with the row's published numbers or why none."""
    import json

    from hub_stand_in import publish, use_hub_cache

    from avseg.cli import main
    from avseg.data.synthetic import write_dataset
    from avseg.hub.pretrained import find_pretrained

    cache = use_hub_cache(monkeypatch, tmp_path / "hub")
    torch.save(official_state(model), tmp_path / "release.pth")
    row = find_pretrained("auralsam2-s4")
    publish(cache, row.repo, {row.files[0]: tmp_path / "release.pth"})
    write_dataset("s4", tmp_path / "s4", 5, seed=0, size=64)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--model", "auralsam2-s4", "--data", str(tmp_path / "s4")]) == 0
    printed = capsys.readouterr().out
    assert "published (auralsam2-s4): " in printed and "none entered" in printed
    report = json.loads((tmp_path / "runs" / "auralsam2-s4" / "eval-test" / "report.json").read_text())
    assert 0.0 <= report["results"]["normal"]["J"] <= 1.0 and report["published"]["source"] == row.published_source
    assert main(["evaluate", "--model", "evf-sam2", "--data", str(tmp_path / "s4")]) != 0
    assert "no test set of its own" in capsys.readouterr().err
