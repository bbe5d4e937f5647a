import dataclasses
import json

import numpy as np
import pytest
import torch

from avseg.data.avsbench import AVSS
from avseg.data.clip import Clip
from avseg.data.synthetic import load_objects, write_dataset
from avseg.encoders.vggish import VGGish, VGGishConfig, VGGishEncoder
from avseg.engine.evaluate import evaluate_clips
from avseg.errors import AvsegError
from avseg.models.teso import TeSO, TeSOConfig
from avseg.models.teso.inputs import TeSOInputs, audio_windows, matched_targets
from avseg.models.teso.sedam import gate_loss, info_nce
from avseg.models.teso.segmenter import TeSOSegmenter
from avseg.models.teso.training import TeSOTask
from avseg.silence import EMPTY_LOGIT


class HashingTextEncoder:
    """A deterministic stand-in text encoder (tests of wiring only; the real one is tested elsewhere)."""

    dim = 32

    def encode(self, texts):
        rows = []
        for text in texts:
            generator = torch.Generator().manual_seed(sum(map(ord, text)))
            rows.append(torch.randn(self.dim, generator=generator))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def frame_inputs(num_frames=4):
    generator = torch.Generator().manual_seed(0)
    cue_valid = torch.ones(num_frames, 4, dtype=torch.bool)
    cue_valid[:, 3] = False
    return {
        "pixel_values": torch.randn(num_frames, 3, 64, 64, generator=generator),
        "audio": torch.randn(num_frames, 3, 16, generator=generator),
        "audio_valid": torch.ones(num_frames, 3, dtype=torch.bool),
        "cues": torch.randn(num_frames, 4, 32, generator=generator),
        "cue_valid": cue_valid,
    }


def binary_targets(num_frames, size=64):
    masks = torch.zeros(num_frames, size, size, dtype=torch.long)
    masks[:, 10:30, 20:40] = 1
    masks[0] = 0
    return masks


@pytest.fixture(scope="module")
def frozen_model():
    torch.manual_seed(0)
    return TeSO(dataclasses.replace(TeSOConfig.tiny(), train_mask2former=False))


def test_gradients_reach_exactly_the_trainable_parts():
    torch.manual_seed(1)
    model = TeSO(dataclasses.replace(TeSOConfig.tiny(), train_mask2former=False)).train()
    with torch.no_grad():  # adapters start as the identity (up = 0); move them off it as one step would
        for injection in (model.visual_adapters, model.pixel_adapters, model.decoder_adapters):
            for adapter in injection.adapters:
                adapter.up.weight.normal_(0, 0.01)
    outputs = model(**frame_inputs())
    masks = binary_targets(4)
    mask_labels, class_labels = matched_targets(masks, 64)
    sound_labels = torch.tensor([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=torch.bool)
    losses = model.loss(outputs, mask_labels, class_labels, masks.flatten(1).any(1), sound_labels)
    assert torch.isfinite(losses["total"]) and losses["infonce"] > 0
    losses["total"].backward()
    trainable_prefixes = ("sedam.", "pmqs.", "visual_adapters.", "pixel_adapters.", "decoder_adapters.", "mask2former.class_predictor.")
    for name, parameter in model.named_parameters():
        if name.startswith(trainable_prefixes):
            assert parameter.requires_grad, name
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"
        else:
            assert not parameter.requires_grad and parameter.grad is None, f"frozen {name} got a gradient"
    for group in ("sedam", "pmqs", "visual_adapters", "pixel_adapters", "decoder_adapters"):
        assert any(n.startswith(group) for n, p in model.named_parameters() if p.grad is not None)


def test_dynamic_mask_keeps_real_cues_whose_gate_opens(frozen_model):
    model = frozen_model.eval()
    with torch.no_grad():
        semantics = model(**frame_inputs()).semantics
    assert not semantics.keep[:, 3].any()  # padding
    assert torch.equal(semantics.keep[:, :3], semantics.gates[:, :3] > 0.5)


def tiny_segmenter(seed=0):
    torch.manual_seed(seed)
    audio_encoder = VGGishEncoder(VGGish(VGGishConfig.tiny()))
    model = TeSO(TeSOConfig.tiny(text_dim=32, audio_dim=audio_encoder.dim))
    inputs = TeSOInputs(audio_encoder, HashingTextEncoder(), 32, 64)
    return TeSOSegmenter(model, inputs, {"a": [["dog", "guitar"]] * 3})


def test_silence_gate_masks_the_output_and_switches_off(synthetic):
    segmenter = tiny_segmenter()
    rng = np.random.default_rng(0)
    waveform = (0.3 * rng.standard_normal(3 * 16000)).astype(np.float32)
    waveform[16000:32000] = 0.0  # second 1 is digital silence
    clip = Clip(rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8), waveform, 16000, meta={"id": "a"})
    batch = segmenter.inputs.frames(clip, segmenter.cues["a"])
    with torch.no_grad():
        network = segmenter.model.segmentation_logits(segmenter.model(**batch.model_inputs()), (40, 48))
    raw, silent = segmenter.predict_ungated([clip])
    assert silent[0].tolist() == [False, True, False]
    torch.testing.assert_close(raw[0], network, rtol=0, atol=0)  # the same network on the same rows
    gated = segmenter.predict([clip])[0]
    assert (gated[1] == EMPTY_LOGIT).all() and (network[1] > EMPTY_LOGIT).all()
    assert torch.equal(gated[[0, 2]], raw[0][[0, 2]])
    segmenter.silence_gate = False
    assert torch.equal(segmenter.predict([clip])[0], raw[0])
    muted = clip.with_audio(np.zeros_like(waveform))
    segmenter.silence_gate = True
    assert (segmenter.predict([muted])[0] == EMPTY_LOGIT).all()
    segmenter.model.config.silence_gate_dbfs = None  # a model without a gate
    assert torch.equal(TeSOSegmenter(segmenter.model, segmenter.inputs, segmenter.cues).predict([muted])[0], segmenter.predict_ungated([muted])[0][0])


def test_adapters_change_the_frozen_network(frozen_model):
    model = frozen_model.eval()
    inputs = frame_inputs()
    with torch.no_grad():
        before = model(**inputs).mask_logits
        adapter = model.visual_adapters.adapters[0]
        saved = adapter.up.weight.clone()
        adapter.up.weight.normal_(0, 0.5)
        after = model(**inputs).mask_logits
        adapter.up.weight.copy_(saved)
        restored = model(**inputs).mask_logits
    assert not torch.allclose(before, after)
    torch.testing.assert_close(before, restored)


def test_adapted_blocks_refuse_to_run_unconditioned(frozen_model):
    with pytest.raises(RuntimeError, match="outside AdapterInjection.conditioned"):
        frozen_model.mask2former.model.pixel_level_module(torch.zeros(1, 3, 64, 64))


def test_save_and_load_round_trip(tmp_path, frozen_model):
    model = frozen_model.eval()
    folder = model.save_pretrained(tmp_path / "teso")
    loaded = TeSO.from_pretrained(folder).eval()
    inputs = frame_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            model.segmentation_logits(model(**inputs), (32, 32)), loaded.segmentation_logits(loaded(**inputs), (32, 32))
        )
    other = TeSO(TeSOConfig.tiny(num_classes=5))
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(AvsegError, match="model.safetensors: does not match the TeSO config"):
        TeSO.from_pretrained(tmp_path / "other")
    with pytest.raises(AvsegError, match="config.json: missing file"):
        TeSO.from_pretrained(tmp_path)


def test_model_saved_before_the_gate_loads_with_it_on(tmp_path, frozen_model):
    folder = frozen_model.save_pretrained(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    assert config["silence_gate_dbfs"] == -60.0
    del config["silence_gate_dbfs"]
    config["silence_db"] = -60.0  # what models saved before the gate had a name hold
    (folder / "config.json").write_text(json.dumps(config))
    assert TeSO.from_pretrained(folder).config.silence_gate_dbfs == -60.0
    config["silence_db"] = -50.0
    (folder / "config.json").write_text(json.dumps(config))
    assert TeSO.from_pretrained(folder).config.silence_gate_dbfs == -50.0
    off = dataclasses.replace(frozen_model.config, silence_gate_dbfs=None)
    TeSO(off).save_pretrained(tmp_path / "off")
    assert TeSO.from_pretrained(tmp_path / "off").config.silence_gate_dbfs is None


def test_gate_loss_and_info_nce_values():
    gates = torch.tensor([[0.9, 0.2], [0.3, 0.1], [0.5, 0.5]])
    valid = torch.tensor([[True, True], [True, True], [False, False]])
    loss = gate_loss(gates, valid, torch.tensor([True, False, True]))
    expected = -(np.log(0.9) + np.log(1 - 0.3)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    embeddings = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    labels = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.bool)
    aligned = info_nce(embeddings, labels)
    swapped = info_nce(embeddings[[0, 2, 1]], labels)
    assert aligned < swapped
    assert info_nce(embeddings, torch.eye(3, dtype=torch.bool)).item() == 0.0  # no positives, no anchors


def test_audio_windows():
    windows, valid = audio_windows(torch.arange(4.0)[:, None] + 1, 1)
    assert valid.tolist()[0] == [False, True, True] and valid.tolist()[3] == [True, True, False]
    assert windows[1, :, 0].tolist() == [1.0, 2.0, 3.0] and windows[0, 0, 0] == 0


def test_avss_head_trains_and_evaluates_with_avss_metrics(synthetic):
    torch.manual_seed(0)
    root = synthetic / "avss"
    train = list(AVSS(root, "train"))[:4]
    test = list(AVSS(root, "test"))
    cues = {k: v["visible"] for k, v in load_objects(root).items()}
    audio_encoder = VGGishEncoder(VGGish(VGGishConfig.tiny()))
    config = TeSOConfig.tiny(num_classes=AVSS(root, "test").num_classes, text_dim=32, audio_dim=audio_encoder.dim)
    model = TeSO(config)
    inputs = TeSOInputs(audio_encoder, HashingTextEncoder(), config.text_dim, config.image_size)
    task = TeSOTask(model, inputs, train, cues, batch_clips=2)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    losses = []
    model.train()
    for epoch in range(3):
        for batch in task.batches(epoch):
            loss = task.loss(batch)["total"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < np.mean(losses[:2])
    result = evaluate_clips(TeSOSegmenter(model, inputs, cues), test, num_classes=config.num_classes)
    assert set(result) == {"mIoU", "F", "IoU_per_class", "F_per_class"} and 0.0 < result["mIoU"] <= 1.0
    assert len(result["IoU_per_class"]) == config.num_classes and result["mIoU"] == pytest.approx(np.mean(result["IoU_per_class"]))


def test_segmenter_requires_cues(synthetic):
    audio_encoder = VGGishEncoder(VGGish(VGGishConfig.tiny()))
    config = TeSOConfig.tiny(text_dim=32, audio_dim=audio_encoder.dim)
    inputs = TeSOInputs(audio_encoder, HashingTextEncoder(), 32, 64)
    from avseg.data.avsbench import MS3

    clip = MS3(synthetic / "ms3", "test")[0]
    with pytest.raises(AvsegError, match="no text cues for clip"):
        TeSOSegmenter(TeSO(config), inputs, {}).predict([clip])


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(3)
    model = TeSO(dataclasses.replace(TeSOConfig.tiny(), train_mask2former=False)).train()
    with torch.no_grad():
        for adapter in model.visual_adapters.adapters:
            adapter.up.weight.normal_(0, 0.05)
    masks = binary_targets(4)
    mask_labels, class_labels = matched_targets(masks, 64)
    gradients = []
    for checkpointing in (False, True):
        model.activation_checkpointing = checkpointing
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the matched loss samples random points
        outputs = model(**frame_inputs())
        model.loss(outputs, mask_labels, class_labels, masks.flatten(1).any(1))["total"].backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys() and any(k.startswith("visual_adapters") for k in gradients[0])
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_corrupt_weights_file_is_a_one_line_error(tmp_path, frozen_model):
    folder = frozen_model.save_pretrained(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AvsegError, match="model.safetensors: unreadable weights file"):
        TeSO.from_pretrained(folder)


@pytest.mark.parametrize("layout", ["s4", "avss"])
def test_info_nce_runs_on_real_layouts_and_reaches_sedam(tmp_path, layout):
    from avseg.data.avsbench import S4

    write_dataset(layout, tmp_path / layout, videos=6, seed=3, size=32)
    reader = (S4 if layout == "s4" else AVSS)(tmp_path / layout, None)  # a reader, as on the real dataset
    clips = list(reader)
    cues = {k: v["visible"] for k, v in load_objects(tmp_path / layout).items()}
    torch.manual_seed(0)
    audio_encoder = VGGishEncoder(VGGish(VGGishConfig.tiny()))
    model = TeSO(TeSOConfig.tiny(num_classes=reader.num_classes, text_dim=32, audio_dim=audio_encoder.dim)).train()
    inputs = TeSOInputs(audio_encoder, HashingTextEncoder(), 32, 64)
    task = TeSOTask(model, inputs, clips, cues, batch_clips=len(clips), mute_probability=0.0)
    losses = task.loss(next(task.batches(0)))
    assert losses["infonce"] > 0
    sedam = dict(model.sedam.named_parameters())
    gradients = torch.autograd.grad(losses["infonce"], [sedam["audio_proj.weight"], sedam["audio_proj.bias"]])
    assert all(g.abs().sum() > 0 for g in gradients)


def test_class_scores_are_mask2former_semantic_post_processing_at_any_output_size():
    # transformers' post_process_semantic_segmentation (the PIL processor: no torchvision) combines the
    # query masks at the 384x384 input size and resizes the class maps; TeSO's full-size config works at 384.
    from types import SimpleNamespace

    from transformers.models.mask2former.image_processing_pil_mask2former import (
        Mask2FormerImageProcessorPil,
    )

    from avseg.models.teso.model import class_scores

    generator = torch.Generator().manual_seed(0)
    class_logits, mask_logits = torch.randn(2, 10, 4, generator=generator), torch.randn(2, 10, 96, 96, generator=generator)
    for size in ((720, 1280), (224, 224)):
        reference = Mask2FormerImageProcessorPil().post_process_semantic_segmentation(
            SimpleNamespace(class_queries_logits=class_logits, masks_queries_logits=mask_logits), target_sizes=[size] * 2, return_segmentation_scores=True
        )
        ours = class_scores(class_logits, mask_logits, (384, 384), size)
        # the same operations in the same order; the tolerance only allows for einsum's summation order
        torch.testing.assert_close(ours, torch.stack([item.segmentation_scores for item in reference]), rtol=0, atol=1e-6)


def test_the_semantic_combination_runs_in_fp32_under_bf16_autocast(frozen_model):
    from avseg.models.teso.model import TeSOOutput

    generator = torch.Generator().manual_seed(0)
    outputs = TeSOOutput(torch.randn(2, 10, 3, generator=generator).bfloat16(), torch.randn(2, 10, 16, 16, generator=generator).bfloat16(), [], None)
    expected = frozen_model.segmentation_logits(outputs, (40, 48))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = frozen_model.segmentation_logits(outputs, (40, 48))
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)  # the same fp32 ops on the same inputs, in one process
