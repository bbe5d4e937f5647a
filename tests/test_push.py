"""``avseg push``: a model folder -> a hub repo that ``avseg.load_model("org/name")`` loads strictly.

The hub API is replaced by a file-based stand-in: ``create_repo`` answers like the hub and
``upload_folder`` commits the uploaded folder into the local hub cache (``hub_stand_in.publish``),
from where ``load_model`` reads it offline through ``huggingface_hub``'s own snapshot code.
"""

import json

import pytest
import torch
import yaml
from conftest import make_video
from hub_stand_in import publish_folder, use_hub_cache

import avseg
from avseg.cli import main
from avseg.config import DataConfig, EncodersConfig, Recipe
from avseg.errors import AvsegError
from avseg.hub.resolve import resolve_model
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig
from avseg.models.registry import save_system_info


@pytest.fixture()
def stand_in(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    cache = use_hub_cache(monkeypatch, tmp_path)
    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, revision=None, **kwargs):
        uploads.append((repo_id, sorted(p.name for p in __import__("pathlib").Path(folder_path).rglob("*"))))
        publish_folder(cache, repo_id, folder_path, revision or "main")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", lambda self, repo_id, branch, **kwargs: None)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return uploads


@pytest.fixture()
def run(tmp_path):
    """A tiny AV2T-SAM run folder as `avseg train` and `avseg evaluate` leave it (recipe, best model, report)."""
    recipe = Recipe(model="av2t-sam", encoders=EncodersConfig(audio="logmel", image="thumbnail", audio_weights="/home/me/w.pth"), data=DataConfig(layout="ms3", sample_rate=16000))
    best = tmp_path / "runs" / "tiny" / "best"
    torch.manual_seed(0)
    AV2TSAM(AV2TSAMConfig.tiny(audio_dim=64, vision_dim=48)).save_pretrained(best)  # the log-mel and thumbnail widths
    save_system_info(best, recipe)
    (best.parent / "recipe.json").write_text(json.dumps({"name": "tiny", "model": "av2t-sam", "data": {"layout": "ms3"}}))
    (best / "eval-test").mkdir()
    report = {"checkpoint": str(best), "split": "test", "results": {"normal": {"J": 0.61, "F": 0.72, "note": "x"}}, "drops": []}
    (best / "eval-test" / "report.json").write_text(json.dumps(report))
    return best


def card_metadata(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_pushed_folder_loads_strictly_by_repo_id_with_a_parsable_card(stand_in, run, tmp_path, capsys):
    assert main(["push", str(run), "org/tiny-av2t"]) == 0
    assert "org/tiny-av2t" in capsys.readouterr().out
    loaded = avseg.load_model("org/tiny-av2t")
    expected = AV2TSAM.from_pretrained(run).state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())

    folder = resolve_model("org/tiny-av2t")
    metadata = card_metadata((folder / "README.md").read_text())
    assert metadata["library_name"] == "avseg" and "av2t-sam" in metadata["tags"]
    assert metadata["datasets"] == ["AVSBench MS3"] and set(metadata["metrics"]) == {"J", "F"}
    values = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert values == {"J": 0.61, "F": 0.72}
    system = json.loads((folder / "system.json").read_text())
    assert system["encoders"]["audio_weights"] is None  # a path of the pusher's machine means nothing elsewhere
    assert json.loads((folder / "recipe.json").read_text())["name"] == "tiny"


def test_av2t_sams_sam2_video_weights_travel_with_the_pushed_model(stand_in, run):
    from safetensors.torch import save_file

    save_file({"maskmem_tpos_enc": torch.randn(7, 1, 1, 64)}, str(run / "sam2_memory.safetensors"))
    assert main(["push", str(run), "org/tiny-av2t"]) == 0
    folder = resolve_model("org/tiny-av2t")
    assert (folder / "sam2_memory.safetensors").read_bytes() == (run / "sam2_memory.safetensors").read_bytes()


def test_a_pushed_model_segments_a_video_by_repo_id(stand_in, run, tmp_path):
    assert main(["push", str(run), "org/tiny-av2t"]) == 0
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, size=(48, 40))
    assert main(["segment", str(video), "--model", "org/tiny-av2t", "--out", str(tmp_path / "seg"), "--device", "cpu", "--rate", "1"]) == 0
    summary = json.loads((tmp_path / "seg" / "clip" / "summary.json").read_text())
    assert len(summary["frames"]) == 2


def test_a_branch_is_loaded_with_at_revision(stand_in, run, tmp_path):
    assert main(["push", str(run), "org/tiny-av2t", "--revision", "v1"]) == 0
    assert isinstance(avseg.load_model("org/tiny-av2t@v1"), AV2TSAM)
    with pytest.raises(AvsegError, match="org/tiny-av2t: .*not in the hub cache"):
        avseg.load_model("org/tiny-av2t")  # nothing on the default branch


def test_a_broken_folder_is_never_uploaded(stand_in, run, tmp_path, capsys):
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    assert main(["push", str(run), "org/tiny-av2t"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not stand_in
    assert main(["push", str(tmp_path / "nowhere"), "org/x"]) == 2
    assert main(["push", str(run), "not-a-repo-id"]) == 2 and not stand_in
