"""Official checkpoints -> avseg model folders (``config.json`` + ``model.safetensors``).

Two sources:

- an **AV2T-SAM** checkpoint of the official code (``bok-bok/AV2T-SAM``, the state dict of its
  ``AVTSAM`` module: ``model.visual_model.*`` SAM 2 or SAM, ``model.mm_extractor.beit3.*``,
  ``model.text_hidden_fcs.*``, ``projector.*``, ``audio_prompt_generator.*``);
- the **EVF-SAM2 / EVF-SAM** hub weights (``YxZhang/evf-sam2-multitask``, ``YxZhang/evf-sam-multitask``:
  the same keys without the ``model.`` prefix and without projector or adapters), the starting
  point for training: the projector and adapters are then freshly initialised.

Every official key is either mapped to exactly one model key (SAM 2's prompt positional
matrix to the two places transformers keeps it) or is one of SAM 2's video-tracking parts
(memory attention and encoder, object pointers), which image segmentation never runs and
which are dropped by name. Every model key must be filled. Anything else is an error that
lists the unmatched keys. Files are read with ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.errors import AvsegError
from avseg.loading import failure_reason, quiet_loading
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig, load_strict
from avseg.models.registry import save_system_info

SAM2_VIDEO_ONLY = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "mask_downsample.",
    "no_obj_embed_spatial",
)


def _mlp(depth: int) -> Callable[[re.Match], str]:
    """An official ``MLP``'s ``layers.i`` -> transformers' ``proj_in`` / ``layers.(i-1)`` / ``proj_out``."""

    def rename(match: re.Match) -> str:
        index = int(match.group(2))
        name = "proj_in" if index == 0 else "proj_out" if index == depth - 1 else f"layers.{index - 1}"
        return f"{match.group(1)}{name}."

    return rename


def _rules(rules: list[tuple[str, str | Callable]]) -> Callable[[str], str | None]:
    compiled = [(re.compile(pattern), target) for pattern, target in rules]

    def rename(key: str) -> str | None:
        for pattern, target in compiled:
            if pattern.match(key):
                return pattern.sub(target, key, count=1)
        return None

    return rename


_PROMPT_ENCODER_RULES: list[tuple[str, str | Callable]] = [
    (r"^(?:sam_)?prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^(?:sam_)?prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^(?:sam_)?prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^(?:sam_)?prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^(?:sam_)?prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^(?:sam_)?prompt_encoder\.(no_mask_embed|not_a_point_embed)\.", r"prompt_encoder.\1."),
]
_MASK_DECODER_RULES: list[tuple[str, str | Callable]] = [
    (r"^(?:sam_)?mask_decoder\.transformer\.(layers\.\d+\.)norm(\d)\.", r"mask_decoder.transformer.\1layer_norm\2."),
    (r"^(?:sam_)?mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"^(?:sam_)?mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^(?:sam_)?mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^(?:sam_)?mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
]

# SAM 2 (the official ``sam2`` package, as vendored by EVF-SAM2) -> transformers ``Sam2Model``.
_sam2_key = _rules(
    [
        (r"^image_encoder\.trunk\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
        (r"^image_encoder\.trunk\.(pos_embed|pos_embed_window)$", r"vision_encoder.backbone.\1"),
        (r"^image_encoder\.trunk\.(blocks\.\d+\.)norm(\d)\.", r"vision_encoder.backbone.\1layer_norm\2."),
        (r"^image_encoder\.trunk\.(blocks\.\d+\.mlp\.)layers\.(\d)\.", lambda m: "vision_encoder.backbone." + _mlp(2)(m)),
        (r"^image_encoder\.trunk\.(blocks\.\d+\.(?:attn\.qkv|attn\.proj|proj))\.", r"vision_encoder.backbone.\1."),
        (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
        (r"^no_mem_embed$", "no_memory_embedding"),
        *_PROMPT_ENCODER_RULES,
        (r"^sam_mask_decoder\.(transformer\.layers\.\d+\.mlp\.)layers\.(\d)\.", lambda m: "mask_decoder." + _mlp(2)(m)),
        (r"^sam_mask_decoder\.(transformer\..*)\.out_proj\.", r"mask_decoder.\1.o_proj."),
        *_MASK_DECODER_RULES,
        (r"^sam_mask_decoder\.((?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.)layers\.(\d)\.", lambda m: "mask_decoder." + _mlp(3)(m)),
        (r"^sam_mask_decoder\.((?:transformer|iou_token|mask_tokens|obj_score_token|conv_s0|conv_s1)\b)", r"mask_decoder.\1"),
    ]
)

# SAM (``segment_anything``, as vendored by EVF-SAM) -> transformers ``SamModel``.
_sam_key = _rules(
    [
        (r"^image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
        (r"^image_encoder\.pos_embed$", "vision_encoder.pos_embed"),
        (r"^image_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
        (r"^image_encoder\.blocks\.(\d+)\.(attn|mlp)\.", r"vision_encoder.layers.\1.\2."),
        (r"^image_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
        (r"^image_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
        (r"^image_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
        (r"^image_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
        (r"^prompt_encoder\.point_embeddings\.(\d)\.", r"prompt_encoder.point_embed.\1."),
        *_PROMPT_ENCODER_RULES,
        *_MASK_DECODER_RULES,
        (r"^mask_decoder\.((?:output_hypernetworks_mlps\.\d+|iou_prediction_head)\.)layers\.(\d)\.", lambda m: "mask_decoder." + _mlp(3)(m)),
        (r"^mask_decoder\.((?:transformer|iou_token|mask_tokens)\b)", r"mask_decoder.\1"),
    ]
)

_POSITIONAL = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")

_av2t_key = _rules(
    [
        (r"^projector\.(audio_proj|vision_proj)\.", r"projector.\1."),
        (r"^projector\.to_text_space\.", "projector.to_tokens."),
        (r"^audio_prompt_generator\.lightweight_mlp_(\d+)\.", r"adapters.mlps.\1."),
        (r"^audio_prompt_generator\.shared_mlp\.", "adapters.shared_out."),
        (r"^text_hidden_fcs\.0\.", "evf.to_prompt."),
        (r"^mm_extractor\.beit3\.", "evf.beit3."),
    ]
)


def map_official(official: Mapping[str, torch.Tensor], backbone: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official EVF-SAM / AV2T-SAM keys (``model.`` prefix already removed) -> avseg keys, and the unmatched official keys."""
    mapped: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    sam_key = _sam2_key if backbone == "sam2" else _sam_key
    stacked_points: dict[int, torch.Tensor] = {}
    for key, value in official.items():
        if key.startswith("visual_model."):
            inner = key[len("visual_model.") :]
            if backbone == "sam2" and inner.startswith(SAM2_VIDEO_ONLY):
                continue
            if inner.endswith("pe_layer.positional_encoding_gaussian_matrix"):
                mapped.update({f"sam.{name}": value for name in _POSITIONAL})
                continue
            point = re.match(r"^sam_prompt_encoder\.point_embeddings\.(\d)\.weight$", inner)
            if backbone == "sam2" and point:
                stacked_points[int(point.group(1))] = value
                continue
            target = sam_key(inner)
            target = f"sam.{target}" if target else None
        else:
            target = _av2t_key(key)
        if target is None:
            unmatched.append(key)
        else:
            mapped[target] = value
    if stacked_points:
        mapped["sam.prompt_encoder.point_embed.weight"] = torch.cat([stacked_points[i] for i in sorted(stacked_points)])
    return mapped, unmatched


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.bin`` (``weights_only``), a ``.safetensors`` file, or a hub folder of either
    (sharded ones included). A ``state_dict``/``model`` wrapper and DataParallel's ``module.`` prefix are removed."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise AvsegError(f"{path}: no .safetensors or pytorch_model*.bin weights in this folder")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(read_weights(file))
        return state
    if not path.is_file():
        raise AvsegError(f"{path}: missing file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with quiet_loading():
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable or unsafe file is the same one-line error
        raise AvsegError(f"{path}: not a readable checkpoint ({failure_reason(exc)})") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AvsegError(f"{path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _strip_model_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official ``AVTSAM`` keeps EVF under ``model.``; the EVF hub files do not."""
    return {k[len("model.") :] if k.startswith("model.") else k: v for k, v in state.items()}


def _detect_backbone(state: Mapping[str, torch.Tensor], path: Path) -> str:
    if any(k.startswith("visual_model.image_encoder.trunk.") for k in state):
        return "sam2"
    if any(k.startswith("visual_model.image_encoder.blocks.") for k in state):
        return "sam"
    raise AvsegError(f"{path}: no SAM 2 (image_encoder.trunk) or SAM (image_encoder.blocks) weights; not an EVF-SAM or AV2T-SAM checkpoint")


def release_config(backbone: str, projector: str) -> AV2TSAMConfig:
    """The released models' sizes: EVF-SAM2 (BEiT-3-L + SAM 2 Hiera-L) or EVF-SAM (BEiT-3-L + SAM ViT-H)."""
    return AV2TSAMConfig(projector=projector) if backbone == "sam2" else AV2TSAMConfig.evf_sam(projector=projector)


def convert(path: str | Path, out: str | Path, kind: str = "av2t-sam", projector: str | None = None, seed: int = 0) -> AV2TSAM:
    """Convert an official checkpoint (``kind``: ``av2t-sam`` or ``evf-sam``, the EVF-SAM2 / EVF-SAM hub weights)
    into a model folder at ``out``; returns the model.

    The official ``AVTSAM`` builds both projections in every mode; ``projector`` picks the mode
    (default: ``mul``, as the paper), and the projection that mode does not use is the one kind of
    official key dropped (named in the error if the mode needs a projection the file lacks).
    """
    path = Path(path)
    state = _strip_model_prefix(read_weights(path))
    backbone = _detect_backbone(state, path)
    mode = projector or "mul"
    config = release_config(backbone, mode)
    mapped, unmatched = map_official(state, backbone)
    if kind == "av2t-sam":
        unused = {"mul": (), "clap": ("projector.vision_proj.",), "clip": ("projector.audio_proj.",)}[mode]
        mapped = {k: v for k, v in mapped.items() if not k.startswith(unused)}
    elif kind != "evf-sam":
        raise AvsegError(f"unknown checkpoint kind {kind!r} (use av2t-sam or evf-sam)")
    if unmatched:
        shown = ", ".join(unmatched[:8]) + (f" (+{len(unmatched) - 8} more)" if len(unmatched) > 8 else "")
        raise AvsegError(f"{path}: {len(unmatched)} official keys have no place in AV2T-SAM: {shown}")
    if kind == "evf-sam":
        if any(k.startswith(("projector.", "adapters.")) for k in mapped):
            raise AvsegError(f"{path}: holds AV2T-SAM projector/adapter weights; convert it as av2t-sam")
        torch.manual_seed(seed)
        model = AV2TSAM(config)  # the projector and adapters start from their initialisation
        mapped.update({k: v for k, v in model.state_dict().items() if k.startswith(("projector.", "adapters."))})
    else:
        with torch.device("meta"):
            model = AV2TSAM(config)
    load_strict(model, mapped, str(path), assign=kind != "evf-sam")
    model.save_pretrained(out)
    save_system_info(out, PAPER_SYSTEM)
    return model


PAPER_SYSTEM = Recipe(model=AV2TSAM.name, encoders=EncodersConfig(audio="msclap"), data=DataConfig(sample_rate=44100))
"""The frozen encoders an official checkpoint was trained with (MS-CLAP 2023 at 44.1 kHz, CLIP ViT-B/32):
written beside a converted model so ``avseg segment`` can run it."""
