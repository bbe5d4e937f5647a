"""Temporal propagation: SAM 2's video memory (and SAM 3's tracker) at toy size, random weights (tracking quality is
not asserted: random weights cannot track); strict loading of AV2T-SAM's own SAM 2 from official-format weights."""

import dataclasses

import numpy as np
import pytest
import torch
from official_sam_names import official_sam2_video_name
from safetensors.torch import load_file, save_file
from test_av2t_sam import official_av2t_state, randomised
from transformers import Sam2Model, Sam2VideoModel

from avseg.errors import AvsegError
from avseg.models.av2t_sam.convert import MEMORY_FILE, convert
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
from avseg.propagation import load_propagator, sam2_propagator
from avseg.propagation.sam2_weights import sam2_video_config, tiny_video_sam2_config

HEIGHT, WIDTH = 40, 48


@pytest.fixture(autouse=True)
def one_thread():
    """Toy models run dozens of tiny ops per frame; on a shared 2-core machine, threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_video_model(seed: int = 0) -> Sam2VideoModel:
    torch.manual_seed(seed)
    return Sam2VideoModel(sam2_video_config(tiny_video_sam2_config())).eval()


def frame_and_mask(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    frame = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[10:30, 12:30] = True
    return frame, mask


def session_sizes(propagator) -> dict[str, int]:
    """Entries of every per-frame store of the inference session."""
    session = propagator.session
    outputs = session.output_dict_per_obj.get(0, {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}})
    return {
        "frames": len(session.processed_frames or {}),
        "vision features": len(session.cache._vision_features),
        "keyframes": len(outputs["cond_frame_outputs"]),
        "tracked": len(outputs["non_cond_frame_outputs"]),
        "tracked frames": sum(len(v) for v in session.frames_tracked_per_obj.values()),
        "prompts": sum(len(v) for v in (*session.mask_inputs_per_obj.values(), *session.point_inputs_per_obj.values())),
    }


def test_a_keyframe_mask_propagates_through_sam2_video_to_repeated_frames():
    propagator = sam2_propagator(random_video_model())
    frame, mask = frame_and_mask()
    propagator.start(frame, mask)
    assert propagator.memory_entries() == 1
    for _ in range(3):
        probability = propagator.step(frame)
        assert probability.shape == (HEIGHT, WIDTH) and probability.dtype == np.float32
        assert np.isfinite(probability).all() and 0 <= probability.min() <= probability.max() <= 1
        assert probability.std() > 0  # a mask from the model, not a constant
    assert propagator.memory_entries() == 4


def test_an_empty_keyframe_ends_the_track_until_the_next_mask():
    propagator = sam2_propagator(random_video_model())
    frame, mask = frame_and_mask()
    propagator.start(frame, mask)
    assert propagator.step(frame).any()
    propagator.start(frame, np.zeros_like(mask))
    assert propagator.memory_entries() == 0
    for _ in range(2):
        assert np.array_equal(propagator.step(frame), np.zeros((HEIGHT, WIDTH), np.float32))
    propagator.start(frame, mask)
    assert propagator.step(frame).any() and propagator.memory_entries() == 2


def test_memory_stays_bounded_over_a_long_video():
    propagator = sam2_propagator(random_video_model())
    bound = propagator.memory_bound()
    assert bound == 7  # one keyframe and SAM 2's six recent frames
    largest: dict[str, int] = {}
    for index in range(60):
        frame, mask = frame_and_mask(index % 3)
        if index % 5 == 0:
            propagator.start(frame, mask)
        else:
            propagator.step(frame)
        assert propagator.memory_entries() <= bound
        largest = {k: max(v, largest.get(k, 0)) for k, v in session_sizes(propagator).items()}
    assert propagator.memory_entries() == bound - 1  # the keyframe at 55, the 4 frames since, and frame 54
    # nothing kept per frame beyond the object pointers of SAM 2's last 15 frames (12 tracked, 3 keyframes)
    assert largest == {"frames": 0, "vision features": 0, "keyframes": 1, "tracked": 12, "tracked frames": 12, "prompts": 0}


def av2t_with_video_sam2() -> AV2TSAMConfig:
    return dataclasses.replace(AV2TSAMConfig.tiny(), sam=tiny_video_sam2_config().to_dict())


def official_checkpoint(tmp_path, monkeypatch) -> tuple[AV2TSAM, Sam2VideoModel]:
    """An official-format AV2T-SAM checkpoint whose SAM 2 is 128 wide, with every SAM 2 video part (random values),
    converted into ``tmp_path / "converted"``; the AV2T-SAM model and the video model the weights came from."""
    import avseg.models.av2t_sam.convert as convert_module

    reference = randomised(AV2TSAM(av2t_with_video_sam2())).eval()
    official = {k: v for k, v in official_av2t_state(reference).items() if not k.startswith(("model.visual_model.memory_", "model.visual_model.maskmem"))}
    video = random_video_model(seed=1)
    image_keys = set(Sam2Model(tiny_video_sam2_config()).state_dict())
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for key, value in video.state_dict().items():
            if key not in image_keys:
                value.copy_(torch.randn(value.shape, generator=generator) * 0.2)
                official["model.visual_model." + official_sam2_video_name(key)] = value.clone()
    torch.save(official, tmp_path / "official.pth")
    monkeypatch.setattr(convert_module, "release_config", lambda backbone, projector: dataclasses.replace(av2t_with_video_sam2(), projector=projector))
    convert(tmp_path / "official.pth", tmp_path / "converted", projector="mul")
    return reference, video


def test_av2t_sam_propagates_with_every_sam2_weight_of_its_official_checkpoint(tmp_path, monkeypatch):
    reference, video = official_checkpoint(tmp_path, monkeypatch)
    propagator = load_propagator("auto", tmp_path / "converted", {"model": "av2t-sam"}, "cpu")
    loaded = propagator.model.state_dict()
    image_keys = set(Sam2Model(tiny_video_sam2_config()).state_dict())
    sam = reference.sam.state_dict()
    for key, value in video.state_dict().items():
        expected = sam[key] if key in image_keys else value  # image parts: AV2T-SAM's model.safetensors
        assert torch.equal(loaded[key], expected), key
    frame, mask = frame_and_mask()
    propagator.start(frame, mask)
    assert np.isfinite(propagator.step(frame)).all()


def test_a_model_trained_from_a_converted_folder_keeps_its_sam2_memory(tmp_path, monkeypatch):
    from avseg.models.registry import load_model

    official_checkpoint(tmp_path, monkeypatch)
    load_model(tmp_path / "converted").save_pretrained(tmp_path / "trained")  # what avseg train does with init
    kept = (tmp_path / "trained" / MEMORY_FILE).read_bytes()
    assert kept == (tmp_path / "converted" / MEMORY_FILE).read_bytes()
    assert load_propagator("auto", tmp_path / "trained", {"model": "av2t-sam"}, "cpu").memory_bound() == 7


def test_sam2_video_names_are_read_in_both_directions():
    from avseg.models.av2t_sam.convert import SAM2_VIDEO_NAMES

    image_keys = set(Sam2Model(tiny_video_sam2_config()).state_dict())
    for key in random_video_model().state_dict():
        if key not in image_keys:
            official = official_sam2_video_name(key)
            assert SAM2_VIDEO_NAMES.to_ours(official) == key and SAM2_VIDEO_NAMES.to_official(key) == official, key


def test_the_propagator_refuses_missing_and_extra_sam2_memory_weights_in_one_line(tmp_path, monkeypatch):
    official_checkpoint(tmp_path, monkeypatch)
    path = tmp_path / "converted" / MEMORY_FILE
    memory = load_file(str(path))
    del memory["memory_attention.layers.1.linear2.bias"]
    memory["memory_encoder.fuser.layers.0.extra"] = torch.zeros(1)
    save_file(memory, str(path))
    with pytest.raises(AvsegError) as error:
        load_propagator("auto", tmp_path / "converted", {"model": "av2t-sam"}, "cpu")
    message = str(error.value)
    assert "missing: memory_attention.layers.1.linear2.bias" in message
    assert f"unexpected: {MEMORY_FILE}:memory_encoder.fuser.layers.0.extra" in message and "\n" not in message
    path.unlink()
    with pytest.raises(AvsegError, match=f"{MEMORY_FILE}: missing file .*--propagator none"):
        load_propagator("auto", tmp_path / "converted", {"model": "av2t-sam"}, "cpu")


def test_a_named_sam2_video_folder_loads_strictly_and_a_wrong_model_is_one_line(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    random_video_model().save_pretrained(tmp_path / "sam2")
    propagator = load_propagator(str(tmp_path / "sam2"), None, {"model": "teso"}, "cpu")
    frame, mask = frame_and_mask()
    propagator.start(frame, mask)
    assert propagator.step(frame).shape == (HEIGHT, WIDTH)
    weights = load_file(str(tmp_path / "sam2" / "model.safetensors"))
    del weights["memory_encoder.projection.bias"]
    save_file(weights, str(tmp_path / "sam2" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(AvsegError, match=r"weights do not fit Sam2VideoModel; missing: memory_encoder\.projection\.bias$"):
        load_propagator(str(tmp_path / "sam2"), None, {"model": "teso"}, "cpu")
    tiny_clip = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
                           vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
                           projection_dim=8)  # fmt: skip
    CLIPModel(tiny_clip).save_pretrained(tmp_path / "clip")
    with pytest.raises(AvsegError) as error:
        load_propagator(str(tmp_path / "clip"), None, {"model": "teso"}, "cpu")
    assert str(error.value) == f"{tmp_path / 'clip'} is not a SAM 2 video model (config model_type 'clip', expected 'sam2_video')"
    with pytest.raises(AvsegError, match="no such SAM 2 video folder"):
        load_propagator(str(tmp_path / "absent"), None, {"model": "teso"}, "cpu")


def test_auto_and_none():
    assert load_propagator("none", None, {"model": "av2t-sam"}, "cpu") is None
    assert load_propagator("auto", None, {"model": "teso"}, "cpu") is None


def test_zeroshot_sam3_propagates_with_sam3s_tracker_from_its_sam3_folder(tmp_path):
    from transformers import Sam3Model, Sam3VideoModel

    from avseg.models.zero_shot import tiny_sam3_config
    from avseg.propagation.sam3_video import tiny_sam3_video_config

    torch.manual_seed(0)
    Sam3VideoModel(tiny_sam3_video_config()).save_pretrained(tmp_path / "sam3")
    propagator = load_propagator("auto", None, {"model": "zeroshot-sam3", "sam3_model": str(tmp_path / "sam3")}, "cpu")
    frame, mask = frame_and_mask()
    propagator.start(frame, mask)
    for _ in range(2):
        probability = propagator.step(frame)
        assert probability.shape == (HEIGHT, WIDTH) and np.isfinite(probability).all() and probability.std() > 0
    propagator.start(frame, np.zeros_like(mask))
    assert not propagator.step(frame).any() and propagator.memory_entries() == 0
    Sam3Model(tiny_sam3_config()).save_pretrained(tmp_path / "image-only")
    with pytest.raises(AvsegError, match=r"image-only is not a SAM 3 video model \(config model_type 'sam3'"):
        load_propagator("auto", tmp_path / "image-only", {"model": "zeroshot-sam3"}, "cpu")
