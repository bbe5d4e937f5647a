import json
import math

import pytest
import torch
from conftest import make_video
from official_sam_names import official_sam2_name, official_sam_name

from avseg.errors import AvsegError
from avseg.models.av2t_sam.convert import convert
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
from avseg.models.av2t_sam.training import bce_soft_iou_loss
from avseg.models.registry import load_model


def inputs(model: AV2TSAM, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sam, evf = model.sam.image_size, model.config.beit3_config().img_size
    return {
        "sam_pixels": torch.randn(n, 3, sam, sam, generator=g),
        "evf_pixels": torch.randn(n, 3, evf, evf, generator=g),
        "clip": torch.randn(n, model.config.vision_dim, generator=g),
        "clap": torch.randn(n, model.config.audio_dim, generator=g),
    }


@pytest.fixture(scope="module", params=["sam2", "sam"])
def model(request):
    torch.manual_seed(0)
    return AV2TSAM(AV2TSAMConfig.tiny(request.param)).eval()


def test_output_is_one_logit_map_per_frame_at_the_label_size(model):
    with torch.no_grad():
        logits = model(**inputs(model, n=3), size=(40, 52))
    assert logits.shape == (3, 40, 52)
    assert torch.isfinite(logits).all()


def test_adapter_count_and_widths_follow_the_backbone():
    sam2 = AV2TSAM(AV2TSAMConfig.tiny("sam2"))
    # Hiera input widths: a stage's first block still takes the previous stage's width.
    assert [mlp[-1].out_features for mlp in sam2.adapters.mlps] == [8, 8, 16, 16, 32, 32]
    sam = AV2TSAM(AV2TSAMConfig.tiny("sam"))
    assert len(sam.adapters.mlps) == 4 and sam.adapters.shared_out.out_features == 16


def test_adapters_change_the_frozen_encoder_output(model):
    pixels = inputs(model)["sam_pixels"]
    features = []
    # The last block's output (a randomly initialised tiny SAM neck is ~0 and would hide any change).
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
    loss = bce_soft_iou_loss(model(**inputs(model), size=(32, 32)), (torch.rand(2, 32, 32) > 0.5).float())["total"]
    loss.backward()
    model.eval()
    trainable = {id(p) for p in model.trainable_parameters()}
    # Trainable as in the release, but the loss does not reach them all: the top-IoU choice is an argmax
    # (only the chosen masks' hypernetworks learn), and the object score is not used.
    unreached = {"iou_prediction_head", "pred_obj_score_head", "obj_score_token", "output_hypernetworks_mlps."}
    for name, parameter in model.named_parameters():
        if id(parameter) in trainable:
            assert parameter.requires_grad, name
            if not any(part in name for part in unreached):
                assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    assert any(p.grad.abs().sum() > 0 for p in model.sam.mask_decoder.output_hypernetworks_mlps.parameters())
    names = {n for n, p in model.named_parameters() if id(p) in trainable}
    assert any(n.startswith("sam.mask_decoder.") for n in names) and "sam.prompt_encoder.no_mask_embed.weight" in names
    assert not any(n.startswith(("evf.beit3.", "sam.vision_encoder.")) for n in names)


def test_activation_recomputation_gives_the_same_gradients(model):
    batch, target = inputs(model, seed=3), (torch.rand(2, 16, 16) > 0.5).float()
    grads = []
    for recompute in (False, True):
        model.zero_grad(set_to_none=True)
        model.activation_checkpointing = recompute
        bce_soft_iou_loss(model(**batch, size=(16, 16)), target)["total"].backward()
        grads.append([p.grad.clone() for p in model.trainable_parameters() if p.grad is not None])
    model.activation_checkpointing = False
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_projector_modes_ignore_what_they_do_not_use():
    torch.manual_seed(0)
    for mode, ignored in (("clip", "clap"), ("clap", "clip")):
        model = AV2TSAM(AV2TSAMConfig.tiny(projector=mode)).eval()
        batch = inputs(model)
        other = {**batch, ignored: torch.randn_like(batch[ignored])}
        with torch.no_grad():
            torch.testing.assert_close(model(**batch), model(**other))


def test_only_the_mul_projector_normalises_its_inputs():
    """As the release: ``mul`` is scale-invariant in both embeddings; ``clap``/``clip`` project raw embeddings."""
    from avseg.models.av2t_sam.projector import AudioVisualProjector

    torch.manual_seed(0)
    audio, vision = torch.randn(2, 16), torch.randn(2, 8)
    for mode in ("mul", "clap", "clip"):
        projector = AudioVisualProjector(mode, audio_dim=16, vision_dim=8, common_dim=8, num_tokens=1, token_dim=4)
        scaled = projector.fuse(3 * audio, 3 * vision)
        if mode == "mul":
            torch.testing.assert_close(scaled, projector.fuse(audio, vision))
        else:
            part = projector.audio_proj if mode == "clap" else projector.vision_proj
            torch.testing.assert_close(scaled, part(3 * (audio if mode == "clap" else vision)))


def test_loss_is_finite_and_pulls_to_empty_on_empty_ground_truth():
    logits = torch.full((2, 8, 8), -200.0, requires_grad=True)
    losses = bce_soft_iou_loss(logits, torch.zeros(2, 8, 8))
    assert all(torch.isfinite(v) for v in losses.values())
    logits = torch.zeros(2, 8, 8, requires_grad=True)
    bce_soft_iou_loss(logits, torch.zeros(2, 8, 8))["soft_iou"].backward()
    assert (logits.grad > 0).all()


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    batch = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), model(**batch), rtol=0, atol=0)


def test_a_checkpoint_of_another_shape_is_a_one_line_error(tmp_path):
    AV2TSAM(AV2TSAMConfig.tiny(common_dim=8, adapter_hidden_dim=8)).save_pretrained(tmp_path / "small")
    config = (tmp_path / "small" / "config.json").read_text().replace('"common_dim": 8', '"common_dim": 16')
    (tmp_path / "small" / "config.json").write_text(config)
    with pytest.raises(AvsegError, match="wrong shape") as error:
        load_model(tmp_path / "small")
    assert "\n" not in str(error.value)


def randomised(model: AV2TSAM, seed: int = 0) -> AV2TSAM:
    """Every weight random and of a size that makes outputs depend on it (tiny inits leave some near zero);
    SAM 2's two positional matrices tied, as the official model has one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
        model.sam.prompt_encoder.shared_embedding.positional_embedding.copy_(model.sam.shared_image_embedding.positional_embedding)
    return model


def official_av2t_state(model: AV2TSAM) -> dict[str, torch.Tensor]:
    official = {}
    for key, value in model.state_dict().items():
        if key.startswith("sam."):
            inner = key[len("sam.") :]
            if inner in ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding"):
                official["model.visual_model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = value
            elif inner == "prompt_encoder.point_embed.weight":
                for i, row in enumerate(value):
                    official[f"model.visual_model.sam_prompt_encoder.point_embeddings.{i}.weight"] = row[None].clone()
            else:
                official["model.visual_model." + official_sam2_name(inner)] = value
        elif key.startswith("evf.beit3."):
            official["model.mm_extractor.beit3." + key[len("evf.beit3.") :]] = value
        elif key.startswith("evf.to_prompt."):
            official["model.text_hidden_fcs.0." + key[len("evf.to_prompt.") :]] = value
        elif key.startswith("projector.to_tokens."):
            official["projector.to_text_space." + key[len("projector.to_tokens.") :]] = value
        elif key.startswith("adapters.mlps."):
            index, rest = key[len("adapters.mlps.") :].split(".", 1)
            official[f"audio_prompt_generator.lightweight_mlp_{index}.{rest}"] = value
        else:
            official[key] = value
    # SAM 2's video-tracking parts are in every official checkpoint; image segmentation never runs them.
    official["model.visual_model.maskmem_tpos_enc"] = torch.zeros(7, 1, 1, 64)
    official["model.visual_model.memory_attention.layers.0.self_attn.q_proj.weight"] = torch.zeros(4, 4)
    return official


def tiny_config_patch(monkeypatch):
    """``convert`` builds the released sizes; build the tiny ones for the test."""
    import avseg.models.av2t_sam.convert as convert_module

    monkeypatch.setattr(convert_module, "release_config", lambda backbone, projector: AV2TSAMConfig.tiny(backbone, projector=projector))


def test_converter_maps_an_official_evf_sam_vit_h_checkpoint(tmp_path, monkeypatch):
    reference = randomised(AV2TSAM(AV2TSAMConfig.tiny("sam"))).eval()
    official = {}
    for key, value in reference.state_dict().items():
        if key in ("sam.shared_image_embedding.positional_embedding", "sam.prompt_encoder.shared_embedding.positional_embedding"):
            official["model.visual_model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = value
        elif key.startswith("sam."):
            official["model.visual_model." + official_sam_name(key[len("sam.") :])] = value
        elif key.startswith("adapters.mlps."):
            index, rest = key[len("adapters.mlps.") :].split(".", 1)
            official[f"audio_prompt_generator.lightweight_mlp_{index}.{rest}"] = value
        elif key.startswith("adapters.shared_out."):
            official["audio_prompt_generator.shared_mlp." + key[len("adapters.shared_out.") :]] = value
        elif key.startswith("evf.beit3."):
            official["model.mm_extractor.beit3." + key[len("evf.beit3.") :]] = value
        elif key.startswith("evf.to_prompt."):
            official["model.text_hidden_fcs.0." + key[len("evf.to_prompt.") :]] = value
        else:
            official[key.replace("projector.to_tokens.", "projector.to_text_space.")] = value
    torch.save(official, tmp_path / "official.pth")
    tiny_config_patch(monkeypatch)
    converted = convert(tmp_path / "official.pth", tmp_path / "converted", projector="mul").eval()
    batch = inputs(reference)
    with torch.no_grad():
        torch.testing.assert_close(converted(**batch), reference(**batch), rtol=0, atol=0)


def test_converter_maps_every_official_key_of_an_official_checkpoint(tmp_path, monkeypatch):
    reference = randomised(AV2TSAM(AV2TSAMConfig.tiny())).eval()
    official = official_av2t_state(reference)
    torch.save(official, tmp_path / "official.pth")
    tiny_config_patch(monkeypatch)
    convert(tmp_path / "official.pth", tmp_path / "converted", projector="mul")
    converted = load_model(tmp_path / "converted").eval()
    batch = inputs(reference)
    with torch.no_grad():
        expected = reference(**batch)
        assert expected.std() > 0.1
        torch.testing.assert_close(converted(**batch), expected, rtol=0, atol=0)


def test_converter_names_every_problem_at_once_under_official_names(tmp_path, monkeypatch):
    official = official_av2t_state(AV2TSAM(AV2TSAMConfig.tiny()))
    tiny_config_patch(monkeypatch)
    del official["projector.to_text_space.0.weight"], official["model.visual_model.sam_mask_decoder.iou_token.weight"]
    del official["model.visual_model.sam_prompt_encoder.point_embeddings.2.weight"]
    official["model.visual_model.something_new.weight"] = torch.zeros(1)
    official["model.visual_model.memory_attention.layers.0.junk.weight"] = torch.zeros(1)  # an unknown video-part name
    official["model.visual_model.sam_mask_decoder.iou_token.weight2"] = torch.zeros(1)
    torch.save(official, tmp_path / "broken.pth")
    with pytest.raises(AvsegError) as error:
        convert(tmp_path / "broken.pth", tmp_path / "out", projector="mul")
    message = str(error.value)
    for name in (
        "model.visual_model.something_new.weight",
        "model.visual_model.memory_attention.layers.0.junk.weight",
        "model.visual_model.sam_mask_decoder.iou_token.weight2",
        "missing: ",
        "projector.to_text_space.0.weight",
        "model.visual_model.sam_mask_decoder.iou_token.weight",
        "model.visual_model.sam_prompt_encoder.point_embeddings.2.weight",
    ):
        assert name in message, name
    assert "point_embeddings.1.weight" not in message and "\n" not in message
    assert not (tmp_path / "out").exists()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AvsegError, match="not a readable checkpoint"):
        convert(tmp_path / "junk.pth", tmp_path / "out", projector="mul")


def test_official_names_are_read_in_both_directions():
    from avseg.models.av2t_sam.convert import OfficialNames

    for backbone in ("sam2", "sam"):
        expected = AV2TSAM(AV2TSAMConfig.tiny(backbone)).state_dict()
        names = OfficialNames(backbone)
        for key in expected:
            for official in names.to_official(key, expected):
                if not (backbone == "sam2" and "point_embeddings" in official):  # SAM 2's four rows, stacked by map_official
                    assert key in names.to_ours(official), (key, official)


def test_sam2_video_parts_are_kept_apart_by_their_official_names(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    official = official_av2t_state(AV2TSAM(AV2TSAMConfig.tiny()))
    official["model.visual_model.obj_ptr_proj.layers.2.bias"] = torch.ones(4)
    official["model.visual_model.memory_encoder.fuser.layers.0.weight"] = torch.ones(4)  # EVF's fork renamed SAM 2's gamma
    torch.save(official, tmp_path / "official.pth")
    tiny_config_patch(monkeypatch)
    convert(tmp_path / "official.pth", tmp_path / "out", projector="mul")
    kept = load_file(str(tmp_path / "out" / "sam2_memory.safetensors"))
    assert set(kept) == {"maskmem_tpos_enc", "memory_attention.layers.0.self_attn.q_proj.weight", "obj_ptr_proj.layers.2.bias", "memory_encoder.fuser.layers.0.weight"}
    torch.save({**official, "model.visual_model.memory_encoder.fuser.extra": torch.ones(1)}, tmp_path / "junk.pth")
    with pytest.raises(AvsegError, match=r"no place in AV2T-SAM: model\.visual_model\.memory_encoder\.fuser\.extra$"):
        convert(tmp_path / "junk.pth", tmp_path / "junk", projector="mul")


def with_both_projections(model: AV2TSAM) -> dict[str, torch.Tensor]:
    """The official file of a ``clap`` or ``clip`` model: the official ``AVTSAM`` builds both projections in every mode."""
    config = model.config
    return {
        "projector.audio_proj.weight": torch.randn(config.common_dim, config.audio_dim),
        "projector.audio_proj.bias": torch.randn(config.common_dim),
        "projector.vision_proj.weight": torch.randn(config.common_dim, config.vision_dim),
        "projector.vision_proj.bias": torch.randn(config.common_dim),
        **official_av2t_state(model),
    }


def test_projector_mode_is_read_from_the_release_file_name_or_required(tmp_path, monkeypatch):
    tiny_config_patch(monkeypatch)
    reference = randomised(AV2TSAM(AV2TSAMConfig.tiny(projector="clap"))).eval()
    released = tmp_path / "av2t_clap_adapter_evf_sam2_s4_0.0_0.0_best.pth"  # train_avs.py's name for its best model
    torch.save(with_both_projections(reference), released)
    converted = convert(released, tmp_path / "clap").eval()
    assert converted.config.projector == "clap"
    batch = inputs(reference)
    with torch.no_grad():
        torch.testing.assert_close(converted(**batch), reference(**batch), rtol=0, atol=0)
    with pytest.raises(AvsegError, match="file name says it was trained with projector clap"):
        convert(released, tmp_path / "mul", projector="mul")
    (tmp_path / "renamed.pth").write_bytes(released.read_bytes())
    with pytest.raises(AvsegError, match="pass --projector mul, clap or clip"):
        convert(tmp_path / "renamed.pth", tmp_path / "unknown")
    assert not (tmp_path / "mul").exists() and not (tmp_path / "unknown").exists()


def test_cli_refusal_is_one_line_on_stderr(tmp_path):
    import os
    import subprocess
    import sys

    weights = {"model.visual_model.image_encoder.trunk.pos_embed": torch.zeros(1), "projector.audio_proj.weight": torch.zeros(1)}
    torch.save(weights, tmp_path / "weights.pth")  # the projector mode is not in the file, nor in its name
    result = subprocess.run(
        [sys.executable, "-m", "avseg.cli", "convert", "av2t-sam", str(tmp_path / "weights.pth"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("avseg: error: ") and result.stderr.count("\n") == 1 and "--projector" in result.stderr
    assert not (tmp_path / "out").exists()


def test_evf_hub_weights_become_a_starting_point_with_fresh_adapters(tmp_path, monkeypatch):
    torch.manual_seed(1)  # not the converter's seed (0)
    reference = AV2TSAM(AV2TSAMConfig.tiny())
    evf = {k[len("model.") :]: v for k, v in official_av2t_state(reference).items() if k.startswith("model.")}
    torch.save(evf, tmp_path / "evf.bin")
    tiny_config_patch(monkeypatch)
    model = convert(tmp_path / "evf.bin", tmp_path / "start", kind="evf-sam")
    torch.testing.assert_close(model.sam.mask_decoder.iou_token.weight, reference.sam.mask_decoder.iou_token.weight)
    assert not torch.equal(model.adapters.mlps[0][0].weight, reference.adapters.mlps[0][0].weight)


RECIPE = """
name: av2t_tiny
model: av2t-sam
preset: tiny
data: {{layout: ms3, root: {root}, synthetic_videos: 6, synthetic_size: 64}}
encoders: {{audio: logmel, image: thumbnail}}
train: {{epochs: 1, batch_clips: 2, lr: 2.0e-4, seed: 123, checkpoint_every: 2, activation_checkpointing: true}}
output: {out}
"""


def test_trains_evaluates_and_segments_through_the_pipeline(tmp_path):
    from avseg.cli import main
    from avseg.config import load_recipe
    from avseg.engine.train import train

    (tmp_path / "recipe.yaml").write_text(RECIPE.format(root=tmp_path / "ms3", out=tmp_path / "runs"))
    out = train(load_recipe(tmp_path / "recipe.yaml", []))
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["total"]) for row in log if "total" in row)
    assert 0.0 <= log[-1]["val"]["J"] <= 1.0
    video = make_video(tmp_path / "clip.mp4", seconds=3.0, size=(80, 64))
    assert main(["segment", str(video), "--model", str(out / "best"), "--out", str(tmp_path / "seg"), "--rate", "2"]) == 0
    summary = json.loads((tmp_path / "seg" / "clip" / "summary.json").read_text())
    assert len(summary["frames"]) == 6 and (tmp_path / "seg" / "clip" / "overlay.mp4").is_file()  # 2 frames a second, each its own audio
    assert main(["segment", str(video), "--model", str(out / "best"), "--out", str(tmp_path / "seg"), "--cues", "dog"]) == 2


def test_runs_under_bf16_autocast(model):
    """The option ``train.bf16`` uses on CUDA; CPU autocast runs the same code path here."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**inputs(model), size=(16, 16))
    assert logits.shape == (2, 16, 16) and torch.isfinite(logits.float()).all()


def test_avseg_convert_writes_a_folder_that_segment_can_use(tmp_path, monkeypatch, capsys):
    from avseg.cli import main
    from avseg.models.registry import read_system_info

    torch.save(official_av2t_state(randomised(AV2TSAM(AV2TSAMConfig.tiny()))), tmp_path / "official.pth")
    tiny_config_patch(monkeypatch)
    assert main(["convert", "av2t-sam", str(tmp_path / "official.pth"), "--out", str(tmp_path / "model"), "--projector", "mul"]) == 0
    assert "av2t-sam" in capsys.readouterr().out
    assert read_system_info(tmp_path / "model")["encoders"]["audio"] == "msclap"
    assert main(["convert", "av2t-sam", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x")]) == 2


def test_silence_augmentation_mutes_whole_clips_with_empty_targets(tmp_path):
    """train.mute_probability reaches AV2T-SAM: a muted clip carries the encoder's embedding of digital silence
    and empty masks; at 0 the batches are exactly the clips' own rows."""
    import numpy as np

    from avseg.data.avsbench import MS3
    from avseg.data.synthetic import write_dataset
    from avseg.encoders.logmel import LogMelEncoder
    from avseg.encoders.thumbnail import ThumbnailEncoder
    from avseg.models.av2t_sam.inputs import AV2TInputs
    from avseg.models.av2t_sam.training import AV2TTask

    write_dataset("ms3", tmp_path / "ms3", videos=4, size=32)
    clips = list(MS3(tmp_path / "ms3", split=None))
    assert any(clip.masks.any() for clip in clips)
    model = AV2TSAM(AV2TSAMConfig.tiny(audio_dim=LogMelEncoder().dim, vision_dim=ThumbnailEncoder().dim))
    inputs = AV2TInputs(ThumbnailEncoder(), LogMelEncoder(), model.sam.image_size, model.config.beit3_config().img_size)
    silence = inputs.audio_embeddings(np.zeros(16000 * 5, np.float32), 16000, 5)

    muted = [rows for batch in AV2TTask(model, inputs, clips, 2, seed=0, mute_probability=1.0).batches(0) for rows in batch]
    assert len(muted) == len(clips)
    for rows in muted:
        torch.testing.assert_close(rows.clap, silence)  # same encoder, same input: exact
        assert not rows.masks.any()

    plain = AV2TTask(model, inputs, clips, 2, seed=0, mute_probability=0.0)
    served = [rows for batch in plain.batches(0) for rows in batch]
    assert sorted(map(id, served)) == sorted(map(id, plain.rows))
    assert any(rows.masks.any() for rows in served)


@pytest.mark.parametrize("backbone", ["sam2", "sam"])
def test_the_iou_head_that_picks_the_mask_runs_in_fp32_under_bf16_autocast(backbone, tmp_path):
    # bf16 would put the predicted IoUs on a 1/256 grid, where close candidates tie and argmax takes the first
    model = AV2TSAM(AV2TSAMConfig.tiny(backbone))
    model.save_pretrained(tmp_path)
    for head in (model.sam.mask_decoder.iou_prediction_head, load_model(tmp_path).sam.mask_decoder.iou_prediction_head):
        tokens = torch.randn(4, 1, head.proj_in.in_features).bfloat16()
        expected = head(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scores = head(tokens)
        assert scores.dtype == torch.float32
        torch.testing.assert_close(scores, expected, rtol=0, atol=0)  # the same fp32 ops on the same inputs, in one process
