"""TeSO: text cues select what sounds, and prompt Mask2Former's mask queries.

Per frame: SeDAM lets the audio choose among the frame's text cues
(:mod:`.sedam`), PMQS prompts Mask2Former's mask queries with what SeDAM kept
(:mod:`.pmqs`), and a frozen ``Mask2FormerForUniversalSegmentation`` decodes,
with audio-conditioned adapters (:mod:`avseg.models.adapters`) after every
Swin block of the visual encoder, every deformable-attention layer of the
pixel decoder and every layer of the masked-attention decoder.

Heads: the class predictor is replaced by a trainable one over
``num_classes`` classes *including background* (2 for S4/MS3: background and
sounding; 71 for AVSS), plus Mask2Former's no-object class. Per-pixel class
scores are Mask2Former's semantic inference, ``sum_q softmax(class_q) *
sigmoid(mask_q)``; the binary logit is ``log s_sounding - log s_background``,
so ``sigmoid(logit) = s_1 / (s_0 + s_1)``.

Losses: Mask2Former's matched classification + mask (BCE and dice on sampled
points) losses with auxiliary losses, from transformers, plus the SeDAM gate
loss and ``infonce_weight`` x InfoNCE on the frame audio embeddings.

Trainable: SeDAM, PMQS, the adapters and the class head. Frozen: all of
Mask2Former otherwise (and, outside this module, the audio and text encoders),
unless ``train_mask2former`` (the tiny, from-scratch configuration).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from avseg.config import build_config, checked
from avseg.errors import AvsegError, ConfigError
from avseg.files import save_tensors, write_json
from avseg.loading import loading
from avseg.models.adapters import AdapterInjection
from avseg.models.teso.pmqs import PMQS
from avseg.models.teso.sedam import SeDAM, SeDAMOutput, gate_loss, info_nce
from avseg.silence import SILENCE_GATE_DBFS, legacy_gate_setting

PRETRAINED_MASK2FORMER = "facebook/mask2former-swin-base-ade-semantic"


@dataclass
class TeSOConfig:
    """Sizes and loss weights of :class:`TeSO`. Each field says where its value comes from: the paper,
    the official release (GeWu-Lab/Sounding-Object-Segmentation-Preference, where the paper is silent),
    or avseg's choice (why). The release does not implement SeDAM's layers, the dynamic mask, InfoNCE
    or its adapters' code, so most sizes below are avseg's."""

    num_classes: int = 2
    """Paper: a binary head for S4/MS3, 71 classes (background included) for AVSS."""
    text_dim: int = checked(1024, min=1)
    """Paper: ImageBind's text encoder (OpenCLIP ViT-H/14 text tower, 1024-d)."""
    audio_dim: int = checked(128, min=1)
    """Paper: VGGish, 128-d per 0.96 s."""
    sedam_layers: int = 2
    """avseg's choice: the paper has "N" SeDAM layers without a number; the release has one cross-attention.
    SeDAM's width is Mask2Former's ``hidden_dim`` (256; avseg's choice, so its tokens prompt the queries
    without a projection; the release projects to 1024 and back to 256)."""
    pmqs_layers: int = 2
    """avseg's choice: the paper has "N" PMQS layers without a number."""
    heads: int = 8
    """avseg's choice (the release's attention modules use 8 and 4 heads)."""
    audio_window: int = checked(1, min=0)
    """avseg's choice: each frame attends to its own second of audio and this many on each side."""
    silence_gate_dbfs: float | None = SILENCE_GATE_DBFS
    """avseg's choice: the silence gate (:mod:`avseg.silence`) empties the masks of seconds whose level is at
    or below this; None: no gate. A rule applied to the network's output, never part of its training. Saved
    models from before it had ``silence_db`` (the same -60 rule, inside SeDAM); they load with the gate at it."""
    adapter_bottleneck: int = checked(32, min=1)
    """avseg's choice: the paper says "small adapters" without a width; the release's adapter code is not public."""
    image_size: int = checked(384, min=32)
    """avseg's choice: frames are resized to this square for Mask2Former (at 32 pixels its deepest, stride-32 map is 1x1)."""
    gate_weight: float = checked(1.0, min=0)
    """avseg's choice: the learned gate of the dynamic mask is avseg's design (the paper names the mask only)."""
    infonce_weight: float = checked(0.1, min=0)
    """avseg's choice: the paper adds InfoNCE without a weight; the release has no InfoNCE. The matched
    losses (paper: L_cls + L_mask) keep Mask2Former's own weights (class 2, mask BCE 5, dice 5)."""
    infonce_temperature: float = checked(0.1, above=0)
    """avseg's choice (not in the paper)."""
    mask2former: dict[str, Any] = field(default_factory=dict)
    """A ``Mask2FormerConfig`` as a dict; empty means the architecture of ``pretrained``."""
    pretrained: str | None = PRETRAINED_MASK2FORMER
    """Paper: Mask2Former Swin-B trained on ADE20K semantic. Hub name or folder of its weights; None builds
    ``mask2former`` from scratch."""
    train_mask2former: bool = False
    """The paper freezes the pretrained Mask2Former. A Mask2Former built from scratch (offline tests
    and the demo, where no pretrained weights exist) has nothing worth freezing, so it trains."""

    @classmethod
    def tiny(cls, num_classes: int = 2, text_dim: int = 32, audio_dim: int = 16, image_size: int = 64) -> TeSOConfig:
        """The same architecture at toy width, for tests and the offline demo."""
        swin = {
            "model_type": "swin",
            "image_size": image_size,
            "patch_size": 4,
            "embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 4,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
        }
        mask2former = {
            "backbone_config": swin,
            "feature_size": 32,
            "mask_feature_size": 32,
            "hidden_dim": 32,
            "encoder_feedforward_dim": 64,
            "dim_feedforward": 64,
            "encoder_layers": 1,
            "decoder_layers": 4,
            "num_attention_heads": 2,
            "num_queries": 8,
            "train_num_points": 1024,
        }
        return cls(
            num_classes=num_classes,
            text_dim=text_dim,
            audio_dim=audio_dim,
            sedam_layers=1,
            pmqs_layers=1,
            heads=2,
            adapter_bottleneck=8,
            image_size=image_size,
            mask2former=mask2former,
            pretrained=None,
            train_mask2former=True,
        )


@dataclass
class TeSOOutput:
    class_logits: torch.Tensor
    """``(N, Q, num_classes + 1)``, the last class being "no object"."""
    mask_logits: torch.Tensor
    """``(N, Q, h, w)`` at a quarter of the input resolution."""
    auxiliary: list[dict[str, torch.Tensor]]
    semantics: SeDAMOutput


def _build_mask2former(config: TeSOConfig) -> Mask2FormerForUniversalSegmentation:
    if config.pretrained is None:
        model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config.mask2former))
    else:
        with loading(config.pretrained, "Mask2Former", ConfigError):
            model = Mask2FormerForUniversalSegmentation.from_pretrained(config.pretrained, **config.mask2former)
    for module in model.modules():
        if type(module) is nn.GroupNorm:
            module.__class__ = PerImageGroupNorm
    return model


class PerImageGroupNorm(nn.GroupNorm):
    """GroupNorm that also accepts a lone image whose groups hold one value each.

    Below 64 pixels, Mask2Former's deepest (stride 32) map is 1x1, and its
    GroupNorm(32, 32) then sees one value per group in each image: normalised,
    that is 0, the same whether the image comes alone or in a batch.
    ``F.group_norm`` refuses it only for a batch of one (a guard meant for
    training), so a single frame crashed where two frames did not.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.group_norm(input, self.num_groups, self.weight, self.bias, self.eps, torch.backends.cudnn.enabled)


class TeSO(nn.Module):
    name = "teso"

    def __init__(self, config: TeSOConfig):
        super().__init__()
        self.config = config
        self.mask2former = _build_mask2former(config)
        self.mask2former.requires_grad_(config.train_mask2former)
        m2f = self.mask2former.config
        dim = m2f.hidden_dim
        # A new head over our classes (+ no-object), and a criterion sized to match it.
        m2f.num_labels = config.num_classes
        self.mask2former.class_predictor = nn.Linear(dim, config.num_classes + 1)
        self.mask2former.criterion = Mask2FormerLoss(m2f, self.mask2former.weight_dict)

        if config.heads < 1 or dim % config.heads or min(config.sedam_layers, config.pmqs_layers) < 1:
            raise ConfigError(
                f"model_config: heads {config.heads} must divide SeDAM's width {dim}, and sedam_layers "
                f"({config.sedam_layers}) and pmqs_layers ({config.pmqs_layers}) must be at least 1"
            )
        self.sedam = SeDAM(
            config.text_dim, config.audio_dim, dim, config.sedam_layers, config.heads, config.audio_window
        )
        self.pmqs = PMQS(dim, config.pmqs_layers, config.heads)

        pixel_module = self.mask2former.model.pixel_level_module
        swin_blocks = [block for stage in pixel_module.encoder.swin.encoder.layers for block in stage.blocks]
        pixel_layers = list(pixel_module.decoder.encoder.layers)
        decoder_layers = list(self.mask2former.model.transformer_module.decoder.layers)
        condition_dim = 2 * dim
        bottleneck = config.adapter_bottleneck
        self.visual_adapters = AdapterInjection(swin_blocks, [b.layernorm_before.normalized_shape[0] for b in swin_blocks], condition_dim, bottleneck)
        self.pixel_adapters = AdapterInjection(pixel_layers, [m2f.feature_size] * len(pixel_layers), condition_dim, bottleneck)
        self.decoder_adapters = AdapterInjection(decoder_layers, [dim] * len(decoder_layers), condition_dim, bottleneck, batch_dim=1)
        self.activation_checkpointing = False
        """Recompute the visual encoder and pixel decoder in the backward pass instead of keeping
        their activations (gradients still flow through them to the adapters)."""

    def forward(
        self,
        pixel_values: torch.Tensor,
        audio: torch.Tensor,
        audio_valid: torch.Tensor,
        cues: torch.Tensor,
        cue_valid: torch.Tensor,
    ) -> TeSOOutput:
        """One frame per row: ``pixel_values`` ``(N, 3, S, S)``, the rest as in :meth:`SeDAM.forward`."""
        semantics = self.sedam(cues, cue_valid, audio, audio_valid)
        condition = self._adapter_condition(semantics)

        if self.activation_checkpointing and torch.is_grad_enabled():
            pixels = checkpoint(self._pixel_features, pixel_values, condition, use_reentrant=False)
        else:
            pixels = self._pixel_features(pixel_values, condition)
        queries = self.mask2former.model.transformer_module.queries_features.weight
        queries = self.pmqs(queries.expand(len(pixel_values), -1, -1), semantics.tokens, semantics.keep, semantics.audio_embedding)
        with self.decoder_adapters.conditioned(condition):
            decoded = self._decode(pixels.decoder_hidden_states, pixels.decoder_last_hidden_state, queries)

        class_logits = [self.mask2former.class_predictor(h.transpose(0, 1)) for h in decoded.intermediate_hidden_states]
        mask_logits = list(decoded.masks_queries_logits)
        auxiliary = [{"class_queries_logits": c, "masks_queries_logits": m} for c, m in zip(class_logits[:-1], mask_logits[:-1])]
        return TeSOOutput(class_logits[-1], mask_logits[-1], auxiliary, semantics)

    def _pixel_features(self, pixel_values: torch.Tensor, condition: torch.Tensor):
        """Swin and the pixel decoder, with their adapters conditioned on ``condition``.

        One function, so activation checkpointing can recompute it whole in the backward
        pass (the adapters' conditioning is re-entered there too).
        """
        with self.visual_adapters.conditioned(condition), self.pixel_adapters.conditioned(condition):
            return self.mask2former.model.pixel_level_module(pixel_values)

    def _adapter_condition(self, semantics: SeDAMOutput) -> torch.Tensor:
        """``[own audio token ; mean of the kept cue tokens]``."""
        kept = semantics.keep.float()[..., None]
        cue_summary = (semantics.tokens * kept).sum(1) / kept.sum(1).clamp(min=1.0)
        return torch.cat([semantics.audio_embedding, cue_summary], dim=-1)

    def _decode(self, multi_scale: tuple[torch.Tensor, ...], mask_features: torch.Tensor, queries: torch.Tensor):
        """Mask2Former's transformer module, fed our prompted query features instead of its own."""
        module = self.mask2former.model.transformer_module
        features, positions, sizes = [], [], []
        for level in range(module.num_feature_levels):
            feature = multi_scale[level]
            sizes.append(feature.shape[-2:])
            position = module.position_embedder(feature.shape, feature.device, feature.dtype, None).flatten(2)
            projected = module.input_projections[level](feature).flatten(2) + module.level_embed.weight[level][None, :, None]
            positions.append(position.permute(2, 0, 1))
            features.append(projected.permute(2, 0, 1))
        query_positions = module.queries_embedder.weight[:, None].expand(-1, len(queries), -1)
        return module.decoder(
            inputs_embeds=queries.transpose(0, 1),
            multi_stage_positional_embeddings=positions,
            pixel_embeddings=mask_features,
            encoder_hidden_states=features,
            query_position_embeddings=query_positions,
            feature_size_list=sizes,
            return_dict=True,
        )

    def loss(
        self,
        outputs: TeSOOutput,
        mask_labels: list[torch.Tensor],
        class_labels: list[torch.Tensor],
        has_object: torch.Tensor,
        sound_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Mask2Former matched losses, the SeDAM gate loss and InfoNCE; ``total`` is their weighted sum."""
        losses = self.mask2former.get_loss_dict(
            masks_queries_logits=outputs.mask_logits,
            class_queries_logits=outputs.class_logits,
            mask_labels=mask_labels,
            class_labels=class_labels,
            auxiliary_predictions=outputs.auxiliary,
        )
        total = self.mask2former.get_loss(losses)
        semantics = outputs.semantics
        losses["gate"] = gate_loss(semantics.gates, semantics.keep, has_object)
        total = total + self.config.gate_weight * losses["gate"]
        if sound_labels is not None and self.config.infonce_weight > 0:
            losses["infonce"] = info_nce(semantics.audio_embedding, sound_labels, self.config.infonce_temperature)
            total = total + self.config.infonce_weight * losses["infonce"]
        losses["total"] = total
        return losses

    def segmentation_logits(self, outputs: TeSOOutput, size: tuple[int, int], rows: slice = slice(None)) -> torch.Tensor:
        """Logits at ``size`` for ``rows``: binary ``(N, H, W)``, or ``(N, C, H, W)`` log-scores for AVSS."""
        work_size = (self.config.image_size, self.config.image_size)
        with torch.autocast(outputs.mask_logits.device.type, enabled=False):  # fp32 whatever the network ran at: log of bf16 sums is coarse
            scores = class_scores(outputs.class_logits[rows].float(), outputs.mask_logits[rows].float(), work_size, size).clamp(min=1e-6)
        if self.config.num_classes > 2:
            return scores.log()
        return scores[:, 1:].sum(1).log() - scores[:, 0].log()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"model": "teso", **asdict(self.config), "pretrained": None, "mask2former": self.mask2former.config.to_dict()}
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_tensors(state, folder / "model.safetensors")
        write_json(folder / "config.json", config)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> TeSO:
        """Load a folder written by :meth:`save_pretrained`, strictly."""
        folder = Path(folder)
        for name in ("config.json", "model.safetensors"):
            if not (folder / name).is_file():
                raise AvsegError(f"{folder / name}: missing file (not a saved TeSO model folder)")
        try:
            config = json.loads((folder / "config.json").read_text())
        except json.JSONDecodeError:
            raise AvsegError(f"{folder / 'config.json'}: invalid JSON") from None
        if not isinstance(config, dict) or config.pop("model", None) != "teso":
            raise AvsegError(f"{folder / 'config.json'}: not a TeSO model")
        config = legacy_gate_setting(config)
        model = cls(build_config(TeSOConfig, config, f"{folder / 'config.json'}: "))
        weights = folder / "model.safetensors"
        try:
            state = load_file(str(weights))
        except (OSError, SafetensorError) as exc:
            raise AvsegError(f"{weights}: unreadable weights file ({' '.join(str(exc).split())[:200]})") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise AvsegError(f"{weights}: does not match the TeSO config ({' '.join(str(exc).split())[:300]})") from None
        return model


def class_scores(class_logits: torch.Tensor, mask_logits: torch.Tensor, work_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Mask2Former semantic inference ``sum_q softmax(class_q)[:-1] * sigmoid(mask_q)``: ``(N, C, H, W)`` at ``size``.

    As transformers' ``post_process_semantic_segmentation``: the query masks are upsampled to the model's
    input size (``work_size``), combined there, and the ``C`` class maps are resized to ``size``. At a
    video's own resolution this is what keeps the cost down: upsampling all ``Q`` query masks to ``size``
    instead (what avseg did before) held two ``(N, Q, H, W)`` float tensors, 3.7 GB for a 5-frame window of
    720p with Mask2Former's 100 queries, against two class maps here.
    """
    probabilities = class_logits.softmax(-1)[..., :-1]
    masks = nn.functional.interpolate(mask_logits, size=work_size, mode="bilinear", align_corners=False).sigmoid()
    scores = torch.einsum("nqc,nqhw->nchw", probabilities, masks)
    if scores.shape[-2:] == size:
        return scores
    return nn.functional.interpolate(scores, size=size, mode="bilinear", align_corners=False)

