"""Official VCT checkpoints (``{s4,ms3,ss}_swinb_384/model_best.pth``) -> avseg model folders.

The release's files are detectron2 checkpoints of its ``VCT`` meta-architecture (``{"model": state_dict, ...}``, read
with ``torch.load(weights_only=True)``): ``backbone.*`` and ``pre_sam_backbone.*`` (the two D2 Swin-B),
``scale_factor_module.*``, ``audio_backbone.*`` (VGGish), ``sem_seg_head.audio_transformation.*``,
``sem_seg_head.pixel_decoder.*`` (Mask2Former's ``MSDeformAttnPixelDecoder``) and ``sem_seg_head.predictor.*`` (the
vision-centric decoder). Which model a file holds is read from its shapes: the class head gives the classes, the
query generation's prototypes (absent in MS3) their number; the rest is the release's Swin-B at 384.

Every avseg key has one official name (:func:`official_name`; the fused ``qkv`` of Swin and the fused ``in_proj`` of
the decoder's self-attention feed three avseg tensors each), and the table is read in both directions, so a file that
does not fit is one error naming every key with no place, every missing key (by its official name) and every wrong
shape at once. Dropped without a word, because they are not weights: Swin's ``relative_position_index`` buffers
(recomputed from the window size) and the criterion's ``empty_weight`` (the no-object class weight, a loss setting).
The S4 and AVSS criteria also hold a trained ``logit_scale`` (the prototype-audio loss's temperature): kept, as
``decoder.logit_scale``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.errors import AvsegError
from avseg.models import release_layout
from avseg.models.av2t_sam.convert import NameTable, read_weights
from avseg.models.av2t_sam.model import listed_problems
from avseg.models.system_info import save_system_info
from avseg.models.vct.model import VCT, VCTConfig


class Names(NameTable):
    FIELDS = {**NameTable.FIELDS, "j": r"\d+"}


PREFIXES = Names(
    [
        ("backbone.", "encoder.frame_encoder."),
        ("pre_sam_backbone.", "encoder.mask_encoder."),
        ("scale_factor_module.", "encoder.weightings."),
        ("audio_backbone.", "audio.vggish."),
        ("sem_seg_head.audio_transformation.embeddings.", "audio.mlp."),
        ("sem_seg_head.pixel_decoder.", "pixel_decoder."),
        ("criterion.logit_scale", "decoder.logit_scale"),
        ("sem_seg_head.predictor.", "decoder."),
    ]
)
"""Official module -> avseg module (the criterion's learned temperature of the prototype-audio loss is a weight too)."""

SWIN = Names(
    [
        ("patch_embed.proj.", "swin.embeddings.patch_embeddings.projection."),
        ("patch_embed.norm.", "swin.embeddings.norm."),
        ("layers.{i}.blocks.{j}.norm1.", "swin.encoder.layers.{i}.blocks.{j}.layernorm_before."),
        ("layers.{i}.blocks.{j}.norm2.", "swin.encoder.layers.{i}.blocks.{j}.layernorm_after."),
        ("layers.{i}.blocks.{j}.attn.proj.", "swin.encoder.layers.{i}.blocks.{j}.attention.o_proj."),
        (
            "layers.{i}.blocks.{j}.attn.relative_position_bias_table",
            "swin.encoder.layers.{i}.blocks.{j}.attention.relative_position_bias.relative_position_bias_table",
        ),
        ("layers.{i}.blocks.{j}.mlp.", "swin.encoder.layers.{i}.blocks.{j}.mlp."),
        ("layers.{i}.downsample.", "swin.encoder.layers.{i}.downsample."),
        ("norm0.", "hidden_states_norms.stage1."),
        ("norm1.", "hidden_states_norms.stage2."),
        ("norm2.", "hidden_states_norms.stage3."),
        ("norm3.", "hidden_states_norms.stage4."),
    ]
)
PIXEL_DECODER = Names(
    [
        ("input_proj.", "input_projections."),
        ("transformer.level_embed", "level_embed"),
        ("transformer.encoder.layers.{i}.self_attn.", "encoder.layers.{i}.self_attn."),
        ("transformer.encoder.layers.{i}.norm1.", "encoder.layers.{i}.self_attn_layer_norm."),
        ("transformer.encoder.layers.{i}.linear1.", "encoder.layers.{i}.fc1."),
        ("transformer.encoder.layers.{i}.linear2.", "encoder.layers.{i}.fc2."),
        ("transformer.encoder.layers.{i}.norm2.", "encoder.layers.{i}.final_layer_norm."),
        ("mask_features.", "mask_projection."),
        ("adapter_{i}.norm.", "adapter_{i}.1."),
        ("adapter_{i}.weight", "adapter_{i}.0.weight"),
        ("layer_{i}.norm.", "layer_{i}.1."),
        ("layer_{i}.weight", "layer_{i}.0.weight"),
    ]
)
DECODER = Names(
    [
        ("transformer_self_attention_layers.{i}.self_attn.out_proj.", "layers.{i}.self_attn.out_proj."),
        ("transformer_self_attention_layers.{i}.norm.", "layers.{i}.self_attn_layer_norm."),
        ("transformer_cross_attention_layers.{i}.multihead_attn.", "layers.{i}.cross_attn."),
        ("transformer_cross_attention_layers.{i}.norm.", "layers.{i}.cross_attn_layer_norm."),
        ("transformer_ffn_layers.{i}.linear1.", "layers.{i}.fc1."),
        ("transformer_ffn_layers.{i}.linear2.", "layers.{i}.fc2."),
        ("transformer_ffn_layers.{i}.norm.", "layers.{i}.final_layer_norm."),
        ("mask_embed.layers.{i}.", "mask_predictor.mask_embedder.{i}.0."),
        ("visual_query_block.query_mixer.layers.{i}.", "query_generation.query_mixer.{i}.0."),
        ("visual_query_block.", "query_generation."),
    ]
)
INNER = {"encoder.frame_encoder.": SWIN, "encoder.mask_encoder.": SWIN, "pixel_decoder.": PIXEL_DECODER, "decoder.": DECODER}

FUSED = (
    (re.compile(r"^(.*\.attention\.)([qkv])_proj\.(weight|bias)$"), "{0}qkv.{2}", "attn"),
    (re.compile(r"^(.*\.self_attn\.)([qkv])_proj\.(weight|bias)$"), "{0}in_proj_{2}", "self_attn"),
)
"""avseg's separate q/k/v projections whose official tensor is one fused ``(3C, ...)`` tensor, q first."""

NOT_WEIGHTS = (re.compile(r"\.relative_position_index$"), re.compile(r"^criterion\.empty_weight$"))

OTHER_MODELS = (
    (("sem_seg_head.predictor.static_query.", "sem_seg_head.predictor.query_feat."), None),
    (("v_model.", "aural_fuser.", "audio_prompter."), "an AuralSAM2 checkpoint (avseg convert auralsam2)"),
    (("model.visual_model.", "projector."), "an AV2T-SAM checkpoint (avseg convert av2t-sam)"),
    (("features.0.weight",), "VGGish weights"),
)


def official_name(key: str) -> tuple[str, int | None]:
    """An avseg key -> its official key, and which third of a fused q/k/v tensor it is (None: the whole tensor)."""
    part = None
    for pattern, template, _ in FUSED:
        match = pattern.match(key)
        if match and (key.startswith("encoder.") or ".self_attn." in key and key.startswith("decoder.layers.")):
            part = "qkv".index(match.group(2))
            key = template.format(match.group(1), match.group(2), match.group(3))
            break
    for prefix, table in INNER.items():
        if key.startswith(prefix):
            inner = key[len(prefix) :]
            if part is not None and prefix.startswith("encoder."):  # Swin's fused qkv sits under attn., not attention.
                inner = re.sub(r"^swin\.encoder\.(layers\.\d+\.blocks\.\d+)\.attention\.qkv\.", r"\1.attn.qkv.", inner)
                return PREFIXES.to_official(prefix) + inner, part
            if part is not None:
                inner = re.sub(r"^layers\.(\d+)\.self_attn\.", r"transformer_self_attention_layers.\1.self_attn.", inner)
                return PREFIXES.to_official(prefix) + inner, part
            key = prefix + (table.to_official(inner) or inner)
            break
    return PREFIXES.to_official(key) or key, part


def official_state(model: VCT) -> dict[str, torch.Tensor]:
    """A model's weights in the release's layout (what its checkpoints hold under ``model``)."""
    return release_layout.official_state(model.state_dict(), official_name)


def release_config(num_classes: int, num_prototypes: int) -> VCTConfig:
    """The released models' sizes (Swin-B at 384, width 256, 100 queries, 9 + 6 layers) with the file's heads."""
    return VCTConfig(num_classes=num_classes, num_prototypes=num_prototypes)


def heads_of(state: Mapping[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """The number of classes and of prototypes of an official checkpoint; a file of another model is one line."""
    classes = state.get("sem_seg_head.predictor.class_embed.weight")
    if classes is None or not any(key.startswith("pre_sam_backbone.") for key in state):
        what = next((name for prefixes, name in OTHER_MODELS if name and any(k.startswith(prefixes) for k in state)), None)
        raise AvsegError(
            f"{path}: {what or 'no VCT weights'}, not a VCT checkpoint (no sem_seg_head.predictor.class_embed.weight "
            "and pre_sam_backbone.* weights)"
        )
    prototypes = state.get("sem_seg_head.predictor.visual_query_block.prototype.weight")
    return classes.shape[0] - 1, 0 if prototypes is None else prototypes.shape[0]


def convert(path: str | Path, out: str | Path) -> VCT:
    """Convert an official VCT checkpoint into a model folder at ``out``; returns the model."""
    path = Path(path)
    state = read_weights(path)
    config = release_config(*heads_of(state, path))
    with torch.device("meta"):
        expected = VCT(config).state_dict()
    mapped, found = release_layout.from_official(state, expected, official_name, "VCT", NOT_WEIGHTS)
    problems = listed_problems(found, shown=10**9)
    if problems:
        raise AvsegError(f"{path}: does not fit VCT ({config.num_classes} classes, {config.num_prototypes} prototypes); {problems}")
    model = VCT.from_state(config, {k: v.contiguous() for k, v in mapped.items()}, str(path))
    model.save_pretrained(out)
    save_system_info(Path(out), Recipe(model=VCT.name, encoders=EncodersConfig(audio="vggish"), data=DataConfig(sample_rate=16000)))
    return model
