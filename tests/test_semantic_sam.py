"""Semantic-SAM at toy size (the same classes as the released Swin-L): forward shapes, the automatic mask generator
end to end and its small-region cleaning, the converter's round trip and one-line refusals, and the released name
read offline from a pre-filled cache.

Parity with the release's own code (at equal random weights) is measured by scripts outside the repository (the
release's code is not vendored); its figures are in the README."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avseg.errors import AvsegError
from avseg.models.semantic_sam import convert as conversion
from avseg.models.semantic_sam.config import SemanticSamConfig
from avseg.models.semantic_sam.generator import (
    SemanticSamMaskGenerator,
    without_small_regions,
)
from avseg.models.semantic_sam.model import SemanticSam


def randomised(model: SemanticSam, seed: int = 0) -> SemanticSam:
    """Random norms and biases too (many start at 0 or 1, which would hide a misplaced tensor); sharp mask logits and
    IoU scores around the generator's threshold, so that its filters keep some masks and drop others."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                scale = 0.2 if value.dim() == 1 else 0.3
                value.copy_(torch.randn(value.shape, generator=generator) * scale + (1.0 if name.endswith("norm.weight") or ".1.weight" in name else 0.0))
        model.encoder.mask_projection.weight.mul_(20.0)
        model.decoder.iou_head.layers[-1].bias.fill_(0.9)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> SemanticSam:
    torch.manual_seed(0)
    return randomised(SemanticSam(SemanticSamConfig.tiny()))


@pytest.fixture()
def tiny_release(monkeypatch):
    """The converter builds the released Swin-L or Swin-T; at toy size it builds the tiny model."""
    monkeypatch.setattr(conversion, "release_config", lambda state, path: SemanticSamConfig.tiny())


def frame(height: int = 60, width: int = 76) -> np.ndarray:
    """Smooth random colour blobs (uint8 RGB), so masks have regions."""
    coarse = torch.rand(1, 3, height // 8, width // 8, generator=torch.Generator().manual_seed(3)) * 255
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0].permute(1, 2, 0).byte().numpy()


def test_forward_pads_to_32_and_gives_masks_at_the_frame_size(model):
    with torch.no_grad():
        features = model.image_features(torch.from_numpy(frame(50, 70)).permute(2, 0, 1))
        masks, iou_scores = model.predict(features, torch.rand(5, 2), [0, 2])
    assert features.padded_size == (64, 96) and features.mask_features.shape == (1, 64, 16, 24)
    assert [tuple(level.shape[-2:]) for level in features.levels] == [(8, 12), (4, 6), (2, 3), (1, 2)]
    assert masks.shape == (10, 50, 70) and iou_scores.shape == (5, 2)


def test_a_frame_that_is_not_rgb_is_one_line(model):
    with pytest.raises(AvsegError, match=r"semantic-sam: a frame is \(3, H, W\) RGB"):
        model.image_features(torch.zeros(4, 8, 8))


def test_the_generator_gives_binary_frame_masks_and_a_mask_image(model):
    generator = SemanticSamMaskGenerator(model, "tiny", points_per_side=8, points_per_batch=24)
    masks = generator.masks(frame())
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == (60, 76) and 0 < len(masks) < 64
    assert masks.reshape(len(masks), -1).any(1).all()
    assert generator.mask_image(frame(), 64).shape == (64, 64, 3)
    with pytest.raises(AvsegError, match="granularity levels are 1..6"):
        SemanticSamMaskGenerator(model, "tiny", levels=(7,))


def test_small_holes_are_filled_and_small_islands_dropped_unless_all_are_small():
    mask = np.zeros((12, 12), bool)
    mask[1:9, 1:9] = True
    mask[4, 4] = False  # a 1-pixel hole
    mask[11, 11] = True  # a 1-pixel island
    filled, changed = without_small_regions(mask, 10, "holes")
    assert changed and filled[4, 4] and filled[11, 11]
    cleaned, changed = without_small_regions(filled, 10, "islands")
    assert changed and not cleaned[11, 11] and cleaned[1:9, 1:9].all()
    assert without_small_regions(cleaned, 10, "islands") == (cleaned, False)
    tiny = np.zeros((6, 6), bool)
    tiny[0, 0] = tiny[3, 3] = tiny[3, 4] = True  # every island small: the largest stays
    kept, _ = without_small_regions(tiny, 10, "islands")
    assert kept.sum() == 2 and kept[3, 3] and kept[3, 4]


def official_file(model: SemanticSam, path, changes=None) -> None:
    """The release's file layout: ``{"model": state}`` with the ``BaseModel`` wrapper's ``model.`` prefix."""
    state = conversion.official_state(model)
    state.update(changes or {})
    state["sem_seg_head.predictor.lang_mapper"] = torch.zeros(512, model.config.width)  # not read at inference
    torch.save({"model": {"model." + key: value for key, value in state.items() if value is not None}}, path)


def test_the_converter_round_trips_the_release_layout(model, tmp_path, tiny_release):
    official_file(model, tmp_path / "swinl_only_sam_many2many.pth")
    converted = conversion.convert(tmp_path / "swinl_only_sam_many2many.pth", tmp_path / "out")
    assert all(torch.equal(value, converted.state_dict()[key]) for key, value in model.state_dict().items())
    assert isinstance(SemanticSam.from_pretrained(tmp_path / "out"), SemanticSam)


def test_missing_extra_and_misshapen_keys_are_named_in_one_line(model, tmp_path, tiny_release):
    changes = {
        "sem_seg_head.predictor.mask_tokens.weight": None,
        "sem_seg_head.predictor.surprise.weight": torch.zeros(1),
        "sem_seg_head.predictor.label_enc.weight": torch.zeros(3, 64),
    }
    official_file(model, tmp_path / "bad.pth", changes)
    with pytest.raises(AvsegError) as error:
        conversion.convert(tmp_path / "bad.pth", tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    assert "no place in Semantic-SAM: sem_seg_head.predictor.surprise.weight" in message
    assert "missing: sem_seg_head.predictor.mask_tokens.weight" in message
    assert "wrong shape: sem_seg_head.predictor.label_enc.weight (3, 64) (expected (2, 64))" in message


def test_a_checkpoint_of_another_model_or_swin_is_one_line(tmp_path):
    torch.save({"whatever": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(AvsegError, match="not a Semantic-SAM checkpoint"):
        conversion.convert(tmp_path / "other.pth", tmp_path / "out")
    torch.save({"backbone.patch_embed.proj.weight": torch.zeros(16, 3, 4, 4), "sem_seg_head.predictor.x": torch.zeros(1)}, tmp_path / "small.pth")
    with pytest.raises(AvsegError, match="neither of the released Semantic-SAM"):
        conversion.convert(tmp_path / "small.pth", tmp_path / "out")


def prefill_semantic_sam(avseg_cache, tmp_path) -> None:
    """The released Swin-L file, official layout at toy size (tests patch ``release_config``), where ``semantic-sam-l``
    downloads it (``<avseg cache>/semantic-sam``)."""
    torch.manual_seed(0)
    folder = avseg_cache / "semantic-sam"
    folder.mkdir(parents=True, exist_ok=True)
    official_file(randomised(SemanticSam(SemanticSamConfig.tiny())), folder / conversion.FILES["L"])


def test_the_released_name_reads_the_cached_file_and_converts_it_once(tmp_path, monkeypatch, tiny_release):
    from avseg.models.vct.inputs import mask_generator
    from avseg.models.vct.mask_images import describe
    from avseg.models.vct.model import SAM2_MASK_GENERATOR

    monkeypatch.setenv("AVSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AvsegError, match="downloads are off.*releases/download/checkpoint/swinl_only_sam_many2many.pth"):
        mask_generator("semantic-sam-l")
    prefill_semantic_sam(tmp_path / "cache", tmp_path)
    generator = mask_generator("semantic-sam-l")
    assert isinstance(generator, SemanticSamMaskGenerator) and generator.faithful
    assert (tmp_path / "cache" / "semantic-sam" / "semantic-sam-l" / "model.safetensors").is_file()
    assert describe("semantic-sam-l") == {
        "mask_images": "generated by Semantic-SAM's automatic mask generator (semantic-sam-l, level 3), the release's generator",
        "approximate": False,
    }
    assert describe(SAM2_MASK_GENERATOR)["approximate"] is True and "SAM 2" in describe(SAM2_MASK_GENERATOR)["mask_images"]


def test_avseg_convert_semantic_sam_writes_a_folder_vct_can_name(model, tmp_path, tiny_release, capsys):
    from avseg.cli import main
    from avseg.models.vct.inputs import mask_generator

    official_file(model, tmp_path / "release.pth")
    assert main(["convert", "semantic-sam", str(tmp_path / "release.pth"), "--out", str(tmp_path / "folder")]) == 0
    assert "VCT's mask_generator" in capsys.readouterr().out
    assert isinstance(mask_generator(str(tmp_path / "folder")), SemanticSamMaskGenerator)
