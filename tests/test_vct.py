"""VCT at toy size (the same classes as the released models): forward, backward, Gumbel grouping, the converter's
round trip and its one-line refusals, and the offline segment-by-name path.

Parity with the release's own code (at equal random weights) is measured by a script outside the repository (the
release's code is not vendored); its figures are in the README."""

from __future__ import annotations

import pytest
import torch

from avseg.errors import AvsegError
from avseg.models.vct import convert as conversion
from avseg.models.vct.model import VCT, VCTConfig


def randomised(model: VCT, seed: int = 0) -> VCT:
    """Random norms and biases too (many start at 0 or 1, which would hide a misplaced tensor)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point() and "relative_position_index" not in name:
                scale = 0.2 if value.dim() == 1 else 0.1
                value.copy_(torch.randn(value.shape, generator=generator) * scale + (1.0 if name.endswith(("norm.weight", "1.weight")) and value.dim() == 1 else 0.0))
    return model


@pytest.fixture(scope="module", params=["s4", "ms3"])
def model(request) -> VCT:
    torch.manual_seed(0)
    config = VCTConfig.tiny(num_prototypes=3 if request.param == "s4" else 0)
    return randomised(VCT(config)).eval()


def inputs(frames: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixels": torch.randn(frames, 3, 64, 64, generator=generator),
        "mask_images": torch.randn(frames, 3, 64, 64, generator=generator),
        "spectrograms": torch.randn(frames, 96, 64, generator=generator),
    }


@pytest.fixture()
def tiny_release(monkeypatch):
    """The converter builds the release's Swin-B; at toy size it builds the tiny model with the file's heads."""
    monkeypatch.setattr(conversion, "release_config", lambda classes, prototypes: VCTConfig.tiny(num_classes=classes, num_prototypes=prototypes))


def test_forward_gives_ten_predictions_and_the_prototype_embeddings(model):
    with torch.no_grad():
        output = model(**inputs())
    assert len(output.class_logits) == len(output.mask_logits) == model.config.decoder_layers + 1
    assert output.final_class_logits.shape == (2, 8, 3) and output.final_mask_logits.shape == (2, 8, 16, 16)
    if model.config.num_prototypes:
        assert output.prototype_embedding.shape == (2, 3, 32)
        assert torch.allclose(output.audio_embedding.norm(dim=-1), torch.ones(2), atol=1e-5)
    else:
        assert output.audio_embedding is None and output.prototype_embedding is None
    logits = model.segmentation_logits(output, (50, 70))
    assert logits.shape == (2, 50, 70) and torch.isfinite(logits).all()


def test_inference_is_deterministic_and_hears_the_audio_and_sees_the_mask_image(model):
    batch = inputs()
    with torch.no_grad():
        first, again = model(**batch).final_mask_logits, model(**batch).final_mask_logits
        deaf = model(**{**batch, "spectrograms": batch["spectrograms"] + 1}).final_mask_logits
        blind = model(**{**batch, "mask_images": torch.zeros_like(batch["mask_images"])}).final_mask_logits
    assert torch.equal(first, again), "the grouping is a hard argmax at inference: no noise"
    assert not torch.allclose(first, deaf) and not torch.allclose(first, blind)


def test_the_release_losses_reach_every_trained_weight_and_not_vggish(model):
    from avseg.models.vct.training import mask2former_loss, vct_losses

    model.train()
    try:
        output = model(**inputs())
        labels = (torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(3)) > 0.5).long()
        categories = torch.tensor([1, 1]) if model.config.num_prototypes else None
        losses = vct_losses(model, output, labels, torch.tensor([True, False]), categories, mask2former_loss(2, num_points=256))
        assert set(losses) == ({"class", "mask", "dice", "total"} | ({"prototype"} if categories is not None else set()))
        assert all(torch.isfinite(value) for value in losses.values())
        model.zero_grad()
        losses["total"].backward()
        trained = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trained and not any(n.startswith("audio.vggish.") for n in trained)
        assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    finally:
        model.eval()


def test_gumbel_grouping_is_noisy_in_training_and_a_one_hot_at_inference():
    from avseg.models.vct.grouping import GumbelGrouping

    grouping = GumbelGrouping(8)
    logits = torch.randn(2, 5, 30)
    grouping.eval()
    assignment = grouping.assignment(logits)
    assert torch.allclose(assignment.sum(-2), torch.ones(2, 30)) and ((assignment - assignment.round()).abs() < 1e-6).all()
    grouping.train()
    torch.manual_seed(0)
    noisy = grouping.assignment(logits)
    assert not torch.equal(noisy.argmax(-2), assignment.argmax(-2))


def test_a_frame_of_another_size_is_one_line(model):
    batch = inputs()
    with pytest.raises(AvsegError, match="64x64"):
        model(**{**batch, "pixels": torch.randn(2, 3, 96, 96)})


def test_convert_round_trip_of_the_release_layout(model, tmp_path, tiny_release):
    torch.save({"model": conversion.official_state(model), "iteration": 1}, tmp_path / "model_best.pth")
    converted = conversion.convert(tmp_path / "model_best.pth", tmp_path / "converted").eval()
    loaded = VCT.from_pretrained(tmp_path / "converted").eval()
    assert converted.config.num_prototypes == model.config.num_prototypes
    batch = inputs()
    with torch.no_grad():
        reference = model(**batch).final_mask_logits
        assert torch.equal(converted(**batch).final_mask_logits, reference)
        assert torch.equal(loaded(**batch).final_mask_logits, reference)


def test_every_problem_is_named_at_once_in_one_line(model, tmp_path, tiny_release):
    state = conversion.official_state(model)
    state.pop("backbone.layers.0.blocks.1.attn.qkv.weight")
    state.pop("sem_seg_head.predictor.transformer_self_attention_layers.0.self_attn.in_proj_bias")
    state["sem_seg_head.predictor.extra.weight"] = torch.zeros(1)
    state["pre_sam_backbone.norm3.weight"] = torch.zeros(3)
    state["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    state["criterion.empty_weight"] = torch.ones(3)
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(AvsegError) as error:
        conversion.convert(tmp_path / "broken.pth", tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    for part in (
        "no place in VCT: sem_seg_head.predictor.extra.weight;",
        "missing: backbone.layers.0.blocks.1.attn.qkv.weight, sem_seg_head.predictor.transformer_self_attention_layers.0.self_attn.in_proj_bias;",
        "wrong shape: pre_sam_backbone.norm3.weight (3,) (expected (128,))",
    ):
        assert part in message, message
    assert "relative_position_index" not in message and "empty_weight" not in message


@pytest.mark.parametrize(
    ("state", "named"),
    [
        ({"v_model.image_encoder.trunk.pos_embed": torch.zeros(1), "aural_fuser.f_blocks.0.weight": torch.zeros(1)}, "AuralSAM2"),
        ({"features.0.weight": torch.zeros(1), "embeddings.0.weight": torch.zeros(1)}, "VGGish"),
        ({"whatever": torch.zeros(1)}, "no VCT weights"),
    ],
)
def test_a_checkpoint_of_another_model_is_one_line(tmp_path, state, named):
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(AvsegError, match=f"{named}.*not a VCT checkpoint"):
        conversion.convert(tmp_path / "other.pth", tmp_path / "out")


def tiny_sam2(folder):
    """A tiny transformers SAM 2 saved as a hub folder: the mask-image generator at toy size."""
    from transformers import Sam2Model

    from avseg.models.av2t_sam.model import tiny_sam2_config

    torch.manual_seed(0)
    Sam2Model(tiny_sam2_config()).save_pretrained(folder)
    return folder


def test_the_release_paints_smallest_masks_first_in_ade_colours():
    import numpy as np

    from avseg.models.vct.mask_images import ade_palette, colour, paint

    big = np.zeros((8, 8), bool)
    big[:6, :6] = True
    small = np.zeros((8, 8), bool)
    small[2:4, 2:4] = True
    ids = paint(np.stack([big, small]))
    assert ids[2, 2] == 1 and ids[0, 0] == 2 and ids[7, 7] == 0, "the smallest mask gets id 1 and wins where masks overlap"
    image = colour(ids, 384)
    palette = ade_palette()
    assert image.shape == (384, 384, 3) and palette.shape == (150, 3)
    assert (image[0, 0] == palette[2]).all() and (image[-1, -1] == palette[0]).all() and (palette[0] == 120).all()


def test_published_mask_images_are_read_and_others_generated_and_marked_approximate(model, tmp_path):
    import numpy as np
    from PIL import Image

    from avseg.data.clip import Clip
    from avseg.models.vct.system import VCTSegmenter

    model.config.mask_generator = str(tiny_sam2(tmp_path / "sam2"))
    frames = (np.random.default_rng(0).random((2, 40, 56, 3)) * 255).astype(np.uint8)
    files = []
    for k in range(2):
        Image.fromarray(np.full((224, 224, 3), 40 * k, np.uint8)).save(tmp_path / f"{k}_mask_color.png")
        files.append(str(tmp_path / f"{k}_mask_color.png"))
    published = Clip(frames, np.zeros(32000, np.float32), 16000, meta={"id": "a", "mask_image_files": tuple(files)})
    plain = Clip(frames, np.zeros(32000, np.float32), 16000, meta={"id": "b"})
    segmenter = VCTSegmenter(model)
    logits, details = segmenter.predict_with_details([published, plain])
    assert logits[0].shape == (2, 40, 56) and torch.isfinite(logits[1]).all()
    assert details[0][0] == {"mask_images": "published (COMBO's Semantic-SAM mask images from the dataset)", "approximate": False}
    assert details[1][0]["approximate"] is True and "SAM 2 automatic mask generation" in details[1][0]["mask_images"]
    assert segmenter.report_fields()["approximate"] is True and len(segmenter.report_fields()["mask_images"]) == 2
    assert segmenter._generator.made == 2 and segmenter._generator.reused == 0
    muted = Clip(frames, np.zeros(32000, np.float32), 16000, meta={"id": "b-muted"})  # --perturb mute: the same frames
    again, _ = segmenter.predict_with_details([muted])
    assert segmenter._generator.made == 2 and segmenter._generator.reused == 2  # generated once per frame
    assert torch.equal(again[0], logits[1])


def test_remembered_mask_images_stay_within_their_budget(model, tmp_path):
    import numpy as np

    from avseg.models.vct.inputs import mask_generator
    from avseg.models.vct.mask_images import RememberedMaskImages

    frames = (np.random.default_rng(1).random((3, 40, 56, 3)) * 255).astype(np.uint8)
    generator = mask_generator(str(tiny_sam2(tmp_path / "sam2")))
    remembered = RememberedMaskImages(generator, budget_bytes=1)
    first = remembered.mask_image(frames[0], 64)
    assert np.array_equal(first, generator.mask_image(frames[0], 64)) and first.shape == (64, 64, 3)
    assert remembered.held_bytes <= 1 and not remembered.images  # over budget: nothing is held
    remembered = RememberedMaskImages(generator)
    images = [remembered.mask_image(frame, 64) for frame in (*frames, *frames)]
    assert remembered.made == 3 and remembered.reused == 3 and all(np.array_equal(a, b) for a, b in zip(images[:3], images[3:]))
    assert remembered.mask_image(frames[0], 32).shape == (32, 32, 3) and remembered.made == 4  # another size, another image


def prefilled_hub(tmp_path, monkeypatch, prototypes: int = 23, folder: str = "s4_swinb_384"):
    """A hub cache holding official-format random weights under the release's file name, and avseg's cache holding a
    tiny official-format Semantic-SAM under the default mask-image generator's file name; offline."""
    from hub_stand_in import publish, use_hub_cache
    from test_semantic_sam import prefill_semantic_sam

    from avseg.models.semantic_sam import convert as semantic_sam_conversion
    from avseg.models.semantic_sam.config import SemanticSamConfig
    from avseg.models.vct import system

    cache = use_hub_cache(monkeypatch, tmp_path)
    torch.manual_seed(0)
    release = randomised(VCT(VCTConfig.tiny(num_prototypes=prototypes)))
    torch.save({"model": conversion.official_state(release), "iteration": 44999}, tmp_path / "model_best.pth")
    publish(cache, "nowherespyfly/VCT_AVS", {f"{folder}/model_best.pth": tmp_path / "model_best.pth"})
    monkeypatch.setattr(semantic_sam_conversion, "release_config", lambda state, path: SemanticSamConfig.tiny())
    prefill_semantic_sam(cache.parent / "avseg", tmp_path)
    made = system.mask_generator

    def fewer_clicks(name, device="cpu"):
        generator = made(name, device)
        generator.points_per_side = 8  # the release's 32 x 32 clicks cost seconds a frame; test_semantic_sam tests the grid
        return generator

    monkeypatch.setattr(system, "mask_generator", fewer_clicks)


def test_segment_by_name_offline_from_a_prefilled_hub_cache(tmp_path, monkeypatch, tiny_release):
    """``avseg segment clip.mp4 --model vct-s4``: the release's file in the release's repo, converted once, mask images
    made by Semantic-SAM (a tiny one, under the released file's name), the release's generator: nothing approximate."""
    import json

    from conftest import make_video

    from avseg.cli import main
    from avseg.hub.pretrained import find_pretrained
    from avseg.models.vct.model import DEFAULT_MASK_GENERATOR

    row = find_pretrained("vct-s4")
    assert row.files == ("s4_swinb_384/model_best.pth",) and row.repo == "nowherespyfly/VCT_AVS"
    assert row.published == {"J": 0.862, "F": 0.934} and find_pretrained("vct-avss").published == {"mIoU": 0.525, "F": 0.569}
    prefilled_hub(tmp_path, monkeypatch)
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    assert main(["segment", str(video), "--model", "vct-s4", "--out", str(tmp_path / "out"), "--rate", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "clip" / "summary.json").read_text())
    assert len(summary["frames"]) == 2 and summary["model"].startswith("vct (")
    assert all(frame["approximate"] is False and f"Semantic-SAM's automatic mask generator ({DEFAULT_MASK_GENERATOR}" in frame["mask_images"] for frame in summary["frames"])


def test_evaluate_by_name_prints_measured_beside_published(tmp_path, monkeypatch, tiny_release, synthetic, capsys):
    import json

    from avseg.cli import main

    prefilled_hub(tmp_path, monkeypatch)
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "vct-s4", "--data", str(synthetic / "s4"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "published (vct-s4; the release's README" in printed and "0.862" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["published"]["values"] == {"J": 0.862, "F": 0.934} and report["approximate"] is False
    assert 0.0 <= report["results"]["normal"]["J"] <= 1.0


RECIPE = """
name: vct_tiny
model: vct
preset: tiny
model_config: {{num_prototypes: 16, mask_generator: {sam2}}}
data: {{layout: s4, root: {root}, synthetic_videos: 4, synthetic_size: 64, augmentation: mask2former}}
train: {{epochs: 1, batch_clips: 2, lr: 1.0e-4, seed: 8434882, mute_probability: 0.0, schedule: poly, backbone_lr_multiplier: 0.1,
  norm_weight_decay: 0.0, embedding_weight_decay: 0.0, grad_clip_norm: 0.01}}
output: {out}
"""


def test_avseg_train_runs_the_release_losses_and_the_folder_segments(tmp_path):
    import json
    import math

    from avseg.config import load_recipe
    from avseg.engine.train import train

    (tmp_path / "recipe.yaml").write_text(RECIPE.format(root=tmp_path / "s4", out=tmp_path / "runs", sam2=tiny_sam2(tmp_path / "sam2")))
    out = train(load_recipe(tmp_path / "recipe.yaml", []))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in log if "total" in row]
    assert steps and all(math.isfinite(row[key]) for row in steps for key in ("total", "class", "mask", "dice", "prototype"))
    assert 0.0 <= log[-1]["val"]["J"] <= 1.0
    assert isinstance(VCT.from_pretrained(out / "final"), VCT)


def test_runs_under_bf16_autocast(model):
    batch = inputs()
    with torch.no_grad():
        reference = model(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch)
        logits = model.segmentation_logits(low, (64, 64))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # bf16 keeps 8 bits of mantissa: the mask logits (|x| up to ~10 here) move by a few percent of their scale
    scale = reference.final_mask_logits.abs().max()
    assert (low.final_mask_logits.float() - reference.final_mask_logits).abs().max() < 0.2 * scale


@pytest.mark.parametrize("subset", ["s4", "ms3", "avss"])
def test_the_recipes_load_and_name_the_release_heads(subset):
    from pathlib import Path

    from avseg.config import load_recipe
    from avseg.engine.train import check_model_config
    from avseg.models.architectures import model_entry

    recipe = load_recipe(Path(__file__).parent.parent / "configs" / f"vct_{subset}.yaml", [])
    check_model_config(recipe)
    config = model_entry("vct").preset_config(recipe.preset, **recipe.model_config)
    assert (config.num_classes, config.num_prototypes) == {"s4": (2, 23), "ms3": (2, 0), "avss": (71, 71)}[subset]
    assert config.swin_start == "microsoft/swin-base-patch4-window12-384-in22k" and recipe.data.layout == subset
    solver = recipe.train  # the release's SOLVER (WarmupPolyLR without warm-up, backbone x 0.1, full-model clipping at 0.01)
    assert (solver.schedule, solver.poly_power, solver.warmup_steps, solver.backbone_lr_multiplier, solver.grad_clip_norm) == ("poly", 0.9, 0, 0.1, 0.01)
    assert (solver.norm_weight_decay, solver.embedding_weight_decay, recipe.data.augmentation) == (0.0, 0.0, "mask2former")


def test_a_new_model_starts_from_an_imagenet_swin_and_vggish(tmp_path):
    from transformers import SwinConfig, SwinModel

    from avseg.encoders.vggish import VGGish
    from avseg.models.vct.system import with_pretrained_backbones

    config = VCTConfig.tiny()
    swin = SwinModel(SwinConfig(**{k: v for k, v in config.swin.items() if k != "drop_path_rate"}))
    swin.save_pretrained(tmp_path / "swin")
    torch.save(VGGish(config.vggish_config()).state_dict(), tmp_path / "vggish.pth")
    model = with_pretrained_backbones(VCT(config), str(tmp_path / "swin"), str(tmp_path / "vggish.pth"))
    for encoder in (model.encoder.frame_encoder, model.encoder.mask_encoder):
        assert torch.equal(encoder.swin.encoder.layers[2].blocks[1].mlp.fc1.weight, swin.encoder.layers[2].blocks[1].mlp.fc1.weight)


@pytest.mark.parametrize("subset", ["s4", "ms3"])
def test_vcts_own_384_mask_images_are_preferred_to_combos(subset, tmp_path):
    """The release trains and tests on ``generate_data_384``'s copies (from AVSBench-semantic's frame-size images);
    COMBO's S4 ones were resized to 224 first. Without VCT's copies, COMBO's are read."""
    from avseg.data.avsbench import mask_image_files

    combo = mask_image_files(subset, tmp_path, "test", "clip", 5, "dog")
    assert f"{subset}_data/pre_SAM_mask" in combo[0] and combo[0].endswith("_1_mask_color.png") and len(combo) == 5
    folder = tmp_path / f"{subset}_data_384" / "pre_SAM_mask_384" / ("test/dog/clip" if subset == "s4" else "clip")
    folder.mkdir(parents=True)
    assert mask_image_files(subset, tmp_path, "test", "clip", 5, "dog") == tuple(str(folder / f"clip_{k}_mask_color.png") for k in range(1, 6))


@pytest.mark.parametrize("layout", ["avss", "ms3"])
def test_avss_clips_are_augmented_from_their_short_side_square_as_the_release(layout, tmp_path, monkeypatch):
    """The release augments AVSS's raw training frames squared to their short side, S4 and MS3's 384 copies."""
    import numpy as np
    from PIL import Image

    from avseg.data.clip import Clip
    from avseg.models.vct import training
    from avseg.models.vct.model import VCTConfig
    from avseg.models.vct.system import VCTSystem

    files = []
    for k in range(2):
        Image.fromarray(np.full((48, 80, 3), 60 * k, np.uint8)).save(tmp_path / f"{k}_mask_color.png")
        files.append(str(tmp_path / f"{k}_mask_color.png"))
    frames = (np.random.default_rng(0).random((2, 48, 80, 3)) * 255).astype(np.uint8)
    masks = np.zeros((2, 48, 80), np.int64)
    masks[:, 10:30, 20:50] = 1
    clip = Clip(frames, np.zeros(32000, np.float32), 16000, masks=masks, meta={"id": "a", "mask_image_files": tuple(files)})
    seen = []

    def recorded(frames, labels, paired, size, rng):
        seen.append((frames.shape, labels.shape, paired.shape))
        return augment(frames, labels, paired, size, rng)

    augment = training.augment_clip
    monkeypatch.setattr(training, "augment_clip", recorded)
    model = VCT(VCTConfig.tiny(num_prototypes=0))
    system = VCTSystem(model, "mask2former", layout)
    losses = system.task([clip], 1, 0).loss([clip])
    side = 48 if layout == "avss" else model.image_size
    assert seen == [((2, side, side, 3), (2, side, side), (2, side, side, 3))] and torch.isfinite(losses["total"])
