"""AuralSAM2: a frozen SAM 2 that hears, through the AuralFuser's prompts inside its mask decoder.

Per clip of T frames (Liu et al., "AuralSAM2: Enabling SAM2 Hear Through Pyramid Audio-Visual Feature
Prompting", arXiv:2506.01015; the release yyliu01/AuralSAM2 at 64a16dd is the specification)::

    audio            = [VGGish(left) | VGGish(right)]            (T, 256)   frozen, stereo (mono: duplicated)
    pyramid          = SAM 2 Hiera-L + FPN (frame @ 1024)         3 levels of (T, 256, 256/128/64, ...) frozen
    prompts          = AuralFuser(pyramid, audio)                 per level (T, 4096, 256) and (T, 256)
    for each frame, the conditioning frame first (memory.py):
        features     = the frame's lowest level, + no_memory_embedding (conditioning frame)
                       or conditioned on the clip's memory (other frames)
        masks, IoUs, object score = SAM 2's mask decoder, multimask, no point/box/mask prompt,
                       the prompts inside its two-way transformer (decoder_prompts.py)
        memory       += the frame's binarised best-IoU mask and its object pointer
    logits           = one of the three masks per frame (the inference mode), upsampled

Trained: the AuralFuser (58,279,424 parameters at full size, the count of avseg and of the release alike); frozen: SAM 2 and VGGish.

**Inference modes** (the release's ``Trainer.valid(process=...)``, all three reported by its inference
script): ``default`` the first of the three multimask outputs; ``iou_select`` the one of highest predicted
IoU; ``iou_occ_select`` that one, with logit 0 (probability 0.5, below the mask threshold) on frames
whose object score is negative. The default here is ``iou_select``: the release's ``main.py`` saves a
checkpoint whenever the ``iou_select`` mIoU improves and names it by that number, so the released
weights are the ``iou_select`` ones. (The paper's own tables could not be read here.)

**The Ref-AVS variant** (``text_encoder`` set; the release's ``ref-avs.code``): a frozen DistilRoBERTa
(``distilbert/distilroberta-base``, transformers' ``RobertaModel`` as the release's ``AutoModel``) reads the
referring expression, padded or cut to 25 tokens; its ``last_hidden_state`` (all 25 positions, pads included,
as the release) enters the AuralFuser beside the audio (:mod:`avseg.models.auralsam2.aural_fuser`). Its clip is
tracked from the **middle** frame at inference too (``conditioning_frame: middle``; the release's Ref-AVS
``AVmodel.forward`` passes ``int(frames / 2)`` in training and evaluation alike). The text encoder's weights are
part of the model's (frozen, like SAM 2 and VGGish), its tokenizer is saved beside them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import Sam2VideoConfig, Sam2VideoModel
from transformers.initialization import no_init_weights

from avseg.config import build_config
from avseg.encoders.vggish import VGGish, VGGishConfig
from avseg.errors import AvsegError
from avseg.models.auralsam2.aural_fuser import AuralFuser
from avseg.models.auralsam2.decoder_prompts import PromptedTwoWayTransformer
from avseg.models.auralsam2.memory import ClipMemory
from avseg.models.av2t_sam.model import (
    hiera_large_sam2_config,
    load_strict,
    read_model_folder,
    save_model_folder,
)
from avseg.models.av2t_sam.sam import predict_iou_in_fp32
from avseg.propagation.sam2_weights import sam2_video_config, tiny_video_sam2_config

INFERENCE_MODES = ("default", "iou_select", "iou_occ_select")
CONDITIONING_FRAMES = ("first", "middle")
DEFAULT_TEXT_ENCODER = "distilbert/distilroberta-base"
"""The Ref-AVS release's frozen text encoder (``AutoModel`` / ``AutoTokenizer`` of this hub name)."""
EXPRESSION_TOKENS = 25
"""The release's ``_encode_text``: ``max_length=25, padding="max_length", truncation=True``."""
PAPER_FUSER = {"depths": [3, 6, 12], "audio_depth": 3, "heads": 4, "mlp_ratio": 4, "reduction": 4, "dropout": 0.1}
"""The release's ``configs/auralfuser/architecture.yaml`` (``block_kw`` and ``one_d_kw`` are equal)."""


def hiera_large_sam2_video_config() -> Sam2VideoConfig:
    """SAM 2.0 Hiera-L with its memory (``sam2_hiera_l.yaml``: no SAM 2.1 occlusion embedding or pointer time encoding)."""
    return sam2_video_config(hiera_large_sam2_config(), sam21=False)


def distilroberta_config() -> dict[str, Any]:
    """``distilbert/distilroberta-base``'s configuration (its hub ``config.json``), so a converter can build the
    Ref-AVS model before any download."""
    from transformers import RobertaConfig

    return RobertaConfig(
        vocab_size=50265, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    ).to_dict()


def tiny_text_config(vocab_size: int) -> dict[str, Any]:
    """A RoBERTa of the same class at toy size (pad, bos and eos ids those of :func:`tiny_tokenizer`)."""
    from transformers import RobertaConfig

    return RobertaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=40, type_vocab_size=1, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    ).to_dict()


def tiny_tokenizer() -> Any:
    """The tiny Ref-AVS model's stand-in for DistilRoBERTa's tokenizer: a word-level one (tests, offline runs)."""
    from avseg.models.zero_shot.clap_scorer import word_tokenizer

    return word_tokenizer(["the a an of on in left right first second sounding playing making sound object bell dog guitar"])


@dataclass
class AuralSAM2Config:
    """Sizes of an :class:`AuralSAM2`; the defaults are the release's (SAM 2.0 Hiera-L at 1024, VGGish, the fuser of
    ``architecture.yaml``). ``sam`` holds a ``Sam2VideoConfig`` as a plain dictionary, so the whole configuration is
    one ``config.json``."""

    sam: dict[str, Any] = field(default_factory=lambda: hiera_large_sam2_video_config().to_dict())
    vggish: dict[str, Any] = field(default_factory=lambda: {"channels": list(VGGishConfig().channels), "fc": list(VGGishConfig().fc)})
    fuser: dict[str, Any] = field(default_factory=lambda: dict(PAPER_FUSER))
    inference_mode: str = "iou_select"
    text_encoder: dict[str, Any] | None = None
    """The Ref-AVS variant's frozen text encoder (a ``RobertaConfig`` as a dictionary); None: the AVS models."""
    conditioning_frame: str = "first"
    """Which frame of a clip SAM 2 tracks from at inference: ``first`` (the AVS release) or ``middle`` (Ref-AVS)."""

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def referring(self) -> bool:
        return self.text_encoder is not None

    @classmethod
    def refavs(cls, **changes: Any) -> AuralSAM2Config:
        """The released Ref-AVS model's sizes (preset ``refavs``): the AVS model's, DistilRoBERTa, tracked from the
        middle frame."""
        return cls(**{"text_encoder": distilroberta_config(), "conditioning_frame": "middle", **changes})

    @classmethod
    def tiny_refavs(cls, **changes: Any) -> AuralSAM2Config:
        """The Ref-AVS variant at toy size (preset ``tiny-refavs``)."""
        return cls.tiny(referring=True, **changes)

    @classmethod
    def tiny(cls, referring: bool = False, **changes: Any) -> AuralSAM2Config:
        """The same classes at toy size: a 64x64 SAM 2 128 wide, a VGGish of 64-d per channel, a shallow fuser
        (``referring``: and a RoBERTa 32 wide, tracked from the middle frame)."""
        fuser = {"depths": [1, 2, 2], "audio_depth": 1, "heads": 2, "mlp_ratio": 2, "reduction": 4, "dropout": 0.1}
        vggish = {"channels": [4, 8, 8, 8, 16, 16], "fc": [32, 32, 64]}
        if referring:
            fuser["text_hidden"] = 64
            changes = {"text_encoder": tiny_text_config(len(tiny_tokenizer())), "conditioning_frame": "middle", **changes}
        return cls(sam=sam2_video_config(tiny_video_sam2_config(), sam21=False).to_dict(), vggish=vggish, fuser=fuser, **changes)

    def sam_config(self) -> Sam2VideoConfig:
        return Sam2VideoConfig.from_dict(self.sam)

    def vggish_config(self) -> VGGishConfig:
        return VGGishConfig(channels=tuple(self.vggish["channels"]), fc=tuple(self.vggish["fc"]))

    def to_dict(self) -> dict[str, Any]:
        return {"model": AuralSAM2.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config.json: ") -> AuralSAM2Config:
        config = build_config(cls, {k: v for k, v in values.items() if k != "model"}, where)
        check_mode(config.inference_mode, where.rstrip(": ") + ": inference_mode")
        check_conditioning(config.conditioning_frame, where.rstrip(": ") + ": conditioning_frame")
        return config


def check_mode(mode: str, where: str = "inference_mode") -> str:
    if mode not in INFERENCE_MODES:
        raise AvsegError(f"{where}: unknown inference mode {mode!r} (use {', '.join(INFERENCE_MODES)})")
    return mode


def check_conditioning(frame: str, where: str = "conditioning_frame") -> str:
    if frame not in CONDITIONING_FRAMES:
        raise AvsegError(f"{where}: {frame!r} is not one of {', '.join(CONDITIONING_FRAMES)}")
    return frame


class AudioPromptedSam2(Sam2VideoModel):
    """transformers' ``Sam2VideoModel`` with :class:`PromptedTwoWayTransformer` in its mask decoder (same weights)."""

    def __init__(self, config: Sam2VideoConfig):
        super().__init__(config)
        self.mask_decoder.transformer = PromptedTwoWayTransformer(config.mask_decoder_config)


@dataclass
class ClipOutput:
    """What :meth:`AuralSAM2.forward` gives for one clip of T frames."""

    multimask_logits: Tensor
    """``(T, 3, S/4, S/4)`` SAM 2's three low-resolution masks per frame."""
    iou_scores: Tensor
    """``(T, 3)`` their predicted IoUs."""
    object_scores: Tensor
    """``(T, 1)`` object-score logits."""
    visual_prompts: list[Tensor]
    """per fuser level ``(T, grid*grid, C)`` (for the contrastive loss)."""
    audio_prompts: list[Tensor]
    """per fuser level ``(T, C)``."""
    visual_updates: list[Tensor] = field(default_factory=list)
    """per fuser level ``(T, C, 1, grid, grid)``, the fusion's gated visual update (the Ref-AVS contrastive heads')."""


class AuralSAM2(nn.Module):
    """The AuralSAM2 model (see the module docstring). Inputs: :mod:`avseg.models.auralsam2.inputs`."""

    name = "auralsam2"

    def __init__(self, config: AuralSAM2Config | None = None):
        super().__init__()
        self.config = config = config or AuralSAM2Config()
        check_mode(config.inference_mode)
        check_conditioning(config.conditioning_frame)
        self.sam = AudioPromptedSam2(config.sam_config())
        predict_iou_in_fp32(self.sam.mask_decoder.iou_prediction_head)  # it picks the mask (iou_select) and the memory's mask
        self.vggish = VGGish(config.vggish_config())
        width = self.sam.config.vision_config.fpn_hidden_size
        if 2 * self.vggish.config.dim != width:
            raise AvsegError(f"the stereo VGGish embedding ({2 * self.vggish.config.dim}-d) must be as wide as SAM 2's features ({width})")
        sizes = self.sam.backbone_feature_sizes
        patch_sizes = tuple(size[0] // sizes[-1][0] for size in sizes)
        self.text_encoder = None
        self.tokenizer = None
        """the text encoder's tokenizer (Ref-AVS): set by :meth:`from_pretrained`, the converter or the recipe"""
        text_width = None
        if config.referring:
            from transformers import RobertaConfig, RobertaModel

            self.text_encoder = RobertaModel(RobertaConfig.from_dict(config.text_encoder), add_pooling_layer=False)  # its pooler is never run
            self.text_encoder.requires_grad_(False)
            text_width = self.text_encoder.config.hidden_size
        self.aural_fuser = AuralFuser(width=width, grid=sizes[-1][0], patch_sizes=patch_sizes, text_width=text_width, **config.fuser)
        self.sam.requires_grad_(False)
        self.vggish.requires_grad_(False)
        self.inference_mode = config.inference_mode
        self.train()  # the frozen parts in evaluation mode from the start (the text encoder's dropout must never run)

    @property
    def image_size(self) -> int:
        return self.sam.config.image_size

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.aural_fuser.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> AuralSAM2:
        """SAM 2 and VGGish stay in evaluation mode (the release's ``freeze_sam_parameters``); the fuser trains."""
        super().train(mode)
        self.sam.eval()
        self.vggish.eval()
        if self.text_encoder is not None:
            self.text_encoder.eval()
        return self

    def read(self, expression: str) -> Tensor:
        """The Ref-AVS variant's expression features ``(25, text width)``: the frozen text encoder's last hidden state
        of the expression padded or cut to 25 tokens (the release's ``_encode_text``)."""
        if self.tokenizer is None:
            raise AvsegError("this Ref-AVS model has no tokenizer (its folder lacks the tokenizer files; convert it again)")
        tokens = self.tokenizer(expression, max_length=EXPRESSION_TOKENS, padding="max_length", truncation=True, return_tensors="pt")
        device = self.text_encoder.embeddings.word_embeddings.weight.device
        with torch.no_grad():
            hidden = self.text_encoder(input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)).last_hidden_state
        return hidden[0]

    def default_conditioning_frame(self, frames: int) -> int:
        return frames // 2 if self.config.conditioning_frame == "middle" else 0

    def hear(self, spectrograms: Tensor) -> Tensor:
        """``(T, 2, 96, 64)`` log-mel examples, one per frame and channel -> ``(T, 2 * dim)`` [left | right]."""
        with torch.no_grad():
            return torch.cat([self.vggish(spectrograms[:, 0]), self.vggish(spectrograms[:, 1])], dim=-1)

    def see(self, pixels: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``(T, 3, S, S)`` normalised frames -> SAM 2's FPN levels and their positional encodings (highest resolution first)."""
        with torch.no_grad():
            vision = self.sam.vision_encoder(pixels, return_dict=True)
        return list(vision.fpn_hidden_states), list(vision.fpn_position_encoding)

    def forward(self, pixels: Tensor, spectrograms: Tensor, conditioning_frame: int | None = None, expression: Tensor | None = None) -> ClipOutput:
        """One clip: ``(T, 3, S, S)`` frames and ``(T, 2, 96, 64)`` stereo log-mel examples (and, for the Ref-AVS
        variant, the expression's features from :meth:`read`) -> :class:`ClipOutput`.

        The frames are one group for the fuser (its audio blocks and fusion attend across them) and one video
        for SAM 2's memory, tracked from ``conditioning_frame`` (None: the config's, the first frame for AVS and
        the middle one for Ref-AVS; the release trains with the middle frame, ``T // 2``)."""
        frames = len(pixels)
        if len(spectrograms) != frames:
            raise ValueError(f"{frames} frames but {len(spectrograms)} audio examples")
        if conditioning_frame is None:
            conditioning_frame = self.default_conditioning_frame(frames)
        pyramid, positions = self.see(pixels)
        visual_prompts, audio_rows, visual_updates = self.aural_fuser(pyramid, self.hear(spectrograms), expression)
        audio_prompts = [rows[:frames] for rows in audio_rows]  # Ref-AVS: the expression's rows follow the frames'

        high_resolution = [self.sam.mask_decoder.conv_s0(pyramid[0]), self.sam.mask_decoder.conv_s1(pyramid[1])]
        lowest = pyramid[-1].flatten(2).permute(2, 0, 1)  # (HW, T, C)
        lowest_positions = positions[-1].flatten(2).permute(2, 0, 1)
        memory = ClipMemory(self.sam, frames, conditioning_frame)
        image_positions = self.sam.get_image_wide_positional_embeddings()
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *self.sam.backbone_feature_sizes[-1])
        no_points = lowest.new_zeros(1, 1, 0, lowest.shape[-1])
        outputs: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        for frame in [conditioning_frame, *(t for t in range(frames) if t != conditioning_frame)]:
            features = lowest[:, frame : frame + 1]
            conditioned = memory.condition(frame, features, lowest_positions[:, frame : frame + 1])
            masks, iou, tokens, object_score = self.sam.mask_decoder(
                image_embeddings=conditioned,
                image_positional_embeddings=image_positions,
                sparse_prompt_embeddings=no_points,
                dense_prompt_embeddings=dense,
                multimask_output=True,
                high_resolution_features=[level[frame : frame + 1] for level in high_resolution],
                visual_prompts=[prompt[frame : frame + 1] for prompt in reversed(visual_prompts)],
                audio_prompts=[prompt[frame : frame + 1] for prompt in reversed(audio_prompts)],
            )
            masks, iou, tokens, object_score = masks[:, 0].float(), iou[:, 0].float(), tokens[:, 0], object_score[:, 0].float()
            best = iou.argmax(-1)
            best_mask = F.interpolate(masks[:, best[0]][:, None], (self.image_size, self.image_size), mode="bilinear", align_corners=False)
            memory.remember(frame, features, best_mask, object_score, self._object_pointer(tokens[:, best[0]], object_score))
            outputs[frame] = (masks, iou, object_score)
        masks, iou, scores = (torch.cat([outputs[t][k] for t in range(frames)]) for k in range(3))
        return ClipOutput(masks, iou, scores, visual_prompts, audio_prompts, visual_updates)

    def _object_pointer(self, token: Tensor, object_score: Tensor) -> Tensor:
        """SAM 2's object pointer from the best mask's token, replaced by ``no_object_pointer`` when the object score
        says absent (``fixed_no_obj_ptr``)."""
        appearing = (object_score > 0).to(token.dtype)
        return appearing * self.sam.object_pointer_proj(token) + (1 - appearing) * self.sam.no_object_pointer

    def select(self, output: ClipOutput, size: tuple[int, int] | None = None, mode: str | None = None) -> Tensor:
        """``(T, *size)`` logits of the inference mode's mask per frame: bilinear to the input size (the release's
        high-resolution masks), then to ``size`` when it differs."""
        mode = check_mode(mode or self.inference_mode)
        logits, iou = output.multimask_logits, output.iou_scores
        chosen = torch.zeros(len(iou), dtype=torch.long, device=iou.device) if mode == "default" else iou.argmax(-1)
        picked = logits[torch.arange(len(logits), device=logits.device), chosen][:, None]
        picked = F.interpolate(picked, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if size is not None and tuple(size) != (self.image_size, self.image_size):
            picked = F.interpolate(picked, size, mode="bilinear", align_corners=False)
        picked = picked[:, 0]
        if mode == "iou_occ_select":
            picked = torch.where(output.object_scores[:, :, None] < 0, torch.zeros_like(picked), picked)
        return picked

    def save_pretrained(self, folder: str | Path) -> None:
        save_model_folder(self, self.config.to_dict(), folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> AuralSAM2:
        model = cls.from_state(*read_model_folder(folder, AuralSAM2Config))
        if model.config.referring:
            model.tokenizer = load_tokenizer(folder)
        return model

    @classmethod
    def from_state(cls, config: AuralSAM2Config, state: dict[str, Tensor], source: str) -> AuralSAM2:
        """A model of ``config`` holding exactly ``state`` (every key, of the right shape, or one line naming what differs)."""
        with no_init_weights():  # everything is overwritten; the memory attention's RoPE tables are computed when built
            model = cls(config)
        load_strict(model, state, source)
        return model


def load_tokenizer(source: str | Path) -> Any:
    """The text encoder's tokenizer from a model folder or hub name (one line when it is not there)."""
    from transformers import AutoTokenizer

    from avseg.loading import loading

    with loading(source, "the Ref-AVS text encoder's tokenizer"):
        return AutoTokenizer.from_pretrained(str(source))
