"""AV2T-SAM3: AV2T-SAM's idea applied to SAM 3 directly (model name ``av2t-sam3``).

SAM 3 is prompted by text it has already encoded, so no BEiT-3 is needed in between: the
projector's pseudo tokens go straight into SAM 3's prompt space. Per frame::

    f        = projector(f_CLAP, f_CLIP)                     (N, 512)     A(l2 f_CLAP) ⊙ V(l2 f_CLIP)
    prompt   = projector.tokens(f)                            (N, 3, 256)  SAM 3's text_embeds, all valid
    outputs  = SAM 3(frame@1008 | adapters(f), prompt)        presence (N, 1), query scores (N, 200),
                                                              query masks (N, 200, 288, 288), as logits
    logits   = avs_logits(outputs), bilinear to the label size

**Prompt.** SAM 3's text prompt reaches its DETR encoder, DETR decoder, scoring head and mask
decoder as the CLIP text tower's token features after ``text_projection``: ``(N, L, 256)``
with a padding mask. The pseudo tokens replace exactly those features, so the text tower is
never run and is not built (:class:`PromptedSam3`). They are all valid, so no mask is passed
(SAM 3 reads None as all valid). ``L = 3`` (``prompt_tokens``), as AV2T-SAM's pseudo words;
it is also the length of a one-word SAM 3 prompt with its start and end tokens, so the frozen
DETR layers see prompts as long as those they were trained on.

**Binary mask** (:func:`avs_logits`). SAM 3 scores query ``q`` by
``s_q = sigmoid(pred_logits_q) * sigmoid(presence)``, as its own post-processing does. A pixel
sounds with probability ``p(x) = max_q s_q * sigmoid(mask_q(x))``: the most confident object
that covers it. The output is ``logit(p)``, computed in log space. It is differentiable (the
presence head learns from every pixel; each pixel's best query, its score and its mask, from
that pixel) and empty when SAM 3 says nothing is present: SAM 3 clamps the presence logit to
[-10, 10], so a low presence bounds every logit by about -10. SAM 3's semantic head is not
used; it ignores the presence score, so it cannot say "nothing sounds".

**Clamps.** SAM 3 clamps the presence logit to [-10, 10] and query scores to [-12, 12]; a
plain clamp passes no gradient outside, so a frame whose presence fell below -10 could never
be reopened by a sounding target (nor a query score below -12). The clamps are moved here
(:func:`straight_through_clamp`): the same values forward, so outputs are exactly SAM 3's,
and an identity gradient. A soft clamp (``10 tanh(x / 10)``) was not chosen: it changes
every value in the normal range (5 -> 4.6), so released SAM 3 weights would score differently.

**Trained** (30.3M at full size): the projector (1.4M), 32 per-block adapters on SAM 3's ViT
blocks, all 1024 wide (25.2M), and the heads that make the outputs above (3.6M): the mask
decoder without its semantic head, the query scoring head and the presence head. **Frozen**:
SAM 3's ViT and neck, its DETR encoder and decoder (the prompt-image fusion, as BEiT-3 is in
AV2T-SAM), its box head and geometry encoder (not used here), and CLIP and CLAP outside the
model. SAM 3 stays in eval mode while training: its frozen DETR layers have dropout.

**Frames** are prepared as SAM 3's image processor does, without torchvision (:func:`sam3_pixels`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, Sam3Config, Sam3Model, Sam3VideoModel
from transformers.core_model_loading import revert_weight_conversion
from transformers.initialization import no_init_weights
from transformers.modeling_outputs import BaseModelOutputWithPooling

from avseg.config import build_config
from avseg.errors import AvsegError
from avseg.loading import loading
from avseg.models.av2t_sam.adapters import AudioBiasAdapters, recompute_in_backward
from avseg.models.av2t_sam.model import (
    listed_problems,
    load_strict,
    read_model_folder,
    save_model_folder,
)
from avseg.models.av2t_sam.projector import AudioVisualProjector
from avseg.models.zero_shot import sam3_pixel_values, tiny_sam3_config


def sam3_pixels(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` frames (on any device) -> SAM 3's ``(N, 3, size, size)`` input on that device,
    by :func:`avseg.models.zero_shot.sam3_pixel_values` (resized, whole grey levels, mean = std = 0.5)."""
    return sam3_pixel_values(frames.cpu().numpy(), size).to(frames.device)


def straight_through_clamp(logits: torch.Tensor, bound: float) -> torch.Tensor:
    """``logits`` clamped to ``[-bound, bound]`` in value (exactly), with the identity as gradient."""
    return logits.clamp(-bound, bound).detach() + (logits - logits.detach())


def avs_logits(presence: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``logit(p)`` with ``p = sigmoid(presence) * max_q sigmoid(scores_q) * sigmoid(masks_q)`` per pixel.

    Args:
        presence: ``(N, 1)`` presence logits.
        scores: ``(N, Q)`` query logits.
        masks: ``(N, Q, h, w)`` query mask logits.

    Returns ``(N, h, w)`` logits; ``log p`` stays below 0 because SAM 3 clamps both logits, so the
    logit is finite.
    """
    log_p = F.logsigmoid(presence)[..., None] + (F.logsigmoid(scores)[..., None, None] + F.logsigmoid(masks)).amax(1)
    return log_p - torch.log(-torch.expm1(log_p))


class PromptedSam3(Sam3Model):
    """SAM 3 (transformers :class:`Sam3Model`, unchanged) prompted by precomputed tokens, with :meth:`segment`.

    The CLIP text tower and its projection are removed: prompts arrive as the projection's output
    (``text_embeds``), so they never run, and they are 354M of SAM 3's 840M parameters. SAM 3's
    presence and score clamps are switched off in its modules and applied in :meth:`segment`
    (see the module docstring).
    """

    _keys_to_ignore_on_load_unexpected = [*Sam3Model._keys_to_ignore_on_load_unexpected, r"text_encoder\.", r"text_projection\."]

    def __init__(self, config: Sam3Config):
        super().__init__(config)
        del self.text_encoder, self.text_projection
        self.presence_bound = self.detr_decoder.clamp_presence_logit_max_val
        self.score_bound = self.dot_product_scoring.clamp_max_val
        self.detr_decoder.clamp_presence_logit_max_val = math.inf
        self.dot_product_scoring.clamp_logits = False

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def prompt_dim(self) -> int:
        """Width of a prompt token: what ``text_projection`` gave, the DETR encoder's width (256)."""
        return self.config.detr_encoder_config.hidden_size

    @property
    def blocks(self) -> nn.ModuleList:
        return self.vision_encoder.backbone.layers

    @property
    def block_widths(self) -> list[int]:
        backbone = self.config.vision_config.backbone_config
        return [backbone.hidden_size] * backbone.num_hidden_layers

    def trainable(self) -> list[nn.Parameter]:
        """The output heads: mask decoder (but its semantic head), query scoring, presence.

        The pixel decoder's last stage (0.6M) never runs, in SAM 3 itself too: it has one upsampling
        stage more than it is given feature levels."""
        mask_decoder = [module for name, module in self.mask_decoder.named_children() if name != "semantic_projection"]
        heads = [*mask_decoder, self.dot_product_scoring, self.detr_decoder.presence_head, self.detr_decoder.presence_layer_norm]
        return [p for head in heads for p in head.parameters()]

    def segment(self, pixel_values: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` frames and ``(N, L, prompt_dim)`` prompt tokens -> ``(N, 4S/14, 4S/14)`` AVS logits
        (SAM 3's mask resolution, 288x288 at full size).

        ``text_embeds`` goes in as a model output: ``Sam3Model`` reads its ``pooler_output`` (transformers
        documents a tensor there)."""
        outputs = self(pixel_values=pixel_values, text_embeds=BaseModelOutputWithPooling(pooler_output=prompt))
        presence = straight_through_clamp(outputs.presence_logits, self.presence_bound)
        return avs_logits(presence, straight_through_clamp(outputs.pred_logits, self.score_bound), outputs.pred_masks)


@dataclass
class AV2TSAM3Config:
    """Sizes of an :class:`AV2TSAM3`; the defaults are SAM 3's released architecture and the paper's encoders
    (MS-CLAP, 1024-d; CLIP ViT-B/32, 512-d). ``sam3`` is a ``Sam3Config`` as a plain dictionary."""

    projector: str = "mul"
    audio_dim: int = 1024
    vision_dim: int = 512
    common_dim: int = 512
    prompt_tokens: int = 3
    """L, the number of pseudo prompt tokens (see the module docstring)."""
    adapter_hidden_dim: int = 512
    sam3: dict[str, Any] = field(default_factory=lambda: Sam3Config().to_dict())

    @property
    def num_classes(self) -> int:
        return 2

    @classmethod
    def tiny(cls, **changes: Any) -> AV2TSAM3Config:
        """The same classes at toy width: SAM 3 with a 2-block, 32-wide ViT on 112x112 frames."""
        sizes = {"audio_dim": 24, "vision_dim": 16, "common_dim": 16, "adapter_hidden_dim": 16}
        return cls(sam3=tiny_sam3_config().to_dict(), **{**sizes, **changes})

    def sam3_config(self) -> Sam3Config:
        return Sam3Config.from_dict(self.sam3)

    def to_dict(self) -> dict[str, Any]:
        return {"model": AV2TSAM3.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config.json: ") -> AV2TSAM3Config:
        return build_config(cls, {k: v for k, v in values.items() if k != "model"}, where)


class AV2TSAM3(nn.Module):
    """The AV2T-SAM3 model (see the module docstring). Inputs are preprocessed by :mod:`avseg.models.av2t_sam.inputs`."""

    name = "av2t-sam3"

    def __init__(self, config: AV2TSAM3Config | None = None):
        super().__init__()
        self.config = config = config or AV2TSAM3Config()
        self.sam = PromptedSam3(config.sam3_config()).eval()
        self.projector = AudioVisualProjector(config.projector, config.audio_dim, config.vision_dim, config.common_dim, config.prompt_tokens, self.sam.prompt_dim)
        self.adapters = AudioBiasAdapters(self.sam.blocks, self.sam.block_widths, config.common_dim, config.adapter_hidden_dim)
        self.requires_grad_(False)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        self._recompute = False

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.projector.parameters(), *self.adapters.parameters(), *self.sam.trainable()]

    @property
    def activation_checkpointing(self) -> bool:
        """Recompute the ViT blocks' activations in backward (gradients flow through them to the adapters)."""
        return self._recompute

    @activation_checkpointing.setter
    def activation_checkpointing(self, enabled: bool) -> None:
        self._recompute = enabled
        recompute_in_backward(self.sam.blocks, enabled)

    def train(self, mode: bool = True) -> AV2TSAM3:
        """SAM 3 stays in eval mode: no dropout in its frozen DETR layers, and its heads learn as they predict."""
        super().train(mode)
        self.sam.eval()
        return self

    def forward(self, sam_pixels: torch.Tensor, clip: torch.Tensor, clap: torch.Tensor, size: tuple[int, int] = (224, 224)) -> torch.Tensor:
        """``(N, H, W)`` mask logits at ``size``.

        Args:
            sam_pixels: ``(N, 3, S, S)`` frames for SAM 3 (1008 at full size, mean = std = 0.5).
            clip: ``(N, vision_dim)`` CLIP image embeddings.
            clap: ``(N, audio_dim)`` CLAP embeddings of each frame's second of audio.
        """
        fused = self.projector.fuse(clap, clip)
        with self.adapters.conditioned(fused):
            logits = self.sam.segment(sam_pixels, self.projector.tokens(fused))
        return F.interpolate(logits[:, None], size, mode="bilinear", align_corners=False)[:, 0]

    def save_pretrained(self, folder: str | Path) -> None:
        save_model_folder(self, self.config.to_dict(), folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> AV2TSAM3:
        config, state, source = read_model_folder(folder, AV2TSAM3Config)
        # Not on the meta device: SAM 3's ViT computes non-persistent buffers (RoPE) when built.
        with no_init_weights():
            model = cls(config)
        load_strict(model, state, source)
        return model

    @classmethod
    def from_sam3(cls, name_or_folder: str = "facebook/sam3", **changes: Any) -> AV2TSAM3:
        """SAM 3's released weights (a transformers hub name or folder, read by :func:`read_sam3`) with a fresh
        projector and adapters: the start for training. ``changes`` are :class:`AV2TSAM3Config` fields other than ``sam3``."""
        config, state = read_sam3(name_or_folder)
        model = cls(AV2TSAM3Config(sam3=config.to_dict(), **changes))
        load_strict(model.sam, state, name_or_folder)
        return model


SAM3_LAYOUTS = {"sam3": (Sam3Model, ""), "sam3_video": (Sam3VideoModel, "detector_model.")}
"""transformers model type -> the class whose every weight a SAM 3 folder must hold, and the prefix of its
detector (the released ``facebook/sam3`` is a ``Sam3VideoModel``: detector, plus ``tracker_model.`` and
``tracker_neck.`` for video tracking)."""


def _snapshot(name_or_folder: str) -> Path:
    if Path(name_or_folder).is_dir():
        return Path(name_or_folder)
    if Path(name_or_folder).exists() or name_or_folder.startswith((".", "/", "~")) or name_or_folder.count("/") != 1:
        raise AvsegError(f"{name_or_folder}: no such SAM 3 folder (give a transformers folder, or a hub name such as facebook/sam3)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name_or_folder, allow_patterns=["*.json", "*.safetensors"]))


def read_sam3(name_or_folder: str) -> tuple[Sam3Config, dict[str, torch.Tensor]]:
    """SAM 3's configuration and the weights of :class:`PromptedSam3` from a transformers folder or hub name.

    As strict as the AV2T-SAM converter: the files must hold exactly the weights of the model their
    ``config.json`` names (:data:`SAM3_LAYOUTS`), of its shapes, named as transformers saves them or
    as the model's own state dict (transformers loads both), or one error names every extra, missing
    and misshapen key. The text tower and the video tracker are then left out (not used)."""
    with loading(name_or_folder, "SAM 3"):
        folder = _snapshot(name_or_folder)
        config = AutoConfig.from_pretrained(str(folder))
    if config.model_type not in SAM3_LAYOUTS:
        raise AvsegError(f"{name_or_folder}: holds a {config.model_type} model, not SAM 3 ({' or '.join(SAM3_LAYOUTS)})")
    model_class, prefix = SAM3_LAYOUTS[config.model_type]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise AvsegError(f"{name_or_folder}: no .safetensors weights")
    shapes = {}
    for file in files:
        with safe_open(str(file), "pt") as weights:
            shapes.update({key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()})
    with torch.device("meta"):
        model = model_class(config)
    # transformers saves the tracker as tracker_model.tracker_model.*, and loads that or the module's own names
    namings = (model.state_dict(), revert_weight_conversion(model, model.state_dict()))
    expected = min(({k: tuple(v.shape) for k, v in names.items()} for names in namings), key=lambda names: len(set(names) ^ set(shapes)))
    problems = listed_problems(
        {
            "unexpected": sorted(set(shapes) - set(expected)),
            "missing": sorted(set(expected) - set(shapes)),
            "wrong shape": sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k]),
        }
    )
    if problems:
        raise AvsegError(f"{name_or_folder}: does not fit SAM 3 ({config.model_type}); {problems}")
    state = {}
    for file in files:
        with safe_open(str(file), "pt") as weights:
            for key in weights.keys():
                inner = key[len(prefix) :]
                if key.startswith(prefix) and not inner.startswith(("text_encoder.", "text_projection.")):
                    state[inner] = weights.get_tensor(key)
    return config.detector_config if prefix else config, state
