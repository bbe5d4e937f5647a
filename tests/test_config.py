"""Recipe and model-config checks: bad values are one-line errors before any work starts; files keep the umask's mode."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avseg.config import load_recipe
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.train import resolve_device
from avseg.errors import AvsegError, ConfigError
from avseg.models.av2t_sam.model import AV2TSAMConfig, save_model_folder
from avseg.models.av2t_sam.sam3 import AV2TSAM3Config
from avseg.models.teso import TeSO, TeSOConfig


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.checkpoint_every=0", "train.checkpoint_every: must be at least 1, got 0"),
        ("train.lr=-0.0001", "train.lr: must be greater than 0, got -0.0001"),
        ("train.epochs=0", "train.epochs: must be at least 1, got 0"),
        ("train.mute_probability=1.5", "train.mute_probability: must be at most 1, got 1.5"),
        ("train.schedule=linear", "train.schedule: must be one of cosine, constant, poly, got 'linear'"),
        ("train.schedule_step=batch", "train.schedule_step: must be one of iteration, epoch, got 'batch'"),
        ("train.validate_every=0", "train.validate_every: must be at least 1, got 0"),
        ("model_config=5", "model_config: expected a mapping, got int"),
        # A sample rate of 0 trained a model that segment refused; a negative one gave a traceback.
        ("data.sample_rate=0", "data.sample_rate: must be at least 1000, got 0"),
        ("data.sample_rate=-16000", "data.sample_rate: must be at least 1000, got -16000"),
        ("data.synthetic_videos=-1", "data.synthetic_videos: must be at least 0, got -1"),
        # NaN passes every comparison with a limit; an infinite rate diverges at the first step.
        ("train.lr=.inf", "train.lr: must be a finite number, got inf"),
        ("train.weight_decay=.nan", "train.weight_decay: must be a finite number, got nan"),
        ("train.mute_probability=.nan", "train.mute_probability: must be a finite number, got nan"),
        ("train.seed=-1", "train.seed: must be at least 0, got -1"),
        ("train.seed=18446744073709551616", "train.seed: must be at most 4294967295, got 18446744073709551616"),
        ("train.min_lr=0.1", "train.min_lr: must be at most train.lr (0.002), got 0.1"),
        ("name=..", "name: '..' means the parent folder; it must be one plain folder name"),
    ],
)
def test_recipe_values_out_of_range_are_errors_at_load(override, message):
    with pytest.raises(ConfigError) as error:
        load_recipe(DEMO_RECIPE, [override])
    assert str(error.value) == f"{DEMO_RECIPE}: {message}"


def test_unknown_or_absent_devices_are_errors():
    with pytest.raises(ConfigError, match="train.device: unknown device 'cudaa'"):
        resolve_device("cudaa", "train.device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="this machine has no CUDA device"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def cli(*args, cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "avseg.cli", *map(str, args)], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_train_refusals_are_one_line_and_leave_nothing(tmp_path):
    base = ["--set", f"output={tmp_path / 'runs'}", "--set", "name=x", "--set", f"data.root={tmp_path / 'data'}"]
    cases = [
        (["--set", "train.checkpoint_every=0"], "train.checkpoint_every: must be at least 1, got 0"),
        (["--set", "train.lr=-0.1"], "train.lr: must be greater than 0, got -0.1"),
        (["--set", "train.device=cudaa"], "train.device: unknown device 'cudaa'"),
        (["--set", "model_config.image_size=big"], "model_config.image_size: expected int, got 'big'"),
        (["--set", "model_config.sedam_layer=2"], "model_config.sedam_layer: unknown key"),
        (["--set", "model_config.image_size=0"], "model_config.image_size: must be at least 32, got 0"),
        (["--set", "data.sample_rate=-5"], "data.sample_rate: must be at least 1000, got -5"),
        (["--resume", "--overwrite"], "--resume and --overwrite: choose one"),
    ]
    for extra, fragment in cases:
        result = cli("train", DEMO_RECIPE, *base, *extra)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("avseg: error: ") and fragment in lines[0], result.stderr
        assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists(), extra


def test_train_into_an_existing_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "step": 1}\n')
    train_x = ("train", DEMO_RECIPE, "--set", f"output={tmp_path / 'runs'}", "--set", "name=x", "--set", f"data.root={tmp_path / 'data'}")
    result = cli(*train_x, "--overwrite")  # no marker and no recipe.json: not a run avseg wrote
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"avseg: error: {run}: is not a run avseg wrote (it has no recipe.json); choose another run name or output folder"
    ]
    (run / "recipe.json").write_text("{}")  # a run from before the marker
    result = cli(*train_x)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"avseg: error: {run}: already holds a run; pass --resume to continue it or --overwrite to replace it"
    ]
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "recipe.json"] and (run / "metrics.jsonl").read_text() == '{"epoch": 1, "step": 1}\n'
    assert not (tmp_path / "data").exists()


def saved_teso(folder):
    torch.manual_seed(0)
    return TeSO(TeSOConfig.tiny()).save_pretrained(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"heads": "two"}, "heads: expected int, got 'two'"),
        ({"sedam_layer": 2}, "sedam_layer: unknown key"),
        ({"pretrained": 3}, "pretrained: expected str, got 3"),
    ],
)
def test_teso_config_json_is_checked(tmp_path, change, message):
    folder = saved_teso(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(AvsegError) as error:
        TeSO.from_pretrained(folder)
    assert str(error.value).startswith(f"{folder / 'config.json'}: {message}")


def test_av2t_config_dicts_are_checked():
    with pytest.raises(ConfigError, match=r"^model/config.json: audio_dim: expected int, got '24'"):
        AV2TSAMConfig.from_dict({"model": "av2t-sam", "audio_dim": "24"}, "model/config.json: ")
    with pytest.raises(ConfigError, match=r"^config.json: common_dims: unknown key"):
        AV2TSAMConfig.from_dict({"common_dims": 16})
    with pytest.raises(ConfigError, match=r"^config.json: sam3: expected a mapping, got list"):
        AV2TSAM3Config.from_dict({"model": "av2t-sam3", "sam3": []})


def test_saved_files_have_the_umask_mode(tmp_path):
    """safetensors writes through a private (0600) temporary file; model folders and caches are often shared."""
    from avseg.encoders.cache import FeatureCache
    from avseg.engine.checkpoint import save_checkpoint

    previous = os.umask(0o022)
    try:
        model = TeSO(TeSOConfig.tiny())
        model.save_pretrained(tmp_path / "teso")
        save_model_folder(torch.nn.Linear(2, 2), {"model": "linear"}, tmp_path / "av2t")
        optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        checkpoint = save_checkpoint(tmp_path / "checkpoints", model, optimizer, scheduler, {"epoch": 0, "step_in_epoch": 1, "global_step": 1, "best": 0.0})
        FeatureCache(tmp_path / "cache").store("encoder", b"content", torch.zeros(2))
    finally:
        os.umask(previous)
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    files = [*(tmp_path / "teso").iterdir(), *(tmp_path / "av2t").iterdir(), *checkpoint.iterdir(), tmp_path / "checkpoints" / "latest", *cached]
    assert cached, "the feature cache wrote nothing"
    assert {p.name for p in files} >= {"model.safetensors", "config.json", "optimizer.safetensors", "rng.safetensors", "trainer.json", "latest"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_every_training_value_of_a_recipe_names_its_source():
    """Issue 10 item 8: each ``train:`` value says whether it is the paper's, the release's or avseg's choice."""
    for recipe in sorted((Path(__file__).parent.parent / "configs").glob("*.yaml")):
        lines = recipe.read_text().splitlines()
        start = lines.index("train:")
        values = [line for line in lines[start + 1 :] if line.startswith("  ") and line.strip()]
        assert values, recipe
        for line in values:
            comment = line.partition("#")[2].lower()
            assert any(source in comment for source in ("paper", "release", "avseg's choice")), f"{recipe.name}: {line.strip()}"
