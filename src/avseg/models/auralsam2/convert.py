"""Official AuralSAM2 checkpoints -> avseg model folders (``config.json`` + ``model.safetensors`` + ``system.json``).

The release writes three layouts, all read here (``torch.load(weights_only=True)``):

- **the AuralFuser alone**, what its ``main.py`` saves (``aural_fuser.state_dict()``: ``vgg.*``, ``patch_embeds.*``,
  ``f_blocks.*``, ``a_blocks.*``, ``fusion_modules.*``, ``smooth_convs.*``, ``train_proj_v1.*``, ``train_proj_a1.*``).
  The frozen SAM 2 then comes from transformers' ``facebook/sam2-hiera-large`` (``sam``), as the release
  takes SAM 2.0 Hiera-L's own weights (``ckpts/sam_ckpts/sam2_hiera_large.pt``);
- **the whole model** (``AVmodel.state_dict()``: ``v_model.*`` SAM 2 under the official ``sam2`` names, and
  ``aural_fuser.*``): SAM 2 comes from the checkpoint;
- **the legacy names** the release's ``tools/remap_aural_ckpt_keys.py`` renames: ``audio_prompter.*`` with
  ``train_f_patch_embed1`` ... ``train_smooth2``; its ``training_layers`` / ``finetuning_layers`` copies are
  dropped, as that script drops them (counted in the converted folder's log line, never silently).

Every key is placed by name tables read in both directions (SAM 2's are AV2T-SAM's, :mod:`avseg.models.av2t_sam.convert`),
and a file that does not fit is one error naming every key with no place, every missing key (by its official
name) and every wrong shape at once. A checkpoint of another model is one line saying what it is.

**Ref-AVS** (``ckpts/auralsam2_refavs_best.pth``, the release's ``ref-avs.code``): a fuser with ``text_proj.*`` is the
Ref-AVS variant (:meth:`AuralSAM2Config.refavs`). Its frozen text encoder and tokenizer come from
transformers' ``distilbert/distilroberta-base`` (``text``), as the release's ``AutoModel`` / ``AutoTokenizer``
load them; a whole-model file's ``t_model.*`` weights are placed instead (the tokenizer is still ``text``'s), except
``t_model.pooler.*``: the release's ``AutoModel`` builds a pooler that it never runs (``last_hidden_state`` is read)
and that DistilRoBERTa's hub weights do not hold (transformers initialises it at random), so avseg builds none and
drops those keys, counted in a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.errors import AvsegError
from avseg.models.auralsam2.model import (
    DEFAULT_TEXT_ENCODER,
    AuralSAM2,
    AuralSAM2Config,
    load_tokenizer,
)
from avseg.models.av2t_sam.convert import (
    _POSITIONAL,
    _SAM2_POINT,
    SAM2_NAMES,
    SAM2_VIDEO_NAMES,
    NameTable,
    read_weights,
    stack_point_embeddings,
)
from avseg.models.av2t_sam.model import listed_problems
from avseg.models.system_info import save_system_info

logger = logging.getLogger(__name__)

DEFAULT_SAM = "facebook/sam2-hiera-large"
"""Where a checkpoint without SAM 2 gets it: transformers' SAM 2.0 Hiera-L, the release's backbone."""

FUSER_NAMES = NameTable(
    [
        ("vgg.", "vggish."),
        ("f_blocks.", "aural_fuser.visual_blocks."),
        ("a_blocks.", "aural_fuser.audio_blocks."),
        ("fusion_modules.", "aural_fuser.fusions."),
        ("train_proj_v1.", "aural_fuser.visual_projection."),
        ("train_proj_a1.", "aural_fuser.audio_projection."),
        ("patch_embeds.", "aural_fuser.patch_embeds."),
        ("smooth_convs.", "aural_fuser.smooth_convs."),
        ("text_proj.", "aural_fuser.text_projection."),
    ]
)
"""The release's ``AuralFuser`` state dict (no prefix) <-> avseg (its VGGish is avseg's, beside the fuser)."""

LEGACY_NAMES = [
    ("train_f_patch_embed1", "patch_embeds.0"),
    ("train_f_patch_embed2", "patch_embeds.1"),
    ("train_f_patch_embed3", "patch_embeds.2"),
    ("train_f_a_block1", "fusion_modules.0"),
    ("train_f_a_block2", "fusion_modules.1"),
    ("train_f_a_block3", "fusion_modules.2"),
    ("train_f_block1", "f_blocks.0"),
    ("train_f_block2", "f_blocks.1"),
    ("train_f_block3", "f_blocks.2"),
    ("train_a_block1", "a_blocks.0"),
    ("train_a_block2", "a_blocks.1"),
    ("train_a_block3", "a_blocks.2"),
    ("train_smooth1", "smooth_convs.0"),
    ("train_smooth2", "smooth_convs.1"),
]
"""``tools/remap_aural_ckpt_keys.py``'s replacements, applied in its order to ``audio_prompter.*`` keys."""
LEGACY_COPIES = (".training_layers.", ".finetuning_layers.")

FUSER_MARKERS = ("f_blocks.", "fusion_modules.", "a_blocks.")
OTHER_MODELS = (
    (("projector.", "audio_prompt_generator.", "model.visual_model."), "an AV2T-SAM checkpoint (avseg convert av2t-sam)"),
    (("image_encoder.trunk.", "sam_mask_decoder."), "a SAM 2 checkpoint (no AuralFuser)"),
    (("features.0.weight", "embeddings.0.weight"), "VGGish weights (no AuralFuser)"),
    (("vision_encoder.", "mask_decoder."), "a transformers SAM model (no AuralFuser)"),
)


def release_config(referring: bool = False) -> AuralSAM2Config:
    """The released models' sizes: SAM 2.0 Hiera-L at 1024, VGGish, the fuser of ``architecture.yaml`` (``referring``:
    and Ref-AVS's DistilRoBERTa)."""
    return AuralSAM2Config.refavs() if referring else AuralSAM2Config()


def official_layout(state: Mapping[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    """The checkpoint with every AuralFuser key under ``aural_fuser.`` (release names) and SAM 2 under ``v_model.``;
    also each key's name in the file, and how many legacy duplicates were dropped. Refuses another model's file."""
    names: dict[str, str] = {}
    dropped = 0
    if any(key.startswith("audio_prompter.") for key in state):
        for key in state:
            if key.startswith("audio_prompter.") and any(copy in key for copy in LEGACY_COPIES):
                dropped += 1
                continue
            new = key
            if key.startswith("audio_prompter."):
                new = "aural_fuser." + key[len("audio_prompter.") :]
                for old, replacement in LEGACY_NAMES:
                    new = new.replace(old, replacement)
            names[new] = key
    elif any(key.startswith("aural_fuser.") for key in state):
        names = {key: key for key in state}
    elif any(key.startswith(FUSER_MARKERS) for key in state):
        names = {f"aural_fuser.{key}": key for key in state}
    else:
        what = next((name for prefixes, name in OTHER_MODELS if any(key.startswith(prefixes) for key in state)), "no AuralSAM2 weights")
        raise AvsegError(
            f"{path}: {what}, not an AuralSAM2 checkpoint (no AuralFuser weights: aural_fuser.*, f_blocks.* or audio_prompter.*)"
        )
    return {new: state[old] for new, old in names.items()}, names, dropped


def sam_to_ours(inner: str) -> list[str] | None:
    """An official ``sam2`` key (``v_model.`` removed) -> the ``Sam2VideoModel`` keys it fills (under ``sam.``)."""
    if inner == "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
        return [f"sam.{name}" for name in _POSITIONAL]
    target = SAM2_VIDEO_NAMES.to_ours(inner) or SAM2_NAMES.to_ours(inner)
    return [f"sam.{target}"] if target else None


def sam_to_official(key: str, expected: Mapping[str, torch.Tensor]) -> list[str]:
    inner = key[len("sam.") :]
    if inner in _POSITIONAL:
        return ["v_model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    if inner == "prompt_encoder.point_embed.weight":
        return [f"v_model.sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(len(expected[key]))]
    return [f"v_model.{SAM2_VIDEO_NAMES.to_official(inner) or SAM2_NAMES.to_official(inner) or inner}"]


def to_official(key: str, expected: Mapping[str, torch.Tensor]) -> list[str]:
    """The official keys an avseg key is made from (for naming missing and misshapen weights)."""
    if key.startswith("sam."):
        return sam_to_official(key, expected)
    if key.startswith("text_encoder."):
        return [f"t_model.{key[len('text_encoder.') :]}"]
    return [f"aural_fuser.{FUSER_NAMES.to_official(key) or key}"]


def map_official(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official keys (``aural_fuser.*``, ``v_model.*``) -> avseg tensors, and the keys with no place."""
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    points: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("v_model."):
            inner = key[len("v_model.") :]
            point = _SAM2_POINT.match(inner)
            if point:
                points[int(point.group(1))] = value
                continue
            targets = sam_to_ours(inner)
        elif key.startswith("t_model.pooler."):
            continue  # never run (see the module docstring); counted by convert()
        elif key.startswith("t_model."):
            targets = [f"text_encoder.{key[len('t_model.') :]}"]
        else:
            target = FUSER_NAMES.to_ours(key[len("aural_fuser.") :])
            targets = [target] if target else None
        if not targets or any(t not in expected or t in mapped for t in targets):
            unexpected.append(key)
            continue
        mapped.update({t: value for t in targets})
    unexpected += stack_point_embeddings(points, mapped, expected, "v_model.")
    return mapped, unexpected


def transformers_sam(name: str) -> dict[str, torch.Tensor]:
    """The frozen SAM 2 of a fuser-only checkpoint: transformers' ``Sam2VideoModel`` ``name`` (hub name or folder),
    as ``sam.*`` tensors."""
    from avseg.propagation.sam2_weights import load_sam2_video

    return {f"sam.{key}": value for key, value in load_sam2_video(name).state_dict().items()}


def transformers_text(name: str) -> dict[str, torch.Tensor]:
    """The Ref-AVS text encoder: transformers' ``AutoModel`` ``name`` (hub name or folder), as ``text_encoder.*`` tensors."""
    from transformers import AutoModel

    from avseg.loading import load_pretrained, loading

    with loading(name, "the Ref-AVS text encoder"):
        model = load_pretrained(AutoModel, name, "the Ref-AVS text encoder", add_pooling_layer=False)
    return {f"text_encoder.{key}": value for key, value in model.state_dict().items()}


def convert(path: str | Path, out: str | Path, sam: str = DEFAULT_SAM, text: str = DEFAULT_TEXT_ENCODER) -> AuralSAM2:
    """Convert an official AuralSAM2 checkpoint into a model folder at ``out``; returns the model. ``sam``: the
    transformers SAM 2 video model used when the checkpoint holds no SAM 2 (the AuralFuser alone); ``text``: the
    Ref-AVS text encoder and tokenizer (hub name or folder) when the checkpoint holds no text encoder."""
    path = Path(path)
    state, in_file, dropped = official_layout(read_weights(path), path)
    referring = any(key.startswith("aural_fuser.text_proj.") for key in state)
    config = release_config(referring)
    with torch.device("meta"):
        model = AuralSAM2(config)
    expected = model.state_dict()
    mapped, unexpected = map_official(state, expected)
    if not any(key.startswith("v_model.") for key in state):  # the AuralFuser alone: SAM 2 from transformers
        backbone = transformers_sam(sam)
        unexpected += [f"{sam}:{key}" for key in backbone if key not in expected]
        mapped.update({key: value for key, value in backbone.items() if key in expected})
    if referring and not any(key.startswith("t_model.") for key in state):  # the fuser alone: the text encoder from transformers
        encoder = transformers_text(text)
        unexpected += [f"{text}:{key}" for key in encoder if key not in expected]
        mapped.update({key: value for key, value in encoder.items() if key in expected})
    missing = sorted({o for k in expected if k not in mapped for o in to_official(k, expected)})
    wrong = sorted({o for k, v in mapped.items() if v.shape != expected[k].shape for o in to_official(k, expected)})
    problems = listed_problems({"no place in AuralSAM2": sorted(in_file.get(k, k) for k in unexpected), "missing": missing, "wrong shape": wrong})
    if problems:
        raise AvsegError(f"{path}: does not fit AuralSAM2; {problems}")
    model = AuralSAM2.from_state(config, mapped, str(path))
    if referring:
        model.tokenizer = load_tokenizer(text)
    poolers = sum(key.startswith("t_model.pooler.") for key in state)
    if poolers:
        logger.warning("%s: dropped %d t_model.pooler.* tensors (a pooler the release builds and never runs)", path, poolers)
    if dropped:
        logger.warning("%s: dropped %d legacy training_layers/finetuning_layers copies, as the release's remap script does", path, dropped)
    model.save_pretrained(out)
    save_system_info(out, Recipe(model=AuralSAM2.name, encoders=EncodersConfig(audio="vggish"), data=DataConfig(sample_rate=16000)))
    return model
