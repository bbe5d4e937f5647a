"""SAM 2 video models for propagation: from a converted AV2T-SAM / EVF-SAM2 folder, or a transformers SAM 2 folder.

**AV2T-SAM's own SAM 2.** A converted folder holds SAM 2's image encoder, prompt encoder and mask decoder in
``model.safetensors`` (under ``sam.``, with transformers ``Sam2Model`` names, which ``Sam2VideoModel`` shares)
and SAM 2's video-only parts in ``sam2_memory.safetensors`` under their official names (see
:mod:`avseg.models.av2t_sam.convert`). Its :data:`~avseg.models.av2t_sam.convert.SAM2_VIDEO_NAMES` maps those official names onto
``Sam2VideoModel`` (after transformers' ``convert_sam2_video_to_hf``), and the model is loaded strictly:
every key filled, none left over, or one line naming the missing keys (transformers names) and the extra
ones (``sam2_memory.safetensors:<official name>`` for a video part with no place). The mask decoder is the one the folder holds (AV2T-SAM's fine-tuned one); the image
encoder runs without AV2T-SAM's audio adapters (propagation is visual).

The official checkpoints carry no configuration. The sizes of the memory parts are SAM 2's (4 memory
attention layers, 2 fuser blocks, widths tied to the image features' width), the memory width and count
are read from ``maskmem_tpos_enc``, and SAM 2.1 is told from SAM 2.0 by ``no_obj_embed_spatial`` (2.1 added
it together with the projected temporal encoding of the object pointers; EVF-SAM2 is SAM 2.0). The strict
load then checks every other tensor against those sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import Sam2Config, Sam2VideoConfig, Sam2VideoModel
from transformers.initialization import no_init_weights

from avseg.errors import AvsegError
from avseg.loading import loading
from avseg.models.av2t_sam.convert import MEMORY_FILE, SAM2_VIDEO_NAMES
from avseg.models.av2t_sam.model import (
    AV2TSAMConfig,
    listed_problems,
    load_strict,
    tiny_sam2_config,
)

MEMORY_ATTENTION_LAYERS = 4
"""SAM 2's memory attention depth (``memory_attention.num_layers: 4`` in every released config)."""


def tiny_video_sam2_config() -> Sam2Config:
    """:func:`~avseg.models.av2t_sam.model.tiny_sam2_config` 128 wide instead of 32. transformers fixes the memory
    width at 64 (the memory attention's key/value input), and its object pointers (as wide as the image
    features) only come out as tokens when they are split into several memory-wide ones, so the features
    must be wider than 64 (SAM 2: 256)."""
    config = tiny_sam2_config()
    config.vision_config.fpn_hidden_size = config.prompt_encoder_config.hidden_size = config.mask_decoder_config.hidden_size = 128
    return Sam2Config.from_dict(config.to_dict())


def sam2_video_config(sam: Sam2Config, memory_dim: int = 64, num_maskmem: int = 7, sam21: bool = True) -> Sam2VideoConfig:
    """The ``Sam2VideoModel`` around ``sam``'s image encoder, prompt encoder and mask decoder, with SAM 2's memory
    parts at ``sam``'s feature width (``sam21``: SAM 2.1's occlusion embedding and object-pointer time encoding)."""
    width = sam.vision_config.fpn_hidden_size
    image_size = sam.prompt_encoder_config.image_size
    smallest = sam.vision_config.backbone_feature_sizes[-1]
    return Sam2VideoConfig(
        vision_config=sam.vision_config.to_dict(),
        prompt_encoder_config=sam.prompt_encoder_config.to_dict(),
        mask_decoder_config=sam.mask_decoder_config.to_dict(),
        image_size=image_size,
        num_maskmem=num_maskmem,
        memory_attention_hidden_size=width,
        memory_attention_num_layers=MEMORY_ATTENTION_LAYERS,
        memory_attention_rope_feat_sizes=list(smallest),
        memory_encoder_hidden_size=width,
        memory_encoder_output_channels=memory_dim,
        mask_downsampler_embed_dim=width,
        mask_downsampler_total_stride=image_size // smallest[0],
        memory_fuser_embed_dim=width,
        enable_occlusion_spatial_embedding=sam21,
        enable_temporal_pos_encoding_for_object_pointers=sam21,
    )


def sam2_video_from_av2t(folder: str | Path) -> Sam2VideoModel | None:
    """The ``Sam2VideoModel`` of a converted AV2T-SAM / EVF-SAM2 folder, loaded strictly; None for an
    EVF-SAM (SAM ViT-H) folder, which has no video memory."""
    folder = Path(folder)
    try:
        values = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise AvsegError(f"{folder / 'config.json'}: missing or not JSON (not an AV2T-SAM model folder)") from None
    config = AV2TSAMConfig.from_dict(values, f"{folder / 'config.json'}: ")
    if config.backbone != "sam2":
        return None
    path = folder / MEMORY_FILE
    if not path.is_file():
        raise AvsegError(
            f"{path}: missing file (avseg convert keeps SAM 2's memory weights there; reconvert the official checkpoint, "
            f"name a SAM 2 video model with --propagator, or use --propagator none)"
        )
    state = read_tensors(folder / "model.safetensors", "sam.")  # SAM 2 only: not BEiT-3, adapters or projector
    memory = read_tensors(path)
    if "maskmem_tpos_enc" not in memory or memory["maskmem_tpos_enc"].dim() != 4:
        raise AvsegError(f"{path}: no maskmem_tpos_enc of shape (num_maskmem, 1, 1, memory_dim); not SAM 2's memory weights")
    positions = memory["maskmem_tpos_enc"]
    video_config = sam2_video_config(config.sam_config(), positions.shape[-1], positions.shape[0], "no_obj_embed_spatial" in memory)
    weights = {key[len("sam.") :]: value for key, value in state.items()}
    for key, value in memory.items():
        weights[SAM2_VIDEO_NAMES.to_ours(key) or f"{MEMORY_FILE}:{key}"] = value
    with no_init_weights():  # not on the meta device: the memory attention's RoPE tables are computed when built
        model = Sam2VideoModel(video_config)
    load_strict(model, weights, f"{folder / 'model.safetensors'} + {path.name}")
    return model.eval()


def read_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose names start with ``prefix`` (only those are read)."""
    if not path.is_file():
        raise AvsegError(f"{path}: missing file")
    try:
        with safe_open(str(path), "pt") as weights:
            return {key: weights.get_tensor(key) for key in weights.keys() if key.startswith(prefix)}
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error type for a truncated or foreign file)
        raise AvsegError(f"{path}: unreadable weights file ({' '.join(str(exc).split())[:200]})") from None


def load_sam2_video(name_or_folder: str) -> Sam2VideoModel:
    """A transformers ``Sam2VideoModel`` folder or hub name (``facebook/sam2.1-hiera-large``), loaded strictly."""
    from transformers import AutoConfig

    local = Path(name_or_folder)
    if not local.is_dir() and (local.exists() or name_or_folder.startswith((".", "/", "~")) or name_or_folder.count("/") != 1):
        raise AvsegError(f"{name_or_folder}: no such SAM 2 video folder (give a transformers folder, or a hub name such as facebook/sam2.1-hiera-large)")
    if local.is_dir() and not (local / "config.json").is_file():
        raise AvsegError(f"{name_or_folder} is not a SAM 2 video model (no config.json)")
    with loading(name_or_folder, "the SAM 2 video model's config"):
        config = AutoConfig.from_pretrained(name_or_folder)
    if config.model_type != Sam2VideoConfig.model_type:
        raise AvsegError(f"{name_or_folder} is not a SAM 2 video model (config model_type {config.model_type!r}, expected {Sam2VideoConfig.model_type!r})")
    with loading(name_or_folder, "the SAM 2 video model"):
        model, info = Sam2VideoModel.from_pretrained(name_or_folder, output_loading_info=True)
    problems = listed_problems({"missing": sorted(info.get("missing_keys") or ()), "unexpected": sorted(info.get("unexpected_keys") or ())}, shown=3)
    if problems:
        raise AvsegError(f"{name_or_folder}: weights do not fit Sam2VideoModel; {problems}")
    return model.eval()
