"""AV2T-SAM: audio mapped into the text-embedding space of a text-prompted SAM.

Per frame::

    f        = projector(f_CLAP, f_CLIP)                   (N, 512)   A(l2 f_CLAP) ⊙ V(l2 f_CLIP)
    tokens   = projector.tokens(f)                          (N, 3, 1024) pseudo word embeddings
    prompt   = EVF(BEiT-3(frame@224, tokens) CLS)           (N, 1, 256)  SAM's sparse prompt
    masks    = SAM(frame@1024 | adapters(f), prompt)        (N, 3, 256, 256) multimask logits
    logits   = the mask of highest predicted IoU, bilinear to the label size

Frozen: BEiT-3 and SAM's image encoder (and CLIP and CLAP, outside the model). Trained:
the projector, the adapters, EVF's prompt head, SAM's mask decoder and ``no_mask_embed``
(about 34.3M parameters at full size with SAM 2 Hiera-L, 26.1M of them in the adapters).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import Sam2Config, SamConfig

from avseg.config import build_config
from avseg.errors import AvsegError
from avseg.files import atomic_write, save_tensors, write_json
from avseg.models.av2t_sam.adapters import AudioBiasAdapters, recompute_in_backward
from avseg.models.av2t_sam.beit3 import BEiT3Config
from avseg.models.av2t_sam.evf import EVFPrompt
from avseg.models.av2t_sam.projector import AudioVisualProjector
from avseg.models.av2t_sam.sam import PromptedSam, PromptedSam2, predict_iou_in_fp32

BACKBONES = ("sam2", "sam")
MEMORY_FILE = "sam2_memory.safetensors"
"""SAM 2's video-only weights beside a converted model (see :mod:`avseg.models.av2t_sam.convert`)."""


def hiera_large_sam2_config() -> Sam2Config:
    """SAM 2 Hiera-L as EVF-SAM2 builds it (``sam2_hiera_l.yaml``)."""
    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 144,
                "num_attention_heads": 2,
                "blocks_per_stage": [2, 6, 36, 4],
                "embed_dim_per_stage": [144, 288, 576, 1152],
                "num_attention_heads_per_stage": [2, 4, 8, 16],
                "window_size_per_stage": [8, 4, 16, 8],
                "global_attention_blocks": [23, 33, 43],
                "window_positional_embedding_background_size": [7, 7],
            },
            "backbone_channel_list": [1152, 576, 288, 144],
        },
    )


def vit_huge_sam_config() -> SamConfig:
    """SAM ViT-H as EVF-SAM builds it."""
    return SamConfig(
        vision_config={"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "global_attn_indexes": [7, 15, 23, 31]},
    )


def tiny_sam2_config() -> Sam2Config:
    """The same SAM 2 classes at toy width: 64x64 input, 6 Hiera blocks over 4 stages."""
    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 8,
                "num_attention_heads": 1,
                "image_size": [64, 64],
                "blocks_per_stage": [1, 2, 2, 1],
                "embed_dim_per_stage": [8, 16, 32, 64],
                "num_attention_heads_per_stage": [1, 1, 2, 2],
                "window_size_per_stage": [4, 2, 2, 2],
                "global_attention_blocks": [4],
                "window_positional_embedding_background_size": [2, 2],
            },
            "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": [[16, 16], [8, 8], [4, 4]],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": 64, "patch_size": 16},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    )


def tiny_sam_config() -> SamConfig:
    """The same SAM classes at toy width: 64x64 input, 4 ViT blocks."""
    return SamConfig(
        vision_config={
            "hidden_size": 16,
            "output_channels": 32,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            "window_size": 2,
            "global_attn_indexes": [1, 3],
            "mlp_dim": 32,
            "num_pos_feats": 16,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": 64, "patch_size": 16, "image_embedding_size": 4},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    )


@dataclass
class AV2TSAMConfig:
    """Sizes of an :class:`AV2TSAM`; the defaults are the paper's (EVF-SAM2: BEiT-3-L + SAM 2 Hiera-L).

    ``sam`` and ``beit3`` hold the sub-models' configurations as plain dictionaries, so the
    whole configuration is one ``config.json``.
    """

    backbone: str = "sam2"
    """``sam2`` (EVF-SAM2: Hiera-L, 48 per-block adapters) or ``sam`` (EVF-SAM: ViT-H, 32 adapters with a shared output layer)."""
    projector: str = "mul"
    audio_dim: int = 1024
    vision_dim: int = 512
    common_dim: int = 512
    text_tokens: int = 3
    adapter_hidden_dim: int = 512
    beit3: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(BEiT3Config.large()))
    sam: dict[str, Any] = field(default_factory=lambda: hiera_large_sam2_config().to_dict())

    @property
    def num_classes(self) -> int:
        return 2

    @classmethod
    def evf_sam(cls, **changes: Any) -> AV2TSAMConfig:
        return cls(backbone="sam", sam=vit_huge_sam_config().to_dict(), **changes)

    @classmethod
    def tiny(cls, backbone: str = "sam2", **changes: Any) -> AV2TSAMConfig:
        sam = tiny_sam2_config() if backbone == "sam2" else tiny_sam_config()
        sizes = {"audio_dim": 24, "vision_dim": 16, "common_dim": 16, "adapter_hidden_dim": 16}
        return cls(backbone=backbone, beit3=dataclasses.asdict(BEiT3Config.tiny()), sam=sam.to_dict(), **{**sizes, **changes})

    def beit3_config(self) -> BEiT3Config:
        return BEiT3Config(**self.beit3)

    def sam_config(self) -> Sam2Config | SamConfig:
        if self.backbone not in BACKBONES:
            raise AvsegError(f"backbone: unknown SAM backbone {self.backbone!r} (use {' or '.join(BACKBONES)})")
        return (Sam2Config if self.backbone == "sam2" else SamConfig).from_dict(self.sam)

    def to_dict(self) -> dict[str, Any]:
        return {"model": AV2TSAM.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config.json: ") -> AV2TSAMConfig:
        return build_config(cls, {k: v for k, v in values.items() if k != "model"}, where)


class AV2TSAM(nn.Module):
    """The AV2T-SAM model (see the module docstring). Inputs are preprocessed by :mod:`avseg.models.av2t_sam.inputs`."""

    name = "av2t-sam"

    def __init__(self, config: AV2TSAMConfig | None = None):
        super().__init__()
        self.config = config = config or AV2TSAMConfig()
        self.sam = PromptedSam2(config.sam_config()) if config.backbone == "sam2" else PromptedSam(config.sam_config())
        predict_iou_in_fp32(self.sam.mask_decoder.iou_prediction_head)  # it picks the mask: see there
        beit3 = config.beit3_config()
        self.projector = AudioVisualProjector(config.projector, config.audio_dim, config.vision_dim, config.common_dim, config.text_tokens, beit3.dim)
        self.evf = EVFPrompt(beit3, self.sam.prompt_dim)
        self.adapters = AudioBiasAdapters(
            self.sam.blocks, self.sam.block_widths, config.common_dim, config.adapter_hidden_dim, shared=config.backbone == "sam"
        )
        self.requires_grad_(False)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        self._recompute = False

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.projector.parameters(), *self.adapters.parameters(), *self.evf.to_prompt.parameters(), *self.sam.trainable()]

    @property
    def activation_checkpointing(self) -> bool:
        """Recompute the frozen encoders' activations in backward (gradients flow through them to the
        adapters and the projector, so otherwise all of them are kept)."""
        return self._recompute

    @activation_checkpointing.setter
    def activation_checkpointing(self, enabled: bool) -> None:
        self._recompute = enabled
        recompute_in_backward(self.sam.blocks, enabled)
        self.evf.beit3.gradient_checkpointing = enabled

    def train(self, mode: bool = True) -> AV2TSAM:
        """Frozen encoders stay in eval mode (no dropout or stochastic depth in a frozen network)."""
        super().train(mode)
        self.evf.beit3.eval()
        return self

    def forward(
        self, sam_pixels: torch.Tensor, evf_pixels: torch.Tensor, clip: torch.Tensor, clap: torch.Tensor, size: tuple[int, int] = (224, 224)
    ) -> torch.Tensor:
        """``(N, H, W)`` mask logits at ``size``.

        Args:
            sam_pixels: ``(N, 3, S, S)`` frames for SAM (1024 at full size, ImageNet-normalised).
            evf_pixels: ``(N, 3, 224, 224)`` frames for BEiT-3 (mean = std = 0.5).
            clip: ``(N, vision_dim)`` CLIP image embeddings.
            clap: ``(N, audio_dim)`` CLAP embeddings of each frame's second of audio.
        """
        fused = self.projector.fuse(clap, clip)
        prompt = self.evf(evf_pixels, self.projector.tokens(fused))
        with self.adapters.conditioned(fused):
            masks, iou = self.sam.segment(sam_pixels, prompt)
        best = masks.gather(1, iou.argmax(1).view(-1, 1, 1, 1).expand(-1, 1, *masks.shape[-2:]))
        return self.sam.upsample(best, size)[:, 0]

    def save_pretrained(self, folder: str | Path) -> None:
        """``config.json`` + ``model.safetensors``, and the SAM 2 video weights (``sam2_memory.safetensors``) of the
        folder the model was loaded from, so a model trained from a converted EVF-SAM2 / AV2T-SAM folder keeps
        the video memory of its SAM 2 (:mod:`avseg.propagation` uses it; training never changes it)."""
        save_model_folder(self, self.config.to_dict(), folder)
        memory = getattr(self, "video_memory", None)
        target = Path(folder) / MEMORY_FILE
        if memory is not None and memory.resolve() != target.resolve():
            atomic_write(target, lambda temporary: shutil.copyfile(memory, temporary))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> AV2TSAM:
        config, state, source = read_model_folder(folder, AV2TSAMConfig)
        with torch.device("meta"):  # no random initialisation of ~900M parameters that are overwritten anyway
            model = cls(config)
        load_strict(model, state, source, assign=True)
        memory = Path(folder) / MEMORY_FILE
        model.video_memory = memory if memory.is_file() else None
        return model


def read_model_folder(folder: str | Path, config_class: Any) -> tuple[Any, dict[str, torch.Tensor], str]:
    """The configuration and weights of a folder written by :func:`save_model_folder` (and the weights' path)."""
    folder = Path(folder)
    config = config_class.from_dict(json.loads((folder / "config.json").read_text()), f"{folder / 'config.json'}: ")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise AvsegError(f"{weights}: missing file")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error type for a truncated or foreign file)
        raise AvsegError(f"{weights}: unreadable weights file ({' '.join(str(exc).split())[:200]})") from None
    return config, state, str(weights)


def save_model_folder(model: nn.Module, config: dict[str, Any], folder: str | Path) -> None:
    """``config.json`` + ``model.safetensors`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config)
    tensors, seen = {}, set()
    for key, value in model.state_dict().items():
        # SAM ties its two positional matrices; safetensors stores each tensor on its own.
        tensors[key] = value.clone() if value.data_ptr() in seen else value.contiguous()
        seen.add(value.data_ptr())
    save_tensors(tensors, folder / "model.safetensors")


def listed_problems(problems: dict[str, list[str]], shown: int = 8) -> str:
    """``label: a, b (+n more)`` for each non-empty list of keys, joined by ``; ``: every problem on one line."""
    return "; ".join(
        f"{label}: {', '.join(keys[:shown])}{f' (+{len(keys) - shown} more)' if len(keys) > shown else ''}" for label, keys in problems.items() if keys
    )


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Load every key, of the right shape, or fail with one line naming what differs (``assign``: take the
    tensors themselves, for a model built on the meta device)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        problems = listed_problems({"missing": missing, "unexpected": unexpected, "wrong shape": wrong}, shown=3)
        raise AvsegError(f"{source}: weights do not fit this {type(model).__name__}; {problems}")
    model.load_state_dict(state, strict=True, assign=assign)
