"""The pretrained models avseg knows by name: where their weights come from and what they should score.

Each row names an *architecture* (a name of :mod:`avseg.models.architectures`), the hub repo and
files its weights are published as, how those files become an avseg model folder (``converter``, with
the projector mode passed explicitly: a checkpoint does not record it), and the published numbers a
user should reproduce, with their source. :func:`pretrained_models` returns the rows,
:func:`format_models_table` prints them for ``avseg models``.

**File names are patterns, picked from a listing.** A row's ``files`` are matched against the repo's
file list (``huggingface_hub``'s listing at the row's revision; with only the cache readable, the files
of that revision in the hub cache), and the first pattern that matches anything is used: a first command
never bets on one guessed name. ``file_names`` says how the patterns were found: ``verified`` (from a
listing of the repo, ``file_names_source`` says which), ``inferred`` (from code that writes or reads
them) or ``not named`` (transformers finds a repo's files itself).

The AV2T-SAM names are inferred. The official repository (``bok-bok/AV2T-SAM``) says "place all weights
from huggingface.co/Kyungbok/AV2T-SAM/tree/main" and its README calls that repo's files "pre-trained
backbones"; no public listing shows trained S4/MS3 checkpoints there. Its ``train_avs.py`` names a trained
checkpoint ``{model_name}_{projector}_adapter_{evf_version}_{dataset}_{audio_aug}_{visual_aug}_best.pth``
and its ``scripts/*.sbatch`` load files of that pattern; the rows take the README's command first (empty
model name, ``mul``, EVF-SAM2, no augmentation), then any name of that pattern for their subset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

AV2T_SAM_PAPER = "Audio Visual Segmentation Through Text Embeddings (arXiv:2502.16359), Table 1"


@dataclass(frozen=True)
class PretrainedModel:
    """One named pretrained model (a row of ``avseg models``)."""

    name: str
    architecture: str
    """the ``model`` of its config.json (av2t-sam, teso, ...), or a zero-shot model name"""
    method: str
    data: str
    """what it was trained on"""
    repo: str | None
    """the hub repo its weights are downloaded from (None: several repos, see ``weights``)"""
    files: tuple[str, ...] = ()
    """patterns (``fnmatch``, ``*`` crosses folders) of ``repo``'s files, best first: the first that matches
    any file of the repo's listing is downloaded, all its matches"""
    file_names: str = "inferred"
    """how ``files`` were found: ``verified`` (a listing of the repo), ``inferred`` (code that writes or
    reads them) or ``not named`` (no files named: transformers finds them)"""
    file_names_source: str = ""
    revision: str | None = None
    """a branch, tag or commit of ``repo``; None is the default branch"""
    converter: str | None = None
    """``av2t-sam`` or ``evf-sam`` (the :func:`avseg.models.av2t_sam.convert.convert` kind), ``auralsam2``
    (:func:`avseg.models.auralsam2.convert.convert`), ``vct`` (:func:`avseg.models.vct.convert.convert`); None: no
    conversion"""
    projector: str | None = None
    gpu_memory_gb: float = 0.0
    """an estimate for inference at bf16: the weights (parameter count x 2 bytes) plus one 5-frame window"""
    gated: bool = False
    """a hub repo that asks users to accept a licence: a token of an account that accepted it is needed"""
    licence: str = ""
    published: dict[str, float] = field(default_factory=dict)
    """metric -> value the released weights should reproduce (empty: none published for these weights)"""
    published_source: str = ""
    weights: str = ""
    """where the weights come from, in words"""
    needs_expression: bool = False
    """a Ref-AVS model: ``avseg segment`` needs ``--expression`` (what to segment)"""
    evaluation: dict = field(default_factory=dict)
    """the recipe ``data`` fields of the test set its published numbers are on (``avseg evaluate --model NAME --data
    DIR``: ``layout``, and ``channels``, ``foreground``, ``test_split`` where they differ); empty: no such test set"""

    @property
    def needs(self) -> str:
        gated = ", gated licence (accept it on the hub, then log in)" if self.gated else ""
        return f"~{self.gpu_memory_gb:g} GB GPU at bf16{gated}"

    def info(self) -> dict:
        """The row as plain data, with ``needs`` (what :func:`avseg.available_models` lists)."""
        return {**asdict(self), "files": list(self.files), "needs": self.needs}

    @property
    def numbers(self) -> str:
        if not self.published:
            return "none published"
        return ", ".join(f"{metric} {value:g}" for metric, value in self.published.items())


_AV2T_ENCODERS = "frozen CLIP ViT-B/32 (openai/clip-vit-base-patch32) and MS-CLAP 2023 (microsoft/msclap)"

def _av2t_sam_release(subset: str, data: str) -> PretrainedModel:
    """A released AV2T-SAM checkpoint (EVF-SAM2, ``mul`` projector, adapters) trained on one AVSBench subset."""
    return PretrainedModel(
        name=f"av2t-sam-{subset}",
        architecture="av2t-sam",
        method="AV2T-SAM (EVF-SAM2: BEiT-3-L + SAM 2 Hiera-L; audio in text-embedding space, mul projector, adapters)",
        data=data,
        repo="Kyungbok/AV2T-SAM",
        files=(f"_mul_adapter_evf_sam2_{subset}_0.0_0.0_best.pth", f"*mul_adapter_evf_sam2_{subset}_*.pth"),
        file_names_source="bok-bok/AV2T-SAM train_avs.py and scripts/*.sbatch; the hub repo's listing not seen",
        converter="av2t-sam",
        projector="mul",
        gpu_memory_gb=4,
        licence="not stated by the release (see the hub repo); SAM 2 Apache-2.0, BEiT-3 MIT",
        published_source=f"{AV2T_SAM_PAPER}; values not yet entered here",
        weights=f"hub Kyungbok/AV2T-SAM (official AVTSAM state dict), converted on first use; {_AV2T_ENCODERS}",
        evaluation={"layout": subset},
    )


AURALSAM2_PAPER = "AuralSAM2: Enabling SAM2 Hear Through Pyramid Audio-Visual Feature Prompting (arXiv:2506.01015)"


AURALSAM2_EVALUATION = {
    "s4": {"layout": "s4", "channels": 2},
    "ms3": {"layout": "ms3", "channels": 2},
    "avss": {"layout": "avss", "channels": 2, "foreground": True},
    "refavs": {"layout": "refavs", "channels": 2, "test_split": "test_s"},
}
"""The test sets of the release's evaluation (stereo audio; AVSS as binary foreground, ``v2.code``; Ref-AVS's seen split
first, ``main.py`` scores test_s, test_u and test_n)."""
AURALSAM2_PUBLISHED = (
    f"{AURALSAM2_PAPER}: none entered. The release's README and docs/ (64a16dd) give no numbers, and the paper's "
    "tables could not be read here (the stored copies of arXiv 2506.01015 v1 and v2 gave only their abstract); "
    "avseg evaluate --model prints what the weights measure"
)


def _auralsam2_release(name: str, file: str, data: str, text: bool = False) -> PretrainedModel:
    """A released AuralSAM2 checkpoint (SAM 2.0 Hiera-L + AuralFuser) trained on one AVSBench subset.

    Its file name is the release's own list (``docs/before_start.md`` at 64a16dd, "Available Checkpoints", the
    document its README points to for reproducing the results), hence ``verified``. Published numbers: see
    :data:`AURALSAM2_PUBLISHED` (none could be entered); ``avseg evaluate --model`` prints what the weights measure."""
    return PretrainedModel(
        name=f"auralsam2-{name}",
        architecture="auralsam2",
        method="AuralSAM2 (SAM 2.0 Hiera-L prompted by the AuralFuser; stereo VGGish; SAM 2 video memory)"
        + ("; Ref-AVS: a frozen DistilRoBERTa reads the expression" if text else ""),
        data=data,
        repo="yyliu01/AuralSAM2",
        files=(f"ckpts/auralsam2_{file}.pth",),
        file_names="verified",
        file_names_source="the release's docs/before_start.md (64a16dd), its list of available checkpoints",
        converter="auralsam2",
        gpu_memory_gb=4,
        licence="MIT (AuralSAM2); SAM 2 Apache-2.0; VGGish Apache-2.0" + ("; DistilRoBERTa Apache-2.0" if text else ""),
        published_source=AURALSAM2_PUBLISHED,
        weights="hub yyliu01/AuralSAM2 (official checkpoint), converted on first use; SAM 2.0 Hiera-L from the checkpoint, "
        "else transformers' facebook/sam2-hiera-large" + ("; DistilRoBERTa and its tokenizer from distilbert/distilroberta-base" if text else ""),
        needs_expression=text,
        evaluation=AURALSAM2_EVALUATION[name],
    )


VCT_SOURCE = "the release's README (spyflying/VCT_AVS at 9a18d2f), Model Zoo, Swin-B-384: M_J and M_F"


def _vct_release(name: str, folder: str, data: str, j: float, f: float) -> PretrainedModel:
    """A released VCT checkpoint (Swin-B at 384) trained on one AVSBench subset. AVSS's M_J is the mIoU over its 71
    classes (avseg's AVSS metric name); S4 and MS3's is the binary J.

    File names: the release's README links each checkpoint as ``nowherespyfly/VCT_AVS/blob/main/{folder}/model_best.pth``,
    hence ``verified``. Published numbers: its Model Zoo table (M_J and M_F at 224 x 224, as the release evaluates;
    written there in percent, S4 86.2 / 93.4, here as fractions, as avseg reports them). Made with COMBO's Semantic-SAM
    mask images; where a dataset has none, avseg makes them with its port of the release's generator (Semantic-SAM
    Swin-L, ``semantic-sam-l``: the README's ``swinl_only_sam_many2many.pth``, a GitHub release asset of
    UX-Decoder/Semantic-SAM, downloaded and converted once into ``<avseg cache>/semantic-sam``); only outputs made with
    the SAM 2 substitute (``mask_generator: facebook/sam2.1-hiera-large``) are approximate (see
    :mod:`avseg.models.vct.mask_images`)."""
    return PretrainedModel(
        name=name,
        architecture="vct",
        method="VCT (two Swin-B @ 384, Mask2Former pixel decoder, vision-centric queries; VGGish audio)",
        data=data,
        repo="nowherespyfly/VCT_AVS",
        files=(f"{folder}/model_best.pth",),
        file_names="verified",
        file_names_source="the release's README (9a18d2f), its Model Zoo download links",
        converter="vct",
        gpu_memory_gb=2,
        licence="Apache-2.0 (VCT); VGGish Apache-2.0; mask images: COMBO's (published) or Semantic-SAM (MIT)",
        published={"mIoU" if name.endswith("avss") else "J": j, "F": f},
        published_source=VCT_SOURCE,
        weights="hub nowherespyfly/VCT_AVS (official detectron2 checkpoint), converted on first use; mask images from the "
        "dataset (COMBO's) or made by Semantic-SAM Swin-L (github.com/UX-Decoder/Semantic-SAM/releases/download/checkpoint/"
        "swinl_only_sam_many2many.pth, converted on first use), the release's generator",
        evaluation={"layout": name.removeprefix("vct-")},
    )


PRETRAINED: tuple[PretrainedModel, ...] = (
    _av2t_sam_release("s4", "AVSBench S4 (single source)"),
    _av2t_sam_release("ms3", "AVSBench MS3 (multiple sources)"),
    _auralsam2_release("s4", "avs_v1s", "AVSBench S4 (single source; the AVSBench-semantic v1s folder)"),
    _auralsam2_release("ms3", "avs_v1m", "AVSBench MS3 (multiple sources; the AVSBench-semantic v1m folder)"),
    _auralsam2_release("avss", "avs_v2", "AVSBench-semantic v2 (binary foreground, as the release trains it)"),
    _auralsam2_release("refavs", "refavs_best", "Ref-AVS (referring expressions; segment needs --expression)", text=True),
    _vct_release("vct-s4", "s4_swinb_384", "AVSBench S4 (single source)", 0.862, 0.934),
    _vct_release("vct-ms3", "ms3_swinb_384", "AVSBench MS3 (multiple sources)", 0.676, 0.814),
    _vct_release("vct-avss", "ss_swinb_384", "AVSBench-semantic (AVSS, 71 classes)", 0.525, 0.569),
    PretrainedModel(
        name="evf-sam2",
        architecture="av2t-sam",
        method="EVF-SAM2 multitask as AV2T-SAM's training start (fresh projector and adapters)",
        data="EVF-SAM2's referring-segmentation data (no AVS training)",
        repo="YxZhang/evf-sam2-multitask",
        files=("*.safetensors", "pytorch_model*.bin"),
        file_names_source="EVF-SAM loads it with transformers' from_pretrained (either weights format)",
        converter="evf-sam",
        projector="mul",
        gpu_memory_gb=4,
        licence="Apache-2.0 (EVF-SAM)",
        published_source="a training start: no AVS numbers",
        weights=f"hub YxZhang/evf-sam2-multitask, converted on first use; {_AV2T_ENCODERS}",
    ),
    PretrainedModel(
        name="zeroshot-sam3",
        architecture="zeroshot-sam3",
        method="zero-shot: LAION CLAP hears the vocabulary's classes, SAM 3 segments them from text",
        data="none (no AVS training)",
        repo=None,
        file_names="not named",
        file_names_source="transformers reads facebook/sam3 and laion/larger_clap_general as saved",
        gpu_memory_gb=4,
        gated=True,
        licence="SAM licence (facebook/sam3, gated); LAION CLAP Apache-2.0",
        published_source="avseg's own model: no published numbers",
        weights="hub facebook/sam3 (gated) and laion/larger_clap_general, loaded directly (no conversion)",
    ),
)


def pretrained_models() -> list[PretrainedModel]:
    """Every named pretrained model avseg can load (``avseg.load_model(row.name)``)."""
    return list(PRETRAINED)


def find_pretrained(name: str) -> PretrainedModel | None:
    return next((row for row in PRETRAINED if row.name == name), None)


def format_models_table(rows: list[PretrainedModel] | None = None) -> str:
    """The rows as a Markdown table, then how to name any other model (``avseg models``)."""
    rows = pretrained_models() if rows is None else rows
    header = ("name", "method", "trained on", "needs", "weights", "file names", "published (source)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        file_names = f"{row.file_names} ({row.file_names_source})"
        cells = (row.name, row.method, row.data, row.needs, row.weights, file_names, f"{row.numbers} ({row.published_source})")
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines.append("")
    lines.append("Also: any folder written by `avseg train` or `avseg convert`, and a hub repo of one (`org/name`, `org/name@revision`, see `avseg push`).")
    return "\n".join(lines)
