"""VCT: Vision-Centric Transformer for audio-visual segmentation.

Huang et al., "Revisiting Audio-Visual Segmentation with Vision-Centric Transformer", CVPR 2025; the release
spyflying/VCT_AVS at 9a18d2f (Apache-2.0) is the specification (``models/vct_model.py``, ``vct_model_head.py``,
``vision_centric_transformer_decoder.py``, ``configs/*_swinb_384/COMBO_SWINB.yaml``). Per frame::

    pyramid      = SiameseEncoder(frame, mask image)          two Swin-B @ 384, res2..res5       (siamese_encoder.py)
    mask features, res5, res4, res3 = Mask2Former pixel decoder(pyramid)                         (pixel_decoder.py)
    audio        = AudioTokens(log-mel example)               VGGish conv map -> MLP, 6 x 4 tokens (audio_tokens.py)
    queries      = PPQG(mask features)                        vision-derived, + class prototypes (query_generation.py)
    predictions  = VisionCentricDecoder(queries; audio, res5, res4, res3, cycling)               (decoder.py)
    scores       = sum_q softmax(class_q)[:-1] * sigmoid(mask_q)    (Mask2Former's semantic inference)

The three released models differ only in their heads: S4 (``s4_swinb_384``) 2 classes and 23 prototypes (AVSBench's
S4 categories, the release's ``ProtoVCQ(num_classes=23)``), MS3 (``ms3_swinb_384``) 2 classes and no prototypes
(``VCQ``), AVSS (``ss_swinb_384``) 71 classes and 71 prototypes. Frames, and mask images, are 384 x 384 (the query
mixer is a linear map over the 96 x 96 pixel positions, so no other size runs).

Trained: everything but VGGish (the release freezes the audio extractor only; its Swins learn at 0.1 x the rate:
the recipes' ``train.backbone_lr_multiplier`` on :meth:`VCT.parameter_groups`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers.initialization import no_init_weights

from avseg.config import build_config, checked
from avseg.encoders.vggish import VGGishConfig
from avseg.errors import AvsegError, ConfigError
from avseg.models.av2t_sam.model import (
    load_strict,
    read_model_folder,
    save_model_folder,
)
from avseg.models.teso.model import class_scores
from avseg.models.vct.audio_tokens import AudioTokens
from avseg.models.vct.decoder import DecoderOutput, VisionCentricDecoder
from avseg.models.vct.pixel_decoder import pixel_decoder
from avseg.models.vct.siamese_encoder import SiameseEncoder

SWIN_B_384 = {
    "image_size": 384,
    "patch_size": 4,
    "embed_dim": 128,
    "depths": [2, 2, 18, 2],
    "num_heads": [4, 8, 16, 32],
    "window_size": 12,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "drop_path_rate": 0.3,
    "use_absolute_embeddings": False,
}
"""The release's ``SWINB-*-SemanticSegmentation.yaml`` (``MODEL.SWIN``): Swin-B, window 12, ImageNet-22K at 384."""

DEFAULT_MASK_GENERATOR = "semantic-sam-l"
"""The release's generator: Semantic-SAM Swin-L (``swinl_only_sam_many2many.pth``), avseg's port."""

SAM2_MASK_GENERATOR = "facebook/sam2.1-hiera-large"
"""The substitute generator (``mask_generator: facebook/sam2.1-hiera-large``): SAM 2.1 Hiera-L, the largest SAM 2."""

S4_PROTOTYPES = 23
"""The release's ``ProtoVCQ(..., num_classes=23)`` for S4: one prototype per AVSBench S4 category."""

PIXEL_MEAN = (123.675, 116.280, 103.530)
PIXEL_STD = (58.395, 57.120, 57.375)
"""The release's ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` on 0-255 RGB (ImageNet's), for frames and mask images alike."""


@dataclass
class VCTConfig:
    """Sizes of a :class:`VCT`; the defaults are the released S4 model's (``COMBO_SWINB.yaml``)."""

    num_classes: int = checked(2, min=2)
    """``SEM_SEG_HEAD.NUM_CLASSES``, background included: 2 for S4 and MS3, 71 for AVSS."""
    num_prototypes: int = checked(S4_PROTOTYPES, min=0)
    """Class prototypes of the query generation: 23 for S4, 0 for MS3 (no prototypes, no prototype-audio loss), 71 for AVSS."""
    swin: dict[str, Any] = field(default_factory=lambda: dict(SWIN_B_384))
    """A transformers ``SwinConfig`` as a dict (both Swins); its ``image_size`` is the model's input size."""
    width: int = checked(256, min=32)
    """``HIDDEN_DIM`` = ``CONVS_DIM`` = ``MASK_DIM`` = the audio tokens' width (256; the release hard-codes 256 in the
    audio MLP, the query mixer and the prototype attention, so the three must be equal). A multiple of 32 (GroupNorm)."""
    num_queries: int = checked(100, min=1)
    decoder_layers: int = checked(9, min=1)
    """``DEC_LAYERS`` 10 minus the prediction made before the first layer."""
    heads: int = checked(8, min=1)
    feedforward: int = checked(2048, min=1)
    pixel_decoder_layers: int = checked(6, min=1)
    pixel_decoder_feedforward: int = checked(1024, min=1)
    audio_hidden: int = checked(4096, min=1)
    """The audio MLP's hidden width (``audio_mlp(in_dim=512, middle_dim=4096, out_dim=256)``)."""
    vggish: dict[str, Any] = field(default_factory=lambda: {"channels": list(VGGishConfig().channels), "fc": list(VGGishConfig().fc)})
    swin_start: str | None = None
    """Not used by a built model: the transformers Swin (hub name or folder) whose weights both Swins of a *new* model
    start from in ``avseg train`` (the release starts from Swin-B ImageNet-22K at 384, ``swin_base_patch4_window12_384_22k``:
    transformers' ``microsoft/swin-base-patch4-window12-384-in22k``); None: random (the tiny preset)."""
    mask_generator: str = DEFAULT_MASK_GENERATOR
    """Not a weight: what makes the mask images of videos without published ones (:func:`avseg.models.vct.inputs.mask_generator`):
    ``semantic-sam-l`` (the release's Semantic-SAM, ported; default) or ``semantic-sam-t``, a converted Semantic-SAM
    folder or an official ``.pth``; or a transformers SAM 2 (hub name or folder), a substitute whose outputs are
    marked approximate."""

    @property
    def image_size(self) -> int:
        return int(self.swin["image_size"])

    @classmethod
    def s4(cls, **changes: Any) -> VCTConfig:
        return cls(**changes)

    @classmethod
    def ms3(cls, **changes: Any) -> VCTConfig:
        return cls(**{"num_prototypes": 0, **changes})

    @classmethod
    def avss(cls, **changes: Any) -> VCTConfig:
        return cls(**{"num_classes": 71, "num_prototypes": 71, **changes})

    @classmethod
    def tiny(cls, **changes: Any) -> VCTConfig:
        """The same classes at toy size: 64 x 64 frames, a Swin 16 wide with two blocks a stage (shifted windows, the
        last stage padded to its window as at 384), width 32, 8 queries, 2 layers of each decoder, a narrow VGGish."""
        swin = {**SWIN_B_384, "image_size": 64, "embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "window_size": 4, "drop_path_rate": 0.0}
        sizes = {
            "swin": swin,
            "width": 32,
            "num_queries": 8,
            "num_prototypes": 3,
            "decoder_layers": 5,
            "heads": 2,
            "feedforward": 64,
            "pixel_decoder_layers": 1,
            "pixel_decoder_feedforward": 64,
            "audio_hidden": 32,
            "vggish": {"channels": list(VGGishConfig.tiny().channels), "fc": list(VGGishConfig.tiny().fc)},
        }
        return cls(**{**sizes, **changes})

    def vggish_config(self) -> VGGishConfig:
        return VGGishConfig(channels=tuple(self.vggish["channels"]), fc=tuple(self.vggish["fc"]))

    def to_dict(self) -> dict[str, Any]:
        return {"model": VCT.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config.json: ") -> VCTConfig:
        return build_config(cls, {k: v for k, v in values.items() if k != "model"}, where)


@dataclass
class VCTOutput(DecoderOutput):
    """What :meth:`VCT.forward` gives: the decoder's predictions (the last is the output)."""

    @property
    def final_class_logits(self) -> Tensor:
        return self.class_logits[-1]

    @property
    def final_mask_logits(self) -> Tensor:
        return self.mask_logits[-1]


class VCT(nn.Module):
    """The VCT model (see the module docstring). Inputs: :mod:`avseg.models.vct.inputs`."""

    name = "vct"

    def __init__(self, config: VCTConfig | None = None):
        super().__init__()
        self.config = config = config or VCTConfig()
        if config.width % 32 or config.width % config.heads:
            raise ConfigError(f"model_config.width: {config.width} must be a multiple of 32 (GroupNorm) and of heads ({config.heads})")
        self.encoder = SiameseEncoder(config.swin)
        self.pixel_decoder = pixel_decoder(self.encoder.channels, config.width, config.pixel_decoder_layers, config.heads, config.pixel_decoder_feedforward)
        self.audio = AudioTokens(config.vggish_config(), config.width, config.audio_hidden)
        self.decoder = VisionCentricDecoder(
            config.width,
            config.num_classes,
            config.num_queries,
            (config.image_size // 4) ** 2,
            config.num_prototypes,
            config.decoder_layers,
            config.heads,
            config.feedforward,
        )
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN)[:, None, None], persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD)[:, None, None], persistent=False)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The groups of the trainer's per-group settings (:mod:`avseg.engine.optimizer`), as the release's
        ``build_optimizer`` (``train_net.py:173-195``) finds them by name: ``backbone``, both Swins (its ``backbone`` and
        ``pre_sam_backbone``, the trained modules whose names hold "backbone"; the channel weightings, its
        ``scale_factor_module``, and the audio MLP, in its ``sem_seg_head``, are not); ``no_weight_decay``, Swin's
        relative position bias tables (and absolute position embeddings, which Swin-B @ 384 does not use: its
        ``relative_position_bias_table`` / ``absolute_pos_embed``, transformers' ``embeddings.position_embeddings``)."""
        swins = [self.encoder.frame_encoder, self.encoder.mask_encoder]
        no_decay = [
            parameter for swin in swins for name, parameter in swin.named_parameters()
            if name.endswith(("relative_position_bias_table", "embeddings.position_embeddings"))
        ]  # fmt: skip
        return {"backbone": [p for swin in swins for p in swin.parameters()], "no_weight_decay": no_decay}

    def forward(self, pixels: Tensor, mask_images: Tensor, spectrograms: Tensor) -> VCTOutput:
        """``(N, 3, S, S)`` normalised frames, ``(N, 3, S, S)`` normalised mask images, ``(N, 96, 64)`` log-mel
        examples (one per frame) -> :class:`VCTOutput`."""
        size = self.image_size
        if pixels.shape[-2:] != (size, size) or mask_images.shape != pixels.shape:
            raise AvsegError(f"VCT takes {size}x{size} frames and mask images of the same shape, got {tuple(pixels.shape)} and {tuple(mask_images.shape)}")
        if len(spectrograms) != len(pixels):
            raise AvsegError(f"{len(pixels)} frames but {len(spectrograms)} audio examples")
        pyramid = self.encoder(pixels, mask_images)
        decoded = self.pixel_decoder(pyramid)
        audio = self.audio(spectrograms)
        output = self.decoder(audio, list(decoded.multi_scale_features), decoded.mask_features)
        return VCTOutput(**vars(output))

    def class_scores(self, output: VCTOutput, size: tuple[int, int], rows: slice = slice(None)) -> Tensor:
        """``(N, num_classes, *size)`` Mask2Former semantic scores: the query masks upsampled to the input size, combined,
        then resized to ``size`` (the release resizes to 224 for AVSBench's metrics; avseg to the clip's own size)."""
        with torch.autocast(output.final_mask_logits.device.type, enabled=False):
            return class_scores(output.final_class_logits[rows].float(), output.final_mask_logits[rows].float(), (self.image_size,) * 2, size)

    def segmentation_logits(self, output: VCTOutput, size: tuple[int, int], rows: slice = slice(None)) -> Tensor:
        """Binary models: ``(N, H, W)`` ``log s_1 - log s_0``, so that ``logit > 0`` is the release's argmax over its two
        class scores; AVSS: ``(N, C, H, W)`` log-scores (argmax is the release's prediction)."""
        scores = self.class_scores(output, size, rows).clamp(min=1e-6)
        if self.num_classes > 2:
            return scores.log()
        return scores[:, 1].log() - scores[:, 0].log()

    def save_pretrained(self, folder: str | Path) -> None:
        save_model_folder(self, self.config.to_dict(), folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> VCT:
        return cls.from_state(*read_model_folder(folder, VCTConfig))

    @classmethod
    def from_state(cls, config: VCTConfig, state: dict[str, Tensor], source: str) -> VCT:
        """A model of ``config`` holding exactly ``state`` (every key, of the right shape, or one line naming what differs)."""
        with no_init_weights():
            model = cls(config)
        load_strict(model, state, source)
        return model
