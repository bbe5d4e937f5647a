"""``avseg push``: a model folder -> a Hugging Face hub repo that ``avseg.load_model("org/name")`` loads.

The repo gets the folder's ``config.json``, ``model.safetensors`` (and AV2T-SAM's ``sam2_memory.safetensors``,
SAM 2's video weights, when present) and ``system.json`` (with machine-local
paths removed: the encoder weights file, which avseg downloads when unset, and the feature cache),
the run's ``recipe.json`` and evaluation reports when present, and a model card: ``README.md`` with
the hub's YAML metadata block (library name, tags, datasets, metrics and a ``model-index`` from the
evaluation reports, licence) and, in words, how to load it, the recipe, the frozen encoders and their
licences. The folder is loaded strictly before anything is uploaded, so a broken folder never
reaches the hub; nor does a model whose config names another model by a folder of this machine (VCT's
mask-image generator, loaded by name where the model is used: :func:`check_names_travel`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from avseg.errors import AvsegError
from avseg.files import write_json

DATASETS = {"s4": "AVSBench S4", "ms3": "AVSBench MS3", "avss": "AVSBench AVSS", "refavs": "Ref-AVS"}
ENCODER_LICENCES = {
    "vggish": "VGGish (Google, Apache-2.0; torchvggish port vggish-10086976.pth)",
    "msclap": "MS-CLAP 2023 (Microsoft, MIT; microsoft/msclap)",
    "logmel": "log-mel features (no weights)",
    "thumbnail": "frame thumbnails (no weights)",
    "minilm-offline": "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0)",
    "openai/clip-vit-base-patch32": "CLIP ViT-B/32 (OpenAI, MIT)",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": "CLIP ViT-H/14 LAION-2B (MIT)",
}


MODELS_BY_NAME = ("mask_generator",)
"""Config fields naming a model that the pushed one loads wherever it is used (VCT's mask-image generator): they
travel as they are, so they must be hub names, not folders of the pushing machine."""


def push_model(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None, licence: str | None = None, token: str | None = None) -> str:
    """Upload ``folder`` with its model card to ``repo_id`` (created if missing); returns the repo's URL."""
    from avseg.hub.resolve import TOKENIZER_FILES
    from avseg.models.av2t_sam.model import MEMORY_FILE
    from avseg.models.registry import load_model, read_system_info

    folder = Path(folder)
    if not folder.is_dir():
        raise AvsegError(f"{folder}: no such model folder")
    if "/" not in repo_id or repo_id.count("/") != 1 or "@" in repo_id:
        raise AvsegError(f"{repo_id}: a hub repo id is org/name (push to a branch with --revision)")
    model = load_model(folder)
    check_names_travel(model.config, folder)
    system = read_system_info(folder)
    recipe = _read_json(folder / "recipe.json") or _read_json(folder.parent / "recipe.json")
    reports = {path.parent.name: _read_json(path) for path in sorted(folder.glob("eval-*/report.json"))}
    with tempfile.TemporaryDirectory(prefix="avseg-push-") as stage_name:
        stage = Path(stage_name)
        for name in ("config.json", "model.safetensors", MEMORY_FILE, *TOKENIZER_FILES):
            # AV2T-SAM's SAM 2 video weights (propagation) and a Ref-AVS AuralSAM2's tokenizer travel when there
            if name in ("config.json", "model.safetensors") or (folder / name).is_file():
                _link_or_copy(folder / name, stage / name)
        encoders = {**system.get("encoders", {}), "audio_weights": None, "cache": None}
        write_json(stage / "system.json", {**system, "encoders": encoders})
        if recipe:
            write_json(stage / "recipe.json", recipe)
        for split, report in reports.items():
            (stage / split).mkdir()
            (stage / split / "report.json").write_text(json.dumps(report, indent=1))  # as read (may predate strict JSON)
        card = model_card(repo_id, model.config, {**system, "encoders": encoders}, recipe, reports, licence)
        (stage / "README.md").write_text(card)
        return _upload(stage, repo_id, private, revision, token)


def check_names_travel(config: Any, folder: Path) -> None:
    """Refuse (one line) a config whose :data:`MODELS_BY_NAME` field is a folder of this machine: the pushed model
    could not load it anywhere else. (A recipe's encoder weights file is dropped instead, as avseg downloads VGGish's
    itself; putting the default generator in place of the one the user chose would change the model's outputs unseen.)"""
    from avseg.hub.download import is_hub_name
    from avseg.models.vct.model import DEFAULT_MASK_GENERATOR

    for field in MODELS_BY_NAME:
        value = getattr(config, field, None)
        if value is not None and not is_hub_name(value):
            raise AvsegError(
                f"{folder / 'config.json'}: {field} {value} is a folder of this machine, which the pushed model could not load "
                f"elsewhere; set it to a name that downloads (VCT's default {DEFAULT_MASK_GENERATOR}, or a hub name) and push again"
            )


def model_card(repo_id: str, config: Any, system: dict, recipe: dict | None, reports: dict[str, dict], licence: str | None) -> str:
    """README.md: the hub's metadata block, then how to use the model, its recipe, encoders and numbers."""
    name = system.get("model", getattr(config, "name", "avseg"))
    layout = ((recipe or {}).get("data") or {}).get("layout")
    datasets = [DATASETS[layout]] if layout in DATASETS else []
    results = [_result(split, report, datasets) for split, report in reports.items()]
    metadata: dict[str, Any] = {
        "library_name": "avseg",
        "license": licence or "other",
        "tags": ["avseg", "audio-visual-segmentation", name],
        "pipeline_tag": "image-segmentation",
    }
    if datasets:
        metadata["datasets"] = datasets
    if results:
        metadata["metrics"] = sorted({metric["type"] for result in results for metric in result["metrics"]})
        metadata["model-index"] = [{"name": repo_id, "results": results}]
    encoders = system.get("encoders", {})
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "",
        f"# {repo_id}", "",
        f"An audio-visual segmentation model ({name}) for [avseg](https://pypi.org/project/avseg/): it segments the objects that make the sound in every frame of a video.",
        "", "```bash", "pip install avseg", f"avseg segment clip.mp4 --model {repo_id} --out out/" + (" --cues auto" if name == "teso" else "")
        + (" --expression 'the dog on the left'" if getattr(config, "referring", False) else ""), "```", "",
        "```python", "import avseg", "", f'model = avseg.load_model("{repo_id}")  # strict: every weight present and used', "```", "",
        "## Frozen encoders and licences", "",
        *[f"- {role}: {ENCODER_LICENCES.get(str(value), str(value))}" for role, value in encoders.items() if value],
        "", f"The encoders are downloaded from their own sources when the model is loaded; their licences apply. This model's weights: {licence or 'see the repo owner'}.", "",
    ]  # fmt: skip
    if recipe:
        lines += ["## Recipe", "", f"Trained with `avseg train` (run `{recipe.get('name', '?')}`):", "", "```json", json.dumps(recipe, indent=1), "```", ""]
    if results:
        lines += ["## Evaluation", "", "| report | metric | value |", "|---|---|---|"]
        lines += [f"| {result['dataset']['split']} | {metric['name']} | {metric['value']:.4g} |" for result in results for metric in result["metrics"]]
        lines.append("")
    return "\n".join(lines)


def _result(split: str, report: dict, datasets: list[str]) -> dict[str, Any]:
    """One ``model-index`` entry: the numbers of the report's unperturbed run."""
    normal = (report.get("results") or {}).get("normal") or {}
    metrics = [
        {"type": key, "name": key, "value": float(value)}
        for key, value in normal.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    dataset = datasets[0] if datasets else "unknown"
    return {
        "task": {"type": "image-segmentation", "name": "Audio-visual segmentation"},
        "dataset": {"name": dataset, "type": dataset.lower().replace(" ", "-"), "split": report.get("split", split.removeprefix("eval-"))},
        "metrics": metrics,
    }


def _upload(stage: Path, repo_id: str, private: bool, revision: str | None, token: str | None) -> str:
    from huggingface_hub import HfApi, errors

    api = HfApi(token=token, library_name="avseg")
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=stage, revision=revision, commit_message="avseg push")
    except (errors.LocalTokenNotFoundError, errors.GatedRepoError) as error:
        raise AvsegError(f"{repo_id}: pushing needs a write token ({type(error).__name__}); log in with `hf auth login` or set HF_TOKEN") from None
    except Exception as error:  # HTTP errors, no network (httpx's ConnectError is no OSError), refusals: one line
        first = str(error).splitlines()[0][:200] if str(error) else ""
        raise AvsegError(f"{repo_id}: upload failed ({type(error).__name__}: {first})") from None
    return str(url)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
