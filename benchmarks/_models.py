"""The segmenters with random weights, offline: at ``tiny`` size (the tests' configs) or ``full`` size (the
released architectures, built from their configurations; nothing is downloaded).

Full size, per model (random weights, so speed and memory are real, masks are not):

* ``av2t-sam``: EVF-SAM2 (BEiT-3-L + SAM 2 Hiera-L, :class:`AV2TSAMConfig` defaults), CLIP ViT-B/32
  (``CLIPConfig()``), MS-CLAP 2023's HTS-AT (``ClapAudioConfig()``).
* ``av2t-sam3``: SAM 3 (``Sam3Config()``) with the same CLIP and CLAP.
* ``teso``: Mask2Former Swin-B at 384x384 (the ADE20K semantic model's architecture), VGGish; text cues are
  embedded once per name and cached, so a hashing stand-in embeds them (it does not count in frames/s).
* ``zeroshot-sam3``: SAM 3 and transformers' default ``ClapConfig()`` (HTS-AT, the same family as
  ``laion/larger_clap_general``), with a word-level tokenizer over the vocabulary.
* ``auralsam2``: SAM 2.0 Hiera-L at 1024 with its memory, VGGish and the AuralFuser (:class:`AuralSAM2Config`
  defaults, the released architecture); it tracks each clip as one video.
* ``vct``: VCT's released S4 model (two Swin-B at 384, :class:`VCTConfig` defaults), each clip carrying published
  mask images (:func:`with_mask_images`: flat ADE-coloured regions at 224, as COMBO's files; ``avseg evaluate`` on
  AVSBench with them).
* ``vct-generated``: the same VCT making its mask images, as ``avseg segment`` does for any video, with its default
  generator: Semantic-SAM Swin-L's automatic mask generation at the release's settings (:class:`SemanticSamConfig`
  ``large()``, random weights).
* ``vct-sam2``: the same with the substitute generator, SAM 2's automatic mask generation on a Hiera-L ``Sam2Model``
  (``facebook/sam2.1-hiera-large``'s architecture, random weights).

For both generators, how many masks pass the filters, and so what NMS, small-region removal and painting cost,
depends on weights the random ones do not have (with random weights almost none pass).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from avseg.data.clip import Clip

MODELS = ("av2t-sam", "av2t-sam3", "teso", "zeroshot-sam3", "auralsam2", "vct", "vct-generated", "vct-sam2")
FRAME_SIZE = 224  # AVSBench's frames


def window_clip(frames: int, rate: int = 16000, seed: int = 0) -> Clip:
    """``frames`` random 224x224 frames and as many seconds of noise at -10 dBFS (above every silence gate)."""
    rng = np.random.default_rng(seed)
    return Clip(
        frames=rng.integers(0, 256, (frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8),
        waveform=(0.3 * rng.standard_normal(frames * rate)).astype(np.float32),
        sample_rate=rate,
        meta={"id": "window"},
    )


class HashingTextEncoder:
    """Cue names -> fixed random unit vectors (TeSO's cue embeddings are cached per name; see the module docstring)."""

    def __init__(self, dim: int):
        self.dim = dim

    def encode(self, texts):
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(sum(map(ord, t)))) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def clip_encoder(size: str):
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from avseg.encoders.clip import ClipImageEncoder

    if size == "full":
        return ClipImageEncoder(CLIPModel(CLIPConfig()), CLIPImageProcessorPil(), "clip-vit-b32")
    layer = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    model = CLIPModel(CLIPConfig(text_config=layer, vision_config=dict(layer, image_size=32, patch_size=16), projection_dim=16))
    return ClipImageEncoder(model, CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), "tiny-clip")


def av2t_segmenter(name: str, size: str, device: str):
    from avseg.encoders.clap import ClapAudio, ClapAudioConfig, ClapAudioEncoder
    from avseg.models.av2t_sam.inputs import AV2TInputs
    from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
    from avseg.models.av2t_sam.sam3 import AV2TSAM3, AV2TSAM3Config, sam3_pixels
    from avseg.models.av2t_sam.system import AV2TSAMSegmenter

    image = clip_encoder(size)
    audio = ClapAudioEncoder(ClapAudio(ClapAudioConfig() if size == "full" else ClapAudioConfig.tiny()))
    image.model.to(device), audio.to(device)
    dims = {"audio_dim": audio.dim, "vision_dim": image.dim}
    if name == "av2t-sam3":
        model = AV2TSAM3(AV2TSAM3Config(**dims) if size == "full" else AV2TSAM3Config.tiny(**dims))
        inputs = AV2TInputs(image, audio, model.sam.image_size, None, sam3_pixels)
    else:
        model = AV2TSAM(AV2TSAMConfig(**dims) if size == "full" else AV2TSAMConfig.tiny(**dims))
        inputs = AV2TInputs(image, audio, model.sam.image_size, model.config.beit3_config().img_size)
    return AV2TSAMSegmenter(model, inputs, device)


def swin_base_mask2former() -> dict:
    """``facebook/mask2former-swin-base-ade-semantic``'s architecture (Swin-B, window 12, 150 ADE20K classes)."""
    swin = {
        "model_type": "swin", "image_size": 384, "patch_size": 4, "embed_dim": 128, "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32], "window_size": 12, "drop_path_rate": 0.3, "out_features": ["stage1", "stage2", "stage3", "stage4"],
    }  # fmt: skip
    return {"backbone_config": swin, "num_labels": 150}


def teso_segmenter(size: str, device: str):
    from avseg.encoders.vggish import VGGish, VGGishConfig, VGGishEncoder
    from avseg.models.teso.inputs import TeSOInputs
    from avseg.models.teso.model import TeSO, TeSOConfig
    from avseg.models.teso.segmenter import TeSOSegmenter

    audio = VGGishEncoder(VGGish(VGGishConfig() if size == "full" else VGGishConfig.tiny())).to(device)
    if size == "full":
        config = TeSOConfig(audio_dim=audio.dim, mask2former=swin_base_mask2former(), pretrained=None, train_mask2former=False)
    else:
        config = TeSOConfig.tiny(audio_dim=audio.dim)
    text = HashingTextEncoder(config.text_dim)
    inputs = TeSOInputs(audio, text, config.text_dim, config.image_size, config.audio_window)
    return TeSOSegmenter(TeSO(config), inputs, {"window": [["guitar", "man"]] * 64}, device)


def zero_shot_segmenter(size: str, device: str):
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        Sam3Config,
        Sam3Model,
    )

    from avseg.models.zero_shot import (
        ZeroShotConfig,
        ZeroShotSystem,
        load_vocabulary,
        tiny_clap_config,
        tiny_sam3_config,
        word_tokenizer,
    )

    tokenizer = word_tokenizer()
    clap = ClapModel(ClapConfig() if size == "full" else tiny_clap_config()).eval()
    sam3 = Sam3Model(Sam3Config() if size == "full" else tiny_sam3_config()).eval()
    config = ZeroShotConfig(query_threshold=0.0)  # random weights: keep every query, so SAM 3's decoder always runs
    system = ZeroShotSystem.from_models(
        clap, ClapFeatureExtractor(truncation="rand_trunc"), tokenizer, sam3, tokenizer, config, load_vocabulary("guitar, dog")
    )  # two classes: the more probable one always passes min_probability, so every frame prompts SAM 3
    return system.segmenter(device)


def auralsam2_segmenter(size: str, device: str):
    from avseg.models.auralsam2.model import AuralSAM2, AuralSAM2Config
    from avseg.models.auralsam2.system import AuralSAM2Segmenter

    return AuralSAM2Segmenter(AuralSAM2(AuralSAM2Config() if size == "full" else AuralSAM2Config.tiny()), device)


def with_mask_images(clip: Clip, folder: Path, seed: int = 0) -> Clip:
    """``clip`` with published mask images for its frames, written into ``folder`` as COMBO's are (224 x 224 PNGs in
    ADE's colours; here a 4 x 4 grid of random colours), so that VCT reads them instead of generating them."""
    from PIL import Image

    from avseg.models.vct.mask_images import ade_palette

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(clip.num_frames):
        grid = ade_palette()[rng.integers(0, 150, (4, 4))]
        files.append(str(folder / f"{clip.id}_{seed}_{k}_mask_color.png"))
        Image.fromarray(np.repeat(np.repeat(grid, 56, axis=0), 56, axis=1)).save(files[-1])
    return replace(clip, meta={**clip.meta, "mask_image_files": tuple(files)})


def vct_segmenter(name: str, size: str, device: str):
    from avseg.models.vct.model import VCT, VCTConfig
    from avseg.models.vct.system import VCTSegmenter

    model = VCT(VCTConfig() if size == "full" else VCTConfig.tiny())
    if name == "vct-generated":
        from avseg.models.semantic_sam.config import SemanticSamConfig
        from avseg.models.semantic_sam.generator import SemanticSamMaskGenerator
        from avseg.models.semantic_sam.model import SemanticSam

        config = SemanticSamConfig.large() if size == "full" else SemanticSamConfig.tiny()
        return VCTSegmenter(model, device, generator=SemanticSamMaskGenerator(SemanticSam(config), "semantic-sam-l (random weights)", device=device))
    if name == "vct-sam2":
        from transformers import Sam2Model

        from avseg.models.av2t_sam.model import (
            hiera_large_sam2_config,
            tiny_sam2_config,
        )
        from avseg.models.vct.inputs import mask_generator

        folder = Path(tempfile.mkdtemp(prefix="vct-generator-"))
        Sam2Model(hiera_large_sam2_config() if size == "full" else tiny_sam2_config()).save_pretrained(folder)
        generator = mask_generator(str(folder), device=device)  # the substitute loads by name or folder
        shutil.rmtree(folder)
        return VCTSegmenter(model, device, generator=generator)
    return VCTSegmenter(model, device)


def build_segmenter(name: str, size: str, device: str = "cpu", seed: int = 0):
    """One of :data:`MODELS` at ``size`` (``tiny`` or ``full``) on ``device``, random weights from ``seed``."""
    torch.manual_seed(seed)
    if name in ("av2t-sam", "av2t-sam3"):
        return av2t_segmenter(name, size, device)
    if name == "teso":
        return teso_segmenter(size, device)
    if name == "zeroshot-sam3":
        return zero_shot_segmenter(size, device)
    if name == "auralsam2":
        return auralsam2_segmenter(size, device)
    if name in ("vct", "vct-generated", "vct-sam2"):
        return vct_segmenter(name, size, device)
    raise ValueError(f"unknown model {name!r} (use {', '.join(MODELS)})")
