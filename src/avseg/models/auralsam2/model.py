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

Trained: the AuralFuser (about 30M parameters at full size); frozen: SAM 2 and VGGish.

**Inference modes** (the release's ``Trainer.valid(process=...)``, all three reported by its inference
script): ``default`` the first of the three multimask outputs; ``iou_select`` the one of highest predicted
IoU; ``iou_occ_select`` that one, with logit 0 (probability 0.5, below the mask threshold) on frames
whose object score is negative. The default here is ``iou_select``: the release's ``main.py`` saves a
checkpoint whenever the ``iou_select`` mIoU improves and names it by that number, so the released
weights are the ``iou_select`` ones. (The paper's own tables could not be read here.)
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
from avseg.errors import AvsegError
from avseg.encoders.vggish import VGGish, VGGishConfig
from avseg.models.auralsam2.aural_fuser import AuralFuser
from avseg.models.auralsam2.decoder_prompts import PromptedTwoWayTransformer
from avseg.models.auralsam2.memory import ClipMemory
from avseg.models.av2t_sam.model import hiera_large_sam2_config, load_strict, read_model_folder, save_model_folder
from avseg.models.av2t_sam.sam import predict_iou_in_fp32
from avseg.propagation.sam2_weights import sam2_video_config, tiny_video_sam2_config

INFERENCE_MODES = ("default", "iou_select", "iou_occ_select")
PAPER_FUSER = {"depths": [3, 6, 12], "audio_depth": 3, "heads": 4, "mlp_ratio": 4, "reduction": 4, "dropout": 0.1}
"""The release's ``configs/auralfuser/architecture.yaml`` (``block_kw`` and ``one_d_kw`` are equal)."""


def hiera_large_sam2_video_config() -> Sam2VideoConfig:
    """SAM 2.0 Hiera-L with its memory (``sam2_hiera_l.yaml``: no SAM 2.1 occlusion embedding or pointer time encoding)."""
    return sam2_video_config(hiera_large_sam2_config(), sam21=False)


@dataclass
class AuralSAM2Config:
    """Sizes of an :class:`AuralSAM2`; the defaults are the release's (SAM 2.0 Hiera-L at 1024, VGGish, the fuser of
    ``architecture.yaml``). ``sam`` holds a ``Sam2VideoConfig`` as a plain dictionary, so the whole configuration is
    one ``config.json``."""

    sam: dict[str, Any] = field(default_factory=lambda: hiera_large_sam2_video_config().to_dict())
    vggish: dict[str, Any] = field(default_factory=lambda: {"channels": list(VGGishConfig().channels), "fc": list(VGGishConfig().fc)})
    fuser: dict[str, Any] = field(default_factory=lambda: dict(PAPER_FUSER))
    inference_mode: str = "iou_select"

    @property
    def num_classes(self) -> int:
        return 2

    @classmethod
    def tiny(cls, **changes: Any) -> AuralSAM2Config:
        """The same classes at toy size: a 64x64 SAM 2 128 wide, a VGGish of 64-d per channel, a shallow fuser."""
        fuser = {"depths": [1, 2, 2], "audio_depth": 1, "heads": 2, "mlp_ratio": 2, "reduction": 4, "dropout": 0.1}
        vggish = {"channels": [4, 8, 8, 8, 16, 16], "fc": [32, 32, 64]}
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
        return config


def check_mode(mode: str, where: str = "inference_mode") -> str:
    if mode not in INFERENCE_MODES:
        raise AvsegError(f"{where}: unknown inference mode {mode!r} (use {', '.join(INFERENCE_MODES)})")
    return mode


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


class AuralSAM2(nn.Module):
    """The AuralSAM2 model (see the module docstring). Inputs: :mod:`avseg.models.auralsam2.inputs`."""

    name = "auralsam2"

    def __init__(self, config: AuralSAM2Config | None = None):
        super().__init__()
        self.config = config = config or AuralSAM2Config()
        check_mode(config.inference_mode)
        self.sam = AudioPromptedSam2(config.sam_config())
        predict_iou_in_fp32(self.sam.mask_decoder.iou_prediction_head)  # it picks the mask (iou_select) and the memory's mask
        self.vggish = VGGish(config.vggish_config())
        width = self.sam.config.vision_config.fpn_hidden_size
        if 2 * self.vggish.config.dim != width:
            raise AvsegError(f"the stereo VGGish embedding ({2 * self.vggish.config.dim}-d) must be as wide as SAM 2's features ({width})")
        sizes = self.sam.backbone_feature_sizes
        patch_sizes = tuple(size[0] // sizes[-1][0] for size in sizes)
        self.aural_fuser = AuralFuser(width=width, grid=sizes[-1][0], patch_sizes=patch_sizes, **config.fuser)
        self.sam.requires_grad_(False)
        self.vggish.requires_grad_(False)
        self.inference_mode = config.inference_mode

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
        return self

    def hear(self, spectrograms: Tensor) -> Tensor:
        """``(T, 2, 96, 64)`` log-mel examples, one per frame and channel -> ``(T, 2 * dim)`` [left | right]."""
        with torch.no_grad():
            return torch.cat([self.vggish(spectrograms[:, 0]), self.vggish(spectrograms[:, 1])], dim=-1)

    def see(self, pixels: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``(T, 3, S, S)`` normalised frames -> SAM 2's FPN levels and their positional encodings (highest resolution first)."""
        with torch.no_grad():
            vision = self.sam.vision_encoder(pixels, return_dict=True)
        return list(vision.fpn_hidden_states), list(vision.fpn_position_encoding)

    def forward(self, pixels: Tensor, spectrograms: Tensor, conditioning_frame: int = 0) -> ClipOutput:
        """One clip: ``(T, 3, S, S)`` frames and ``(T, 2, 96, 64)`` stereo log-mel examples -> :class:`ClipOutput`.

        The frames are one group for the fuser (its audio blocks and fusion attend across them) and one video
        for SAM 2's memory, tracked from ``conditioning_frame`` (0 at inference; the release trains with the
        middle frame, ``T // 2``)."""
        frames = len(pixels)
        if len(spectrograms) != frames:
            raise ValueError(f"{frames} frames but {len(spectrograms)} audio examples")
        pyramid, positions = self.see(pixels)
        visual_prompts, audio_prompts = self.aural_fuser(pyramid, self.hear(spectrograms))
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
        return ClipOutput(masks, iou, scores, visual_prompts, audio_prompts)

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

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> AuralSAM2:
        return cls.from_state(*read_model_folder(folder, AuralSAM2Config))

    @classmethod
    def from_state(cls, config: AuralSAM2Config, state: dict[str, Tensor], source: str) -> AuralSAM2:
        """A model of ``config`` holding exactly ``state`` (every key, of the right shape, or one line naming what differs)."""
        with no_init_weights():  # everything is overwritten; the memory attention's RoPE tables are computed when built
            model = cls(config)
        load_strict(model, state, source)
        return model
