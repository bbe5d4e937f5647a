"""Every segmenter runs the frames of a window as one batch through its frozen encoders (tiny real modules).

Batched and per-frame outputs are compared with a tolerance, not exactly: a batched matrix product or
convolution may block its sums differently from a batch of one (another kernel, another reduction order),
so results can differ in the last bits.
"""

import numpy as np
import pytest
import torch
from test_zero_shot import tiny_tokenizer

from avseg.data.clip import Clip
from avseg.encoders.clap import ClapAudio, ClapAudioConfig, ClapAudioEncoder
from avseg.encoders.vggish import VGGish, VGGishConfig, VGGishEncoder
from avseg.models.av2t_sam.inputs import AV2TInputs
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
from avseg.models.av2t_sam.sam3 import AV2TSAM3, AV2TSAM3Config, sam3_pixels
from avseg.models.av2t_sam.system import AV2TSAMSegmenter
from avseg.models.teso.inputs import TeSOInputs
from avseg.models.teso.model import TeSO, TeSOConfig
from avseg.models.teso.segmenter import TeSOSegmenter
from avseg.models.zero_shot import (
    ZeroShotConfig,
    ZeroShotSystem,
    load_vocabulary,
    tiny_clap_config,
    tiny_sam3_config,
)

WINDOW = 5
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}  # batch position may change reduction order (module docstring)


def window_clip(rate=16000, size=(48, 64)) -> Clip:
    rng = np.random.default_rng(0)
    return Clip(
        frames=rng.integers(0, 256, (WINDOW, *size, 3), dtype=np.uint8),
        waveform=(0.3 * rng.standard_normal(WINDOW * rate)).astype(np.float32),
        sample_rate=rate,
        meta={"id": "window"},
    )


def count_forwards(modules: dict) -> dict:
    """Forward calls of each named module, by forward hooks."""
    calls = dict.fromkeys(modules, 0)
    for name, module in modules.items():
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    return calls


def tiny_clip_encoder():
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from avseg.encoders.clip import ClipImageEncoder

    layer = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    model = CLIPModel(CLIPConfig(text_config=layer, vision_config=dict(layer, image_size=32, patch_size=16), projection_dim=16))
    return ClipImageEncoder(model, CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), "tiny-clip")


def av2t_segmenter(sam3: bool, frames_per_call: int = 8, encoder_batch: int = 64) -> AV2TSAMSegmenter:
    torch.manual_seed(0)
    image, audio = tiny_clip_encoder(), ClapAudioEncoder(ClapAudio(ClapAudioConfig.tiny()))
    image.batch_size = audio.batch_windows = encoder_batch
    dims = {"audio_dim": audio.dim, "vision_dim": image.dim}
    if sam3:
        model = AV2TSAM3(AV2TSAM3Config.tiny(**dims))
        inputs = AV2TInputs(image, audio, model.sam.image_size, None, sam3_pixels)
    else:
        model = AV2TSAM(AV2TSAMConfig.tiny(**dims))
        inputs = AV2TInputs(image, audio, model.sam.image_size, model.config.beit3_config().img_size)
    return AV2TSAMSegmenter(model, inputs, frames_per_call=frames_per_call)


@pytest.mark.parametrize("sam3", [False, True], ids=["av2t-sam", "av2t-sam3"])
def test_av2t_encoders_run_once_per_window_and_match_per_frame_runs(sam3):
    segmenter = av2t_segmenter(sam3)
    model = segmenter.model
    encoders = {"sam image encoder": model.sam.vision_encoder, "clip": segmenter.inputs.image_encoder.model.vision_model}
    encoders["clap"] = segmenter.inputs.audio_encoder.network
    if not sam3:
        encoders["beit3"] = model.evf.beit3
    calls = count_forwards(encoders)
    batched = segmenter.predict([window_clip()])[0]
    assert calls == dict.fromkeys(encoders, 1)

    one_at_a_time = av2t_segmenter(sam3, frames_per_call=1, encoder_batch=1)  # same seed: the same weights
    per_frame = one_at_a_time.predict([window_clip()])[0]
    assert batched.shape == (WINDOW, 48, 64)
    torch.testing.assert_close(batched, per_frame, **TOLERANCE)


def test_teso_encoders_run_once_per_window_and_match_per_frame_runs():
    from test_teso import (
        HashingTextEncoder,  # TeSO's text encoder embeds cue names, once per name, not frames
    )

    torch.manual_seed(0)
    audio = VGGishEncoder(VGGish(VGGishConfig.tiny()))
    model = TeSO(TeSOConfig.tiny(text_dim=HashingTextEncoder.dim, audio_dim=audio.dim))
    inputs = TeSOInputs(audio, HashingTextEncoder(), HashingTextEncoder.dim, model.config.image_size)
    segmenter = TeSOSegmenter(model, inputs, {"window": [["guitar", "dog"]] * WINDOW})
    encoders = {"mask2former backbone": model.mask2former.model.pixel_level_module.encoder, "vggish": audio.network}
    calls = count_forwards(encoders)
    clip = window_clip()
    batched = segmenter.predict([clip])[0]
    assert calls == dict.fromkeys(encoders, 1)

    rows = inputs.frames(clip, segmenter.cues["window"])
    with torch.no_grad():
        per_frame = [model(**rows.select(torch.tensor([t])).model_inputs()) for t in range(WINDOW)]
        per_frame = torch.cat([model.segmentation_logits(out, (48, 64), slice(0, 1)) for out in per_frame])
    torch.testing.assert_close(batched, per_frame, **TOLERANCE)


def zero_shot_segmenter():
    from transformers import ClapFeatureExtractor, ClapModel, Sam3Model

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = ZeroShotConfig(query_threshold=0.0)
    system = ZeroShotSystem.from_models(
        ClapModel(tiny_clap_config()).eval(), ClapFeatureExtractor(truncation="rand_trunc"), tokenizer, Sam3Model(tiny_sam3_config()).eval(), tokenizer,
        config, load_vocabulary("guitar, dog"),
    )  # fmt: skip
    return system.segmenter()


def test_zero_shot_encoders_run_once_per_window_and_match_per_frame_runs(monkeypatch):
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    segmenter = zero_shot_segmenter()
    sam3, clap = segmenter.sam3, segmenter.clap
    encoders = {"sam3 image encoder": sam3.model.vision_encoder, "clap audio": clap.model.audio_model}
    calls = count_forwards(encoders)
    clip = window_clip(rate=48000)
    logits, details = segmenter.predict_with_details([clip])
    assert all(d["prompts"] for d in details[0])  # two classes: the top one always passes, so every frame is prompted
    assert calls == dict.fromkeys(encoders, 1)

    batched_features = sam3.vision_features

    def one_frame_at_a_time(frames):
        parts = [batched_features(frames[t : t + 1]) for t in range(len(frames))]
        joined = lambda name: tuple(torch.cat(levels) for levels in zip(*(getattr(p, name) for p in parts)))  # noqa: E731
        return Sam3VisionEncoderOutput(fpn_hidden_states=joined("fpn_hidden_states"), fpn_position_encoding=joined("fpn_position_encoding"))

    monkeypatch.setattr(sam3, "vision_features", one_frame_at_a_time)
    per_frame = segmenter.predict([clip])[0]
    torch.testing.assert_close(logits[0], per_frame, **TOLERANCE)
