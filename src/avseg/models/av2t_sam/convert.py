"""Official checkpoints -> avseg model folders (``config.json`` + ``model.safetensors`` + ``system.json``).

Three sources:

- an **AV2T-SAM** checkpoint of the official code (``bok-bok/AV2T-SAM``, the state dict of its
  ``AVTSAM`` module: ``model.visual_model.*`` SAM 2 or SAM, ``model.mm_extractor.beit3.*``,
  ``model.text_hidden_fcs.*``, ``projector.*``, ``audio_prompt_generator.*``);
- the **EVF-SAM2 / EVF-SAM** hub weights (``YxZhang/evf-sam2-multitask``, ``YxZhang/evf-sam-multitask``:
  the same keys without the ``model.`` prefix and without projector or adapters), the starting
  point for training: the projector and adapters are then freshly initialised;
- **SAM 3** (transformers' ``Sam3Model`` or the released ``Sam3VideoModel``, checked as strictly by
  :func:`avseg.models.av2t_sam.sam3.read_sam3`), AV2T-SAM3's starting point.

Every official key is mapped to exactly one model key by a table of name pairs that is read in
both directions, so a missing model weight is named by its official name. SAM 2's
video-tracking parts (memory attention and encoder, object pointers), which image segmentation
never runs, are checked name by name against the official modules (:data:`SAM2_VIDEO_NAMES`) and kept apart, in
``sam2_memory.safetensors`` under their official names. A file is refused with one error that
lists every problem: official keys with no place (or no known video-part name), missing
official keys, wrong shapes. Files are read with ``torch.load(weights_only=True)`` or safetensors.

**Projector mode.** The official ``AVTSAM`` builds both projections whatever its mode, so the
weights cannot tell it. The release's training script names its checkpoints
``{name}_{mode}[_adapter]_{evf_sam|evf_sam2}_{dataset}_..._best.pth``: the mode is read from the
file name; ``--projector`` must be given when the name does not tell it (and agree when it does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.errors import AvsegError
from avseg.files import save_tensors
from avseg.loading import failure_reason, quiet_loading
from avseg.models.av2t_sam.model import (
    AV2TSAM,
    MEMORY_FILE,
    AV2TSAMConfig,
    listed_problems,
    load_strict,
)
from avseg.models.av2t_sam.sam3 import AV2TSAM3
from avseg.models.system_info import save_system_info


class NameTable:
    """Ordered pairs of name templates, official -> avseg and back; the first pair whose side matches wins.

    A template ending in ``.`` matches a key prefix (the rest is kept), otherwise the whole key.
    ``{i}`` stands for an index, ``{n}`` for one digit, ``{rest}`` for any dotted run."""

    FIELDS = {"i": r"\d+", "n": r"\d", "rest": r".+"}

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = [(self._compile(official), official, self._compile(ours), ours) for official, ours in pairs]

    @classmethod
    def _compile(cls, template: str) -> re.Pattern:
        parts = re.split(r"\{(\w+)\}", template)
        regex = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>{cls.FIELDS[p]})" for k, p in enumerate(parts))
        return re.compile("^" + regex + ("" if template.endswith(".") else "$"))

    @staticmethod
    def _rename(key: str, pairs) -> str | None:
        for pattern, template in pairs:
            match = pattern.match(key)
            if match:
                return template.format(**match.groupdict()) + key[match.end() :]
        return None

    def to_ours(self, key: str) -> str | None:
        return self._rename(key, [(p[0], p[3]) for p in self.pairs])

    def to_official(self, key: str) -> str | None:
        return self._rename(key, [(p[2], p[1]) for p in self.pairs])


def _mlp(official: str, ours: str, depth: int) -> list[tuple[str, str]]:
    """An official ``MLP``'s ``layers.i`` <-> transformers' ``proj_in`` / ``layers.(i-1)`` / ``proj_out``."""
    names = ["proj_in", *(f"layers.{i}" for i in range(depth - 2)), "proj_out"]
    return [(f"{official}.layers.{i}.", f"{ours}.{name}.") for i, name in enumerate(names)]


def _head_pairs(prompt_encoder: str, mask_decoder: str) -> list[tuple[str, str]]:
    """Prompt encoder and mask decoder names shared by SAM and SAM 2 (official prefixes differ)."""
    downscaling = {0: "conv1", 1: "layer_norm1", 3: "conv2", 4: "layer_norm2", 6: "conv3"}
    upscaling = {0: "upscale_conv1", 1: "upscale_layer_norm", 3: "upscale_conv2"}
    return [
        *((f"{prompt_encoder}.mask_downscaling.{i}.", f"prompt_encoder.mask_embed.{name}.") for i, name in downscaling.items()),
        (f"{prompt_encoder}.no_mask_embed.", "prompt_encoder.no_mask_embed."),
        (f"{prompt_encoder}.not_a_point_embed.", "prompt_encoder.not_a_point_embed."),
        (f"{mask_decoder}.transformer.layers.{{i}}.norm{{n}}.", "mask_decoder.transformer.layers.{i}.layer_norm{n}."),
        (f"{mask_decoder}.transformer.norm_final_attn.", "mask_decoder.transformer.layer_norm_final_attn."),
        *((f"{mask_decoder}.output_upscaling.{i}.", f"mask_decoder.{name}.") for i, name in upscaling.items()),
        *_mlp(f"{mask_decoder}.output_hypernetworks_mlps.{{i}}", "mask_decoder.output_hypernetworks_mlps.{i}", 3),
        *_mlp(f"{mask_decoder}.iou_prediction_head", "mask_decoder.iou_prediction_head", 3),
    ]


# SAM 2 (the official ``sam2`` package, as vendored by EVF-SAM2) <-> transformers ``Sam2Model``.
SAM2_NAMES = NameTable(
    [
        ("image_encoder.trunk.patch_embed.proj.", "vision_encoder.backbone.patch_embed.projection."),
        ("image_encoder.trunk.pos_embed_window", "vision_encoder.backbone.pos_embed_window"),
        ("image_encoder.trunk.pos_embed", "vision_encoder.backbone.pos_embed"),
        ("image_encoder.trunk.blocks.{i}.norm{n}.", "vision_encoder.backbone.blocks.{i}.layer_norm{n}."),
        *_mlp("image_encoder.trunk.blocks.{i}.mlp", "vision_encoder.backbone.blocks.{i}.mlp", 2),
        *((f"image_encoder.trunk.blocks.{{i}}.{name}.", f"vision_encoder.backbone.blocks.{{i}}.{name}.") for name in ("attn.qkv", "attn.proj", "proj")),
        ("image_encoder.neck.convs.{i}.conv.", "vision_encoder.neck.convs.{i}."),
        ("no_mem_embed", "no_memory_embedding"),
        *_head_pairs("sam_prompt_encoder", "sam_mask_decoder"),
        *_mlp("sam_mask_decoder.transformer.layers.{i}.mlp", "mask_decoder.transformer.layers.{i}.mlp", 2),
        ("sam_mask_decoder.transformer.{rest}.out_proj.", "mask_decoder.transformer.{rest}.o_proj."),
        *_mlp("sam_mask_decoder.pred_obj_score_head", "mask_decoder.pred_obj_score_head", 3),
        *((f"sam_mask_decoder.{name}.", f"mask_decoder.{name}.") for name in ("transformer", "iou_token", "mask_tokens", "obj_score_token", "conv_s0", "conv_s1")),
    ]
)

MASK_DOWNSAMPLER_LAYERS = 4
"""SAM 2's mask downsampler: total stride 16 in strides of 2."""


def _attention_pairs(official: str, ours: str) -> list[tuple[str, str]]:
    return [(f"{official}.out_proj.", f"{ours}.o_proj."), (f"{official}.", f"{ours}.")]


SAM2_VIDEO_NAMES = NameTable(
    [
        *_attention_pairs("memory_attention.layers.{i}.self_attn", "memory_attention.layers.{i}.self_attn"),
        *_attention_pairs("memory_attention.layers.{i}.cross_attn_image", "memory_attention.layers.{i}.cross_attn_image"),
        ("memory_attention.layers.{i}.norm{n}.", "memory_attention.layers.{i}.layer_norm{n}."),
        ("memory_attention.layers.{i}.linear{n}.", "memory_attention.layers.{i}.linear{n}."),
        ("memory_attention.norm.", "memory_attention.layer_norm."),
        *(
            pair
            for k in range(MASK_DOWNSAMPLER_LAYERS)
            for pair in (
                (f"memory_encoder.mask_downsampler.encoder.{3 * k}.", f"memory_encoder.mask_downsampler.layers.{k}.conv."),
                (f"memory_encoder.mask_downsampler.encoder.{3 * k + 1}.", f"memory_encoder.mask_downsampler.layers.{k}.layer_norm."),
            )
        ),
        (f"memory_encoder.mask_downsampler.encoder.{3 * MASK_DOWNSAMPLER_LAYERS}.", "memory_encoder.mask_downsampler.final_conv."),
        ("memory_encoder.pix_feat_proj.", "memory_encoder.feature_projection."),
        ("memory_encoder.out_proj.", "memory_encoder.projection."),
        ("memory_encoder.fuser.layers.{i}.dwconv.", "memory_encoder.memory_fuser.layers.{i}.depthwise_conv."),
        ("memory_encoder.fuser.layers.{i}.norm.", "memory_encoder.memory_fuser.layers.{i}.layer_norm."),
        ("memory_encoder.fuser.layers.{i}.pwconv{n}.", "memory_encoder.memory_fuser.layers.{i}.pointwise_conv{n}."),
        ("memory_encoder.fuser.layers.{i}.gamma", "memory_encoder.memory_fuser.layers.{i}.scale"),
        ("memory_encoder.fuser.layers.{i}.weight", "memory_encoder.memory_fuser.layers.{i}.scale"),  # EVF's fork (AV2T-SAM) renames gamma
        *_mlp("obj_ptr_proj", "object_pointer_proj", 3),
        ("obj_ptr_tpos_proj.", "temporal_positional_encoding_projection_layer."),
        ("mask_downsample.", "mask_downsample."),
        ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
        ("no_mem_pos_enc", "no_memory_positional_encoding"),
        ("no_obj_ptr", "no_object_pointer"),
        ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ]
)
"""SAM 2's video-only parts (``SAM2Base``'s memory attention, memory encoder, object pointer and mask-downsampling
parts, which image segmentation never runs; ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj`` are SAM 2.1's):
official ``sam2`` names <-> transformers ``Sam2VideoModel`` names (after its ``convert_sam2_video_to_hf``)."""

# SAM (``segment_anything``, as vendored by EVF-SAM) <-> transformers ``SamModel``.
SAM_NAMES = NameTable(
    [
        ("image_encoder.patch_embed.proj.", "vision_encoder.patch_embed.projection."),
        ("image_encoder.pos_embed", "vision_encoder.pos_embed"),
        ("image_encoder.blocks.{i}.norm{n}.", "vision_encoder.layers.{i}.layer_norm{n}."),
        ("image_encoder.blocks.{i}.attn.", "vision_encoder.layers.{i}.attn."),
        ("image_encoder.blocks.{i}.mlp.", "vision_encoder.layers.{i}.mlp."),
        *((f"image_encoder.neck.{i}.", f"vision_encoder.neck.{name}.") for i, name in enumerate(("conv1", "layer_norm1", "conv2", "layer_norm2"))),
        ("prompt_encoder.point_embeddings.{i}.", "prompt_encoder.point_embed.{i}."),
        *_head_pairs("prompt_encoder", "mask_decoder"),
        *((f"mask_decoder.{name}.", f"mask_decoder.{name}.") for name in ("transformer", "iou_token", "mask_tokens")),
    ]
)

AV2T_NAMES = NameTable(
    [
        ("projector.audio_proj.", "projector.audio_proj."),
        ("projector.vision_proj.", "projector.vision_proj."),
        ("projector.to_text_space.", "projector.to_tokens."),
        ("audio_prompt_generator.lightweight_mlp_{i}.", "adapters.mlps.{i}."),
        ("audio_prompt_generator.shared_mlp.", "adapters.shared_out."),
        ("text_hidden_fcs.0.", "evf.to_prompt."),
        ("mm_extractor.beit3.", "evf.beit3."),
    ]
)

_POSITIONAL = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")
_SAM2_POINT = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")


class OfficialNames:
    """One backbone's official <-> avseg names, with the three that are not one-to-one: the prompt
    positional matrix (one official tensor, two places in transformers), SAM 2's point embeddings
    (four official tensors, one stacked in transformers) and SAM 2's video-only parts (kept apart)."""

    def __init__(self, backbone: str):
        self.backbone = backbone
        self.sam = SAM2_NAMES if backbone == "sam2" else SAM_NAMES
        self.prompt_encoder = "sam_prompt_encoder" if backbone == "sam2" else "prompt_encoder"

    def to_ours(self, key: str) -> list[str] | None:
        """The avseg keys an official key (``model.`` removed) fills, or None when it has no place."""
        if not key.startswith("visual_model."):
            target = AV2T_NAMES.to_ours(key)
            return [target] if target else None
        inner = key[len("visual_model.") :]
        if inner == f"{self.prompt_encoder}.pe_layer.positional_encoding_gaussian_matrix":
            return [f"sam.{name}" for name in _POSITIONAL]
        target = self.sam.to_ours(inner)
        return [f"sam.{target}"] if target else None

    def to_official(self, key: str, expected: Mapping[str, torch.Tensor]) -> list[str]:
        """The official keys (``model.`` removed) that an avseg key is made from."""
        if key.startswith("sam."):
            inner = key[len("sam.") :]
            if inner in _POSITIONAL:
                return [f"visual_model.{self.prompt_encoder}.pe_layer.positional_encoding_gaussian_matrix"]
            if self.backbone == "sam2" and inner == "prompt_encoder.point_embed.weight":
                return [f"visual_model.sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(len(expected[key]))]
            official = self.sam.to_official(inner)
            return [f"visual_model.{official or inner}"]
        return [AV2T_NAMES.to_official(key) or key]


def map_official(state: Mapping[str, torch.Tensor], names: OfficialNames, expected: Mapping[str, torch.Tensor]):
    """Official keys (``model.`` removed) -> avseg tensors, the SAM 2 video-only tensors (official names, without
    ``visual_model.``), and the official keys with no place (no mapping, no such model key, or a second source)."""
    mapped: dict[str, torch.Tensor] = {}
    memory: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    points: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        inner = key[len("visual_model.") :] if key.startswith("visual_model.") else None
        if inner is not None and names.backbone == "sam2" and SAM2_VIDEO_NAMES.to_ours(inner) is not None:
            memory[inner] = value
            continue
        point = _SAM2_POINT.match(inner or "") if names.backbone == "sam2" else None
        if point:
            points[int(point.group(1))] = value
            continue
        targets = names.to_ours(key)
        if not targets or any(t not in expected or t in mapped for t in targets):
            unexpected.append(key)
            continue
        mapped.update({t: value for t in targets})
    unexpected += stack_point_embeddings(points, mapped, expected, "visual_model.")
    return mapped, memory, unexpected


def stack_point_embeddings(points: dict[int, torch.Tensor], mapped: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], prefix: str) -> list[str]:
    """SAM 2's official point embeddings (one tensor per row, by index) stacked into transformers' one tensor in
    ``mapped`` when every row is there (a missing row leaves it missing); returns the official names of extra rows."""
    if not points:
        return []
    key = "sam.prompt_encoder.point_embed.weight"
    rows = len(expected[key])
    if all(i in points for i in range(rows)):
        mapped[key] = torch.cat([points[i] for i in range(rows)])
    return [f"{prefix}sam_prompt_encoder.point_embeddings.{i}.weight" for i in sorted(points) if i >= rows]


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


def _strip_model_prefix(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The official ``AVTSAM`` keeps EVF under ``model.``; the EVF hub files do not. Also each key's name in the file."""
    names = {k[len("model.") :] if k.startswith("model.") else k: k for k in state}
    return {key: state[name] for key, name in names.items()}, names


AV2T_SAM_PARTS = ("projector.", "audio_prompt_generator.")
"""What only a trained AV2T-SAM checkpoint holds: the audio projector and the adapters."""
BACKBONES = (
    (("audio_encoder.", "caption_encoder."), "MS-CLAP (its audio and text encoders)"),
    (("visual_model.image_encoder.trunk.",), "EVF-SAM2 (BEiT-3 and SAM 2)"),
    (("visual_model.image_encoder.blocks.",), "EVF-SAM (BEiT-3 and SAM)"),
    (("image_encoder.trunk.", "sam_mask_decoder."), "SAM 2"),
    (("beit3.", "mm_extractor.beit3."), "BEiT-3"),
    (("vision_model.", "text_model."), "CLIP"),
)
"""Key prefixes -> the pre-trained backbone a file without AV2T-SAM's own parts is (the first match)."""


def refuse_backbone(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """A file without AV2T-SAM's projector and adapters is not a trained AV2T-SAM checkpoint, whatever else it
    holds: one line naming the backbone it is (the release's hub repo calls its files pre-trained backbones)."""
    if any(key.startswith(AV2T_SAM_PARTS) for key in state):
        return
    what = next((name for prefixes, name in BACKBONES if any(key.startswith(prefixes) for key in state)), None)
    holds = f"a backbone, {what} weights" if what else "no AV2T-SAM weights"
    hint = "; EVF weights are a training start: `avseg convert evf-sam`" if what and what.startswith("EVF") else ""
    raise AvsegError(
        f"{path}: {holds}, not a trained AV2T-SAM checkpoint (no projector.* or audio_prompt_generator.* weights){hint}"
    )


def _detect_backbone(state: Mapping[str, torch.Tensor], path: Path) -> str:
    if any(k.startswith("visual_model.image_encoder.trunk.") for k in state):
        return "sam2"
    if any(k.startswith("visual_model.image_encoder.blocks.") for k in state):
        return "sam"
    raise AvsegError(f"{path}: no SAM 2 (image_encoder.trunk) or SAM (image_encoder.blocks) weights; not an EVF-SAM or AV2T-SAM checkpoint")


def projector_mode(path: Path, projector: str | None) -> str:
    """The mode an official AV2T-SAM checkpoint was trained with: from its release file name, or ``projector``."""
    named = re.search(r"(?:^|_)(mul|clap|clip)(?:_adapter)?_evf_sam2?_", path.name)
    if named and projector and named.group(1) != projector:
        raise AvsegError(f"{path}: --projector {projector}, but the file name says it was trained with projector {named.group(1)}")
    if named or projector:
        return projector or named.group(1)
    raise AvsegError(
        f"{path}: cannot tell the projector mode (the official checkpoint holds both projections in every mode and its name "
        f"is not the release's NAME_MODE_adapter_evf_sam2_...); pass --projector mul, clap or clip"
    )


def release_config(backbone: str, projector: str) -> AV2TSAMConfig:
    """The released models' sizes: EVF-SAM2 (BEiT-3-L + SAM 2 Hiera-L) or EVF-SAM (BEiT-3-L + SAM ViT-H)."""
    return AV2TSAMConfig(projector=projector) if backbone == "sam2" else AV2TSAMConfig.evf_sam(projector=projector)


def convert(path: str | Path, out: str | Path, kind: str = "av2t-sam", projector: str | None = None, seed: int = 0) -> AV2TSAM | AV2TSAM3:
    """Convert official weights into a model folder at ``out``; returns the model. ``kind``: ``av2t-sam``,
    ``evf-sam`` (the EVF-SAM2 / EVF-SAM hub weights) or ``sam3`` (a transformers SAM 3 hub name or folder).

    ``av2t-sam``: the projector mode comes from the file name or ``projector`` (see the module docstring);
    the projection that mode does not use is the one kind of official key dropped. ``evf-sam``, ``sam3``:
    the projector is new, in mode ``projector`` (default ``mul``, as the paper).
    """
    if kind == "sam3":
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = AV2TSAM3.from_sam3(str(path), projector=projector or "mul")
        model.save_pretrained(out)
        save_system_info(out, paper_system(AV2TSAM3.name))
        return model
    path = Path(path)
    if kind not in ("av2t-sam", "evf-sam"):
        raise AvsegError(f"unknown checkpoint kind {kind!r} (use av2t-sam, evf-sam or sam3)")
    state, in_file = _strip_model_prefix(read_weights(path))
    if kind == "av2t-sam":
        refuse_backbone(state, path)
    backbone = _detect_backbone(state, path)
    mode = projector_mode(path, projector) if kind == "av2t-sam" else projector or "mul"
    config = release_config(backbone, mode)
    with torch.random.fork_rng(), torch.device("meta" if kind == "av2t-sam" else "cpu"):
        torch.manual_seed(seed)
        model = AV2TSAM(config)  # evf-sam: the projector and adapters start from their initialisation
    if kind == "av2t-sam":  # the model builds only the projections its mode uses
        unused = {"mul": (), "clap": ("projector.vision_proj.",), "clip": ("projector.audio_proj.",)}[mode]
        state = {k: v for k, v in state.items() if not k.startswith(unused)}
    expected = model.state_dict()
    names = OfficialNames(backbone)
    mapped, memory, unexpected = map_official(state, names, expected)
    fresh = {k for k in expected if kind == "evf-sam" and k.startswith(("projector.", "adapters."))}
    if kind == "evf-sam":
        if any(k.startswith(("projector.", "adapters.")) for k in mapped):
            raise AvsegError(f"{path}: holds AV2T-SAM projector/adapter weights; convert it as av2t-sam")
        mapped.update({k: expected[k] for k in fresh})
    evf_prefix = "model." if any(name.startswith("model.") for name in in_file.values()) else ""

    def official(key: str) -> str:
        return key if key.startswith(AV2T_SAM_PARTS) else evf_prefix + key

    missing = sorted({official(o) for k in expected if k not in mapped for o in names.to_official(k, expected) if o not in state})
    wrong = sorted({official(o) for k, v in mapped.items() if k in expected and v.shape != expected[k].shape for o in names.to_official(k, expected)})
    problems = listed_problems({"no place in AV2T-SAM": sorted(in_file[k] for k in unexpected), "missing": missing, "wrong shape": wrong})
    if problems:
        raise AvsegError(f"{path}: does not fit AV2T-SAM ({backbone}); {problems}")
    load_strict(model, mapped, str(path), assign=kind == "av2t-sam")
    model.save_pretrained(out)
    if memory:
        save_tensors({k: v.contiguous() for k, v in memory.items()}, Path(out) / MEMORY_FILE)
        model.video_memory = Path(out) / MEMORY_FILE
    save_system_info(out, paper_system(AV2TSAM.name))
    return model


def paper_system(model: str) -> Recipe:
    """The frozen encoders the paper trains with (MS-CLAP 2023 at 44.1 kHz, CLIP ViT-B/32), written beside a
    converted model so ``avseg segment`` can run it."""
    return Recipe(model=model, encoders=EncodersConfig(audio="msclap"), data=DataConfig(sample_rate=44100))
