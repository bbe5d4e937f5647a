import json
import math

import numpy as np
import pytest
import torch
from conftest import make_video
from transformers import Sam3Model, Sam3VideoConfig, Sam3VideoModel

from avseg.config import EncodersConfig, Recipe, load_recipe
from avseg.errors import AvsegError
from avseg.models.av2t_sam.convert import convert
from avseg.models.av2t_sam.inputs import FrameRows
from avseg.models.av2t_sam.sam3 import AV2TSAM3, AV2TSAM3Config, avs_logits
from avseg.models.av2t_sam.system import AV2TSAMSystem
from avseg.models.av2t_sam.training import bce_soft_iou_loss
from avseg.models.registry import load_model, read_system_info
from avseg.models.zero_shot import tiny_sam3_config


def inputs(model: AV2TSAM3, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    size = model.sam.image_size
    return {
        "sam_pixels": torch.randn(n, 3, size, size, generator=g),
        "clip": torch.randn(n, model.config.vision_dim, generator=g),
        "clap": torch.randn(n, model.config.audio_dim, generator=g),
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AV2TSAM3(AV2TSAM3Config.tiny()).eval()


def test_output_is_one_logit_map_per_frame_at_the_label_size(model):
    with torch.no_grad():
        logits = model(**inputs(model, n=3), size=(40, 52))
    assert logits.shape == (3, 40, 52)
    assert torch.isfinite(logits).all()


def test_prompt_tokens_are_sam3_text_embeddings_and_adapters_sit_on_every_vit_block(model):
    assert model.projector.tokens(torch.randn(2, model.config.common_dim)).shape == (2, 3, 32)  # tiny SAM 3: 32-d prompts
    assert len(model.adapters.mlps) == len(model.sam.blocks) == 2
    assert [mlp[-1].out_features for mlp in model.adapters.mlps] == [32, 32]
    assert not hasattr(model.sam, "text_encoder") and not any(k.startswith("sam.text_") for k in model.state_dict())


def test_binary_logits_are_the_best_query_scored_as_sam3_does():
    g = torch.Generator().manual_seed(0)
    presence, scores, masks = torch.randn(2, 1, generator=g), torch.randn(2, 5, generator=g), 4 * torch.randn(2, 5, 6, 7, generator=g)
    probability = (presence.sigmoid()[..., None] * (scores.sigmoid()[..., None, None] * masks.sigmoid()).amax(1)).double()
    torch.testing.assert_close(avs_logits(presence, scores, masks).double(), torch.logit(probability), rtol=1e-4, atol=1e-4)
    # SAM 3 clamps presence to [-10, 10] and scores to [-12, 12]: the logits stay finite at the extremes.
    high = avs_logits(torch.full((1, 1), 10.0), torch.full((1, 5), 12.0), torch.full((1, 5, 2, 2), 80.0))
    assert torch.isfinite(high).all() and (high > 9).all()


def test_mask_is_empty_when_sam3_says_nothing_is_present(model):
    batch = inputs(model, seed=1)
    bias = model.sam.detr_decoder.presence_head.layer3.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.fill_(-1e4)
        logits = model(**batch, size=(32, 32))
        bias.copy_(saved)
    assert (logits < -9).all()  # sigmoid(-10) ≈ 5e-5 at most


def test_a_closed_presence_head_still_learns_from_a_sounding_frame():
    torch.manual_seed(0)
    model = AV2TSAM3(AV2TSAM3Config.tiny()).train()
    last = model.sam.detr_decoder.presence_head.layer3
    batch, target = inputs(model, seed=4), torch.ones(2, 16, 16)  # every pixel sounds
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        at_bound = model(**batch, size=(16, 16))
        last.bias.fill_(-12.0)  # SAM 3's raw presence logit -12, below its clamp
    logits = model(**batch, size=(16, 16))
    torch.testing.assert_close(logits, at_bound, rtol=0, atol=0)  # forward: SAM 3's clamp, unchanged
    bce_soft_iou_loss(logits, target)["total"].backward()
    assert last.bias.grad is not None and last.bias.grad.item() < 0  # descent raises the presence logit


def test_query_scores_below_the_clamp_still_learn():
    torch.manual_seed(0)
    model = AV2TSAM3(AV2TSAM3Config.tiny()).train()
    scoring = model.sam.dot_product_scoring
    width = scoring.query_proj.out_features
    with torch.no_grad():  # every query's score is -20 * sqrt(width) * scale = -20
        scoring.query_proj.weight.zero_(), scoring.text_proj.weight.zero_(), scoring.text_proj.bias.fill_(1.0)
        scoring.query_proj.bias.fill_(-20.0 / (width * scoring.scale))
    bce_soft_iou_loss(model(**inputs(model, seed=5), size=(16, 16)), torch.ones(2, 16, 16))["total"].backward()
    assert scoring.query_proj.bias.grad is not None and scoring.query_proj.bias.grad.abs().sum() > 0


def test_straight_through_clamp_keeps_values_and_passes_gradients():
    from avseg.models.av2t_sam.sam3 import straight_through_clamp

    logits = torch.tensor([-30.0, -10.5, -3.25, 0.0, 9.75, 12.0, 40.0], requires_grad=True)
    clamped = straight_through_clamp(logits, 10.0)
    assert torch.equal(clamped, logits.detach().clamp(-10, 10))
    clamped.sum().backward()
    assert torch.equal(logits.grad, torch.ones(7))


def test_adapters_change_the_vit_output(model):
    pixels = inputs(model)["sam_pixels"]
    features = []
    handle = model.sam.blocks[-1].register_forward_hook(lambda module, args, output: features.append(output))
    for condition in (torch.zeros(2, model.config.common_dim), torch.ones(2, model.config.common_dim)):
        with torch.no_grad(), model.adapters.conditioned(condition):
            model.sam.vision_encoder(pixels)
    handle.remove()
    assert not torch.allclose(features[0], features[1])
    with pytest.raises(RuntimeError, match="outside"):
        model.sam.vision_encoder(pixels)


def test_gradients_reach_exactly_the_trainable_parameters(model):
    model.zero_grad(set_to_none=True)
    model.train()
    assert not model.sam.training  # frozen DETR layers have dropout
    loss = bce_soft_iou_loss(model(**inputs(model), size=(32, 32)), (torch.rand(2, 32, 32) > 0.5).float())["total"]
    loss.backward()
    model.eval()
    trainable = {id(p) for p in model.trainable_parameters()}
    # SAM 3's pixel decoder has three upsampling stages but is given three feature levels, so it runs two.
    unreached = ("sam.mask_decoder.pixel_decoder.conv_layers.2.", "sam.mask_decoder.pixel_decoder.norms.2.")
    for name, parameter in model.named_parameters():
        if id(parameter) in trainable:
            assert parameter.requires_grad, name
            if not name.startswith(unreached):
                assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    names = {n for n, p in model.named_parameters() if id(p) in trainable}
    assert {n.split(".")[0] for n in names} == {"projector", "adapters", "sam"}
    assert {".".join(n.split(".")[:2]) for n in names if n.startswith("sam.")} == {"sam.mask_decoder", "sam.dot_product_scoring", "sam.detr_decoder"}
    assert not any(n.startswith(("sam.mask_decoder.semantic_projection", "sam.detr_decoder.layers", "sam.vision_encoder")) for n in names)


def test_activation_recomputation_gives_the_same_gradients(model):
    batch, target = inputs(model, seed=3), (torch.rand(2, 16, 16) > 0.5).float()
    grads = []
    for recompute in (False, True):
        model.zero_grad(set_to_none=True)
        model.activation_checkpointing = recompute
        bce_soft_iou_loss(model(**batch, size=(16, 16)), target)["total"].backward()
        grads.append([p.grad.clone() for p in model.trainable_parameters() if p.grad is not None])
    model.activation_checkpointing = False
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model"] == "av2t-sam3"
    loaded = load_model(tmp_path / "m").eval()
    assert isinstance(loaded, AV2TSAM3)
    batch = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), model(**batch), rtol=0, atol=0)


def test_a_checkpoint_of_another_shape_is_a_one_line_error(tmp_path):
    AV2TSAM3(AV2TSAM3Config.tiny(common_dim=8, adapter_hidden_dim=8)).save_pretrained(tmp_path / "small")
    config = (tmp_path / "small" / "config.json").read_text().replace('"common_dim": 8', '"common_dim": 16')
    (tmp_path / "small" / "config.json").write_text(config)
    with pytest.raises(AvsegError, match="wrong shape") as error:
        load_model(tmp_path / "small")
    assert "\n" not in str(error.value)


def test_released_sam3_weights_start_a_model_with_fresh_projector_and_adapters(tmp_path):
    torch.manual_seed(1)
    released = Sam3Model(tiny_sam3_config())  # as published: with the text tower
    released.save_pretrained(tmp_path / "sam3")
    model = AV2TSAM3.from_sam3(str(tmp_path / "sam3"), audio_dim=24, vision_dim=16, common_dim=16, adapter_hidden_dim=16)
    reference = released.state_dict()
    for key, value in model.sam.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)
    assert model.config.sam3["detr_decoder_config"]["num_queries"] == 8
    assert model.projector.audio_proj.weight.abs().sum() > 0
    with pytest.raises(AvsegError, match="no such SAM 3 folder"):
        AV2TSAM3.from_sam3(str(tmp_path / "nothing"))


def released_sam3_video(folder, seed: int = 2) -> Sam3VideoModel:
    """SAM 3 as ``facebook/sam3`` publishes it: a ``Sam3VideoModel`` (detector, text tower, video tracker)."""
    torch.manual_seed(seed)
    released = Sam3VideoModel(Sam3VideoConfig(detector_config=tiny_sam3_config().to_dict()))
    released.save_pretrained(folder)
    return released


def test_convert_sam3_writes_a_folder_that_segment_can_use(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from avseg.cli import main

    released = released_sam3_video(tmp_path / "sam3")
    assert main(["convert", "sam3", str(tmp_path / "sam3"), "--out", str(tmp_path / "model")]) == 0
    assert "av2t-sam3" in capsys.readouterr().out
    info = read_system_info(tmp_path / "model")
    assert (info["model"], info["encoders"]["audio"], info["sample_rate"]) == ("av2t-sam3", "msclap", 44100)
    model = load_model(tmp_path / "model")
    detector = released.detector_model.state_dict()
    for key, value in model.sam.state_dict().items():
        torch.testing.assert_close(value, detector[key], rtol=0, atol=0)
    assert model.config.sam3["detr_decoder_config"]["num_queries"] == 8
    # the video tracker's names are checked too, though the model does not use it
    weights = tmp_path / "sam3" / "model.safetensors"
    save_file({**load_file(str(weights)), "tracker_model.tracker_model.memory_encoder.junk": torch.zeros(1)}, str(weights))
    with pytest.raises(AvsegError, match=r"\(sam3_video\); unexpected: tracker_model\.tracker_model\.memory_encoder\.junk$"):
        convert(tmp_path / "sam3", tmp_path / "junk", kind="sam3")


def test_convert_sam3_names_every_unexpected_and_missing_key_on_one_line(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from avseg.cli import main

    Sam3Model(tiny_sam3_config()).save_pretrained(tmp_path / "sam3")
    weights = tmp_path / "sam3" / "model.safetensors"
    state = load_file(str(weights))
    save_file({**state, "text_encoder.junk.weight": torch.zeros(1)}, str(weights))  # junk where the unused text tower is
    with pytest.raises(AvsegError, match=r"unexpected: text_encoder\.junk\.weight$"):
        convert(tmp_path / "sam3", tmp_path / "out", kind="sam3")
    del state["detr_decoder.presence_head.layer3.bias"]
    state["detr_decoder.presence_head.layer4.bias"] = torch.zeros(1)
    state["dot_product_scoring.query_proj.weight"] = torch.zeros(3, 3)
    save_file(state, str(weights))
    capsys.readouterr()  # transformers' progress bars while saving
    assert main(["convert", "sam3", str(tmp_path / "sam3"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("avseg: error: ")
    for part in ("unexpected: detr_decoder.presence_head.layer4.bias", "missing: detr_decoder.presence_head.layer3.bias", "wrong shape: dot_product_scoring.query_proj.weight"):
        assert part in error, part
    assert not (tmp_path / "out").exists()
    for missing in (str(tmp_path / "nope"), "./nope", "nope"):  # a folder that is not there is not a hub lookup
        assert main(["convert", "sam3", missing, "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"avseg: error: {missing}: no such SAM 3 folder (give a transformers folder, or a hub name such as facebook/sam3)\n"


def test_inputs_are_sam3_frames_without_a_beit3_frame():
    recipe = Recipe(model="av2t-sam3", preset="tiny", encoders=EncodersConfig(audio="logmel", image="thumbnail"))
    system = AV2TSAMSystem.from_recipe(recipe)
    frames = torch.zeros(2, 30, 40, 3, dtype=torch.uint8)
    frames[1] = 255
    rows = FrameRows(frames, torch.zeros(2, system.model.config.vision_dim), torch.zeros(2, system.model.config.audio_dim))
    batch = system.inputs.model_inputs(rows, "cpu")
    assert set(batch) == {"sam_pixels", "clip", "clap"}
    assert batch["sam_pixels"].shape == (2, 3, 112, 112)
    assert (batch["sam_pixels"][0] == -1).all() and (batch["sam_pixels"][1] == 1).all()  # mean = std = 0.5


@pytest.mark.parametrize("subset", ["s4", "ms3"])
def test_recipes_mirror_av2t_sam(subset):
    sam3, sam = load_recipe(f"configs/av2t_sam3_{subset}.yaml"), load_recipe(f"configs/av2t_sam_{subset}.yaml")
    assert (sam3.model, sam3.preset) == ("av2t-sam3", "paper")
    assert (sam3.train, sam3.data, sam3.encoders) == (sam.train, sam.data, sam.encoders)


RECIPE = """
name: av2t_sam3_tiny
model: av2t-sam3
preset: tiny
data: {{layout: ms3, root: {root}, synthetic_videos: 6, synthetic_size: 64}}
encoders: {{audio: logmel, image: thumbnail}}
train: {{epochs: 3, batch_clips: 2, lr: 1.0e-3, seed: 123, checkpoint_every: 2, activation_checkpointing: true}}
output: {out}
"""


def test_trains_evaluates_and_segments_through_the_pipeline(tmp_path):
    from avseg.cli import main
    from avseg.engine.train import train

    (tmp_path / "recipe.yaml").write_text(RECIPE.format(root=tmp_path / "ms3", out=tmp_path / "runs"))
    out = train(load_recipe(tmp_path / "recipe.yaml", []))
    losses = [row["total"] for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "total" in row]
    assert len(losses) >= 3 and all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= log[-1]["val"]["J"] <= 1.0
    video = make_video(tmp_path / "clip.mp4", seconds=3.0, size=(80, 64))
    assert main(["segment", str(video), "--model", str(out / "best"), "--out", str(tmp_path / "seg"), "--rate", "1"]) == 0
    summary = json.loads((tmp_path / "seg" / "clip" / "summary.json").read_text())
    assert len(summary["frames"]) == 3 and "av2t-sam3" in summary["model"]
