"""Official Semantic-SAM checkpoints (``swinl_only_sam_many2many.pth``, ``swint_only_sam_many2many.pth``) -> avseg
model folders.

Where they are published: the release's README (UX-Decoder/Semantic-SAM at e11f8b5, "Model Zoo") links
``https://github.com/UX-Decoder/Semantic-SAM/releases/download/checkpoint/swin{l,t}_only_sam_many2many.pth`` (a GitHub
release asset, no published hash). The files hold ``{"model": state_dict}`` whose keys carry the ``model.`` prefix of
the release's ``BaseModel`` wrapper (its ``from_pretrained`` keeps only those and strips it); a file without the prefix
is read as well. Which Swin a file holds is read from its shapes (the patch embedding's width and the number of blocks).

Every avseg key has one official name (:func:`official_name`; the fused ``qkv`` of Swin and the fused ``in_proj`` of
the decoder's self-attention feed three avseg tensors each), and the table is read in both directions, so a file that
does not fit is one error naming every key with no place, every missing key (by its official name) and every wrong
shape at once. Dropped without a word, because the inference path does not read them: Swin's
``relative_position_index`` buffers (recomputed from the window size); the classification weights the SA-1B-only
models never use (``lang_mapper``, ``class_embed``, ``class_embed_part``: the demo path multiplies them by 0);
the tied copies of the box head (``bbox_embed.{i}`` and ``decoder.bbox_embed.{i}`` are ``_bbox_embed``) and of the
decoder norm (``decoder_norm`` is ``decoder.norm``); the training criterion's ``empty_weight``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from avseg.errors import AvsegError
from avseg.models import release_layout
from avseg.models.av2t_sam.convert import NameTable, read_weights
from avseg.models.av2t_sam.model import listed_problems
from avseg.models.semantic_sam.config import SWIN_L_384, SWIN_T_224, SemanticSamConfig
from avseg.models.semantic_sam.model import SemanticSam
from avseg.models.vct.convert import SWIN

WEIGHTS_URL = "https://github.com/UX-Decoder/Semantic-SAM/releases/download/checkpoint/{file}"
FILES = {"L": "swinl_only_sam_many2many.pth", "T": "swint_only_sam_many2many.pth"}
"""The README's Model Zoo: the SA-1B-only checkpoints; VCT's ``make_SAM_mask.py`` uses the Swin-L one."""

HEAD = "sem_seg_head."


class Names(NameTable):
    FIELDS = {**NameTable.FIELDS, "j": r"\d+"}


ENCODER = Names(
    [
        ("pixel_decoder.input_proj.", "input_projections."),
        ("pixel_decoder.transformer.level_embed", "level_embed"),
        ("pixel_decoder.transformer.encoder.layers.{i}.self_attn.", "layers.{i}.self_attn."),
        ("pixel_decoder.transformer.encoder.layers.{i}.norm1.", "layers.{i}.self_attn_layer_norm."),
        ("pixel_decoder.transformer.encoder.layers.{i}.linear1.", "layers.{i}.mlp.fc1."),
        ("pixel_decoder.transformer.encoder.layers.{i}.linear2.", "layers.{i}.mlp.fc2."),
        ("pixel_decoder.transformer.encoder.layers.{i}.norm2.", "layers.{i}.final_layer_norm."),
        ("pixel_decoder.mask_features.", "mask_projection."),
        ("pixel_decoder.adapter_1.norm.", "lateral.1."),
        ("pixel_decoder.adapter_1.weight", "lateral.0.weight"),
        ("pixel_decoder.layer_1.norm.", "output.1."),
        ("pixel_decoder.layer_1.weight", "output.0.weight"),
    ]
)
DECODER = Names(
    [
        ("predictor.decoder.layers.{i}.cross_attn.", "layers.{i}.encoder_attn."),
        ("predictor.decoder.layers.{i}.norm1.", "layers.{i}.encoder_attn_layer_norm."),
        ("predictor.decoder.layers.{i}.self_attn.out_proj.", "layers.{i}.self_attn.o_proj."),
        ("predictor.decoder.layers.{i}.norm2.", "layers.{i}.self_attn_layer_norm."),
        ("predictor.decoder.layers.{i}.linear1.", "layers.{i}.mlp.fc1."),
        ("predictor.decoder.layers.{i}.linear2.", "layers.{i}.mlp.fc2."),
        ("predictor.decoder.layers.{i}.norm3.", "layers.{i}.final_layer_norm."),
        ("predictor.decoder.norm.", "norm."),
        ("predictor.decoder.ref_point_head.", "position_head."),
        ("predictor._bbox_embed.", "box_head."),
        ("predictor.mask_embed.", "mask_embed."),
        ("predictor.iou_prediction_head.", "iou_head."),
        ("predictor.mask_tokens.", "mask_tokens."),
        ("predictor.pb_embedding.", "prompt_kind."),
        ("predictor.label_enc.", "label."),
    ]
)

SWIN_QKV = re.compile(r"^backbone\.swin\.encoder\.(layers\.\d+\.blocks\.\d+)\.attention\.([qkv])_proj\.(weight|bias)$")
DECODER_QKV = re.compile(r"^decoder\.(layers\.\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$")

NOT_READ = (
    re.compile(r"\.relative_position_index$"),
    re.compile(r"^sem_seg_head\.predictor\.(lang_mapper|class_embed|class_embed_part)$"),
    re.compile(r"^sem_seg_head\.predictor\.(decoder\.)?bbox_embed\.\d+\.layers\.\d+\.(weight|bias)$"),
    re.compile(r"^sem_seg_head\.predictor\.decoder_norm\.(weight|bias)$"),
    re.compile(r"^criterion"),
)
"""Official keys the inference path does not read (see the module docstring)."""


def official_name(key: str) -> tuple[str, int | None]:
    """An avseg key -> its official key, and which third of a fused q/k/v tensor it is (None: the whole tensor)."""
    match = SWIN_QKV.match(key)
    if match:
        return f"backbone.{match.group(1)}.attn.qkv.{match.group(3)}", "qkv".index(match.group(2))
    match = DECODER_QKV.match(key)
    if match:
        return f"{HEAD}predictor.decoder.{match.group(1)}.self_attn.in_proj_{match.group(3)}", "qkv".index(match.group(2))
    if key.startswith("backbone."):
        inner = key[len("backbone.") :]
        return "backbone." + (SWIN.to_official(inner) or inner), None
    for prefix, table in (("encoder.", ENCODER), ("decoder.", DECODER)):
        if key.startswith(prefix):
            inner = key[len(prefix) :]
            return HEAD + (table.to_official(inner) or inner), None
    return key, None


def official_state(model: SemanticSam) -> dict[str, torch.Tensor]:
    """A model's weights in the release's layout (without the ``model.`` prefix)."""
    return release_layout.official_state(model.state_dict(), official_name)


def release_config(state: Mapping[str, torch.Tensor], path: Path) -> SemanticSamConfig:
    """Swin-L or Swin-T, read from the file's shapes; a file of another model is one line."""
    patch = state.get("backbone.patch_embed.proj.weight")
    if patch is None or not any(key.startswith("sem_seg_head.predictor.") for key in state):
        raise AvsegError(f"{path}: not a Semantic-SAM checkpoint (no backbone.patch_embed.proj.weight and sem_seg_head.predictor.* weights)")
    blocks = len({key.split(".")[4] for key in state if key.startswith("backbone.layers.2.blocks.")})
    for swin in (SWIN_L_384, SWIN_T_224):
        if patch.shape[0] == swin["embed_dim"] and blocks == swin["depths"][2]:
            return SemanticSamConfig(swin=dict(swin))
    raise AvsegError(f"{path}: a Swin {patch.shape[0]} wide with {blocks} blocks in its third stage is neither of the released Semantic-SAM (L: 192, 18; T: 96, 6)")


def without_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release's files name every key ``model.*`` (its ``BaseModel`` wrapper); the release strips it on loading."""
    if state and all(key.startswith("model.") for key in state):
        return {key[len("model.") :]: value for key, value in state.items()}
    return dict(state)


def convert_state(state: Mapping[str, torch.Tensor], config: SemanticSamConfig, source: str) -> SemanticSam:
    """A model of ``config`` from an official state dict; every problem of the file in one line."""
    with torch.device("meta"):
        expected = SemanticSam(config).state_dict()
    mapped, found = release_layout.from_official(state, expected, official_name, "Semantic-SAM", NOT_READ)
    problems = listed_problems(found, shown=10**9)
    if problems:
        raise AvsegError(f"{source}: does not fit Semantic-SAM (Swin {config.swin['embed_dim']} wide); {problems}")
    return SemanticSam.from_state(config, {k: v.float().contiguous() for k, v in mapped.items()}, source)


def convert(path: str | Path, out: str | Path) -> SemanticSam:
    """Convert an official Semantic-SAM checkpoint into a model folder at ``out``; returns the model."""
    path = Path(path)
    state = without_wrapper_prefix(read_weights(path))
    model = convert_state(state, release_config(state, path), str(path))
    model.save_pretrained(out)
    return model


NAMES = {"semantic-sam-l": "L", "semantic-sam-t": "T"}
"""The generator names of the released checkpoints (``mask_generator`` in VCT's config)."""


def is_semantic_sam(name: str) -> bool:
    """A released name, an official ``.pth`` file, or a folder written by :func:`convert`."""
    path = Path(name)
    if name in NAMES or (path.is_file() and path.suffix == ".pth"):
        return True
    config = path / "config.json"
    return config.is_file() and '"semantic-sam"' in config.read_text()


def load_semantic_sam(name: str) -> SemanticSam:
    """A released name (its file downloaded once from the release's GitHub assets into ``<avseg cache>/semantic-sam``,
    converted once beside it), an official ``.pth`` file (converted in memory) or a converted folder."""
    import os
    import shutil
    import tempfile

    from avseg.hub.download import url_file
    from avseg.hub.locations import avseg_cache_dir, cache_folder

    if name in NAMES:
        cache = cache_folder(avseg_cache_dir() / "semantic-sam")
        folder = cache / name
        if not (folder / "model.safetensors").is_file():
            source = url_file(WEIGHTS_URL.format(file=FILES[NAMES[name]]), cache, "")  # no published hash to check
            temporary = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}."))
            try:
                convert(source, temporary)
                try:
                    os.replace(temporary, folder)
                except OSError:  # another process converted it meanwhile
                    if not (folder / "model.safetensors").is_file():
                        raise
            finally:
                shutil.rmtree(temporary, ignore_errors=True)
        return SemanticSam.from_pretrained(folder)
    path = Path(name)
    if path.is_file():
        state = without_wrapper_prefix(read_weights(path))
        return convert_state(state, release_config(state, path), str(path))
    return SemanticSam.from_pretrained(path)
