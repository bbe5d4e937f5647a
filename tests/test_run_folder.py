"""A training run's folder: train deletes nothing it did not write, and recipe.json records the run as it ran."""

import json

import pytest
from test_train import assert_same_weights, log_rows, recipe, weights

from avseg.cli import main
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.run_folder import RUN_MARKER
from avseg.engine.train import train
from avseg.errors import ConfigError


def snapshot(root):
    """Every file under ``root`` with its bytes, and every folder."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


def one_line_train_error(capsys, tmp_path, *overrides, flags=("--overwrite",)):
    argv = ["train", DEMO_RECIPE, "--set", f"data.root={tmp_path / 'data'}", "--set", "data.synthetic_videos=6", *flags]
    for override in overrides:
        argv += ["--set", override]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avseg: error: "), lines
    return lines[0]


@pytest.mark.parametrize("name", ["..", ".", "", "nested/run", "/ABSOLUTE"])
def test_a_run_name_outside_the_output_folder_is_refused_and_nothing_is_deleted(tmp_path, capsys, name):
    """`--set name=.. --overwrite` deleted everything beside the runs folder; an absolute name deleted that folder."""
    victim = tmp_path / "victim"
    (victim / "runs" / "other").mkdir(parents=True)
    (victim / "unrelated.txt").write_text("keep")
    (victim / "runs" / "other" / "recipe.json").write_text("{}")
    before = snapshot(tmp_path)
    name = str(victim) if name == "/ABSOLUTE" else name
    line = one_line_train_error(capsys, tmp_path, f"output={victim / 'runs'}", f"name={name or repr('')}")  # YAML: '' is text, nothing is null
    assert f"name: {name!r}" in line and "it must be one plain folder name" in line
    assert snapshot(tmp_path) == before


def test_overwrite_removes_only_a_run_avseg_wrote(tmp_path, capsys):
    runs = tmp_path / "runs"
    mine = runs / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("not a run")
    run = runs / "run"
    (run / "best" / "eval-test").mkdir(parents=True)
    (run / RUN_MARKER).write_text("{}")
    (run / "recipe.json").write_text("{}")
    (run / "best" / "model.safetensors").write_bytes(b"weights")
    (run / "best" / "eval-test" / "report.json").write_text("{}")
    (run / "best" / "eval-test" / "my-plot.svg").write_text("<svg/>")
    before = snapshot(tmp_path)
    line = one_line_train_error(capsys, tmp_path, f"output={runs}", "name=mine")
    assert line.endswith("mine: is not a run avseg wrote (it has no recipe.json); choose another run name or output folder")
    line = one_line_train_error(capsys, tmp_path, f"output={runs}", "name=run")
    assert "run: --overwrite removes only what avseg train wrote, and this run folder also holds best/eval-test/my-plot.svg" in line
    line = one_line_train_error(capsys, tmp_path, f"output={mine / 'notes.txt' / 'runs'}", "name=run")
    assert line.endswith(f"{mine / 'notes.txt'}: is a file, not a folder (cannot write {mine / 'notes.txt' / 'runs' / 'run'} under it)")
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_run_from_before_the_marker(tmp_path):
    run = tmp_path / "runs" / "old"
    for folder in ("checkpoints/step-00000002", "best/eval-test", "final", "tensorboard"):
        (run / folder).mkdir(parents=True)
    for name in ("recipe.json", "metrics.jsonl", "checkpoints/latest", "checkpoints/step-00000002/trainer.json",
                 "checkpoints/step-00000002/optimizer.safetensors", "best/config.json", "best/system.json",
                 "best/eval-test/report.json", "best/eval-test/drops.png", "final/model.safetensors", "tensorboard/events.out.tfevents.1.host"):
        (run / name).write_text("old")
    train(recipe(tmp_path, "old", "train.epochs=1"), max_steps=1, overwrite=True)
    assert (run / RUN_MARKER).is_file() and not (run / "best").exists() and not (run / "tensorboard").exists()
    assert json.loads((run / "recipe.json").read_text())["name"] == "old"


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    """A failed first step left recipe.json behind, and the rerun was refused (the run folder was taken)."""
    from avseg.models.teso.training import TeSOTask

    def broken(*args, **kwargs):
        raise RuntimeError("a failure in the first step")

    settings = recipe(tmp_path, "failed", "train.epochs=1")
    train(recipe(tmp_path, "warm-up", "train.epochs=1"), max_steps=1)  # writes the dataset first, outside what is compared
    before = snapshot(tmp_path)
    monkeypatch.setattr(TeSOTask, "loss", broken)
    with pytest.raises(RuntimeError, match="a failure in the first step"):
        train(settings)
    assert snapshot(tmp_path) == before
    monkeypatch.undo()
    train(settings, max_steps=1)  # the rerun needs no --overwrite


def test_resume_refuses_a_recipe_that_would_make_another_run(tmp_path):
    """`--resume --set train.epochs=2` trained on, while recipe.json (what push publishes) said 1 epoch."""
    run = tmp_path / "runs" / "cut"
    train(recipe(tmp_path, "cut", "train.epochs=1", "train.checkpoint_every=1"), max_steps=1)
    before = snapshot(run)
    with pytest.raises(ConfigError) as refused:
        train(recipe(tmp_path, "cut", "train.epochs=2", "train.checkpoint_every=1"), resume=True)
    assert "--resume: train.epochs 1 -> 2: this run's cosine learning rate was planned over 1 epochs" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        train(recipe(tmp_path, "cut", "train.epochs=1", "train.checkpoint_every=1", "train.lr=0.001", "train.seed=7"), resume=True)
    assert str(refused.value).endswith(
        "--resume: train.lr 0.002 -> 0.001, train.seed 0 -> 7: a resumed run keeps the recipe.json it was started with (start a new run to change these)"
    )
    assert snapshot(run) == before


def test_a_constant_rate_run_extended_on_resume_records_the_change_and_equals_the_longer_run(tmp_path):
    constant = ("train.schedule=constant", "train.lr=0.001")
    reference = train(recipe(tmp_path, "long", *constant, "train.epochs=2"))
    short = train(recipe(tmp_path, "short", *constant, "train.epochs=1"))  # 3 steps, then done
    extended = train(recipe(tmp_path, "short", *constant, "train.epochs=2", "train.device=cpu", "train.checkpoint_every=3"), resume=True)
    assert_same_weights(weights(reference / "final"), weights(extended / "final"))
    assert log_rows(extended, "step") == log_rows(reference, "step")
    record = json.loads((short / "recipe.json").read_text())
    assert record["train"]["epochs"] == 2 and record["train"]["device"] == "cpu"
    assert record["changes"] == [
        {"first_step": 4, "key": "train.checkpoint_every", "old": 2, "new": 3},
        {"first_step": 4, "key": "train.device", "old": "auto", "new": "cpu"},
        {"first_step": 4, "key": "train.epochs", "old": 1, "new": 2},
    ]
    # Resuming again with the same recipe changes nothing in the record.
    train(recipe(tmp_path, "short", *constant, "train.epochs=2", "train.device=cpu", "train.checkpoint_every=3"), resume=True)
    assert json.loads((short / "recipe.json").read_text()) == record


def test_checkpoint_rotation_deletes_only_checkpoints_it_named(tmp_path):
    import torch

    from avseg.engine.checkpoint import save_checkpoint
    from avseg.models.teso import TeSO, TeSOConfig

    model = TeSO(TeSOConfig.tiny())
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    kept = tmp_path / "checkpoints" / "step-00000001-kept-by-hand"
    kept.mkdir(parents=True)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / "checkpoints", model, optimizer, scheduler, {"epoch": 0, "step_in_epoch": step, "global_step": step, "best": None})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001-kept-by-hand", "step-00000002", "step-00000003"]
