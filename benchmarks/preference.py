"""Does a model follow the sound by what it learned? Train on the synthetic MS3 benchmark, then take the sound away.

    python benchmarks/preference.py [--model teso|av2t-sam] [--settings learned,gated,vision-only] [--full] [--set K=V]

Each *setting* trains the model once with the regular training loop (``avseg/demo.yaml``'s data and
encoders; ``QUICK`` sizes unless ``--full``) and scores the final model on the val + test clips:

* ``learned``: no muted clips in training (``train.mute_probability=0``), evaluated with the silence
  gate off: whatever the model does without sound, it learned.
* ``gated``: avseg's default, 10% of training clips muted with empty targets (silence augmentation).
* ``vision-only``: the control. Same as ``learned``, but every training clip carries the audio of
  another training clip (a seeded derangement; its sounding labels move with it), so the audio says
  nothing about the targets and the model can only learn what to segment from the frames. Its drops
  are what a model that does not follow the sound scores.

Training never applies the silence gate (:mod:`avseg.silence`); a model that has one (TeSO) is scored
with the gate off and on (it is a mask on the output: the network runs the same way). AV2T-SAM has none.

Conditions: AVSBench-Robust's (:func:`avseg.engine.evaluate.evaluate_robust`): ``positive`` (the clips'
own audio), and the negative ``silence`` (digital zeros), ``noise`` (synthetic pink or brown noise) and
``offscreen`` (the audio of a clip of another category). Printed per condition: J and F on all clips,
the FPR (AVSBench-Robust's: per frame, the fraction of pixels predicted as sounding), J on the clips with
a sounding object and its relative drop from positive audio; then G-mIoU, G-F and G-FPR.

The log-mel encoder stands in for VGGish and the thumbnail encoder for CLIP (no pretrained weights can
be downloaded here); MiniLM embeds TeSO's oracle cues (the names of the visible objects).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import machine

from avseg.config import load_recipe
from avseg.data.avsbench import MS3
from avseg.data.clip import Clip
from avseg.data.perturb import NoiseBank, derangement
from avseg.data.synthetic import OBJECTS_FILE
from avseg.engine.data import open_split, prepare_dataset
from avseg.engine.demo import DEMO_RECIPE
from avseg.engine.evaluate import evaluate_robust
from avseg.engine.train import train
from avseg.metrics import format_table
from avseg.models.registry import build_system, load_model
from avseg.silence import SilenceGated

QUICK = ["data.synthetic_videos=80", "data.synthetic_size=64", "train.epochs=30"]
"""Sizes that keep one training run to a few CPU minutes (measured: see the README's robustness table)."""
FULL = ["data.synthetic_videos=120", "data.synthetic_size=96", "train.epochs=45"]
MODELS = {
    "teso": [],
    # The paper's 2e-4 over 30 epochs leaves the tiny model (random frozen Hiera) predicting empty masks everywhere.
    "av2t-sam": ["model=av2t-sam", "encoders.image=thumbnail", "train.lr=1.0e-3", "train.epochs=60"],
}
SETTINGS = ("learned", "gated", "vision-only")


@dataclass
class Setting:
    mute_probability: float
    shuffled_audio: bool = False


SETTING = {
    "learned": Setting(mute_probability=0.0),
    "gated": Setting(mute_probability=0.1),
    "vision-only": Setting(mute_probability=0.0, shuffled_audio=True),
}


def shuffle_train_audio(root: Path, seed: int = 0) -> None:
    """The vision-only control's data: each train clip gets another train clip's audio file (and sounding labels)."""
    records = [r for r in MS3(root, split="train").records]
    permutation = derangement(len(records), seed)
    audio = [r.audio.read_bytes() for r in records]
    objects = json.loads((root / OBJECTS_FILE).read_text())
    sounding = [objects[r.id]["sounding"] for r in records]
    for record, donor in zip(records, permutation):
        record.audio.write_bytes(audio[donor])
        objects[record.id]["sounding"] = sounding[donor]
    (root / OBJECTS_FILE).write_text(json.dumps(objects))


def score(segmenter, clips: list[Clip], seed: int) -> tuple[list[dict], dict]:
    """AVSBench-Robust's conditions on all clips (J, F, FPR, G-metrics), and J on the clips with a sounding object."""
    noise = NoiseBank()
    everything = evaluate_robust(segmenter, clips, seed, noise)
    sounding = evaluate_robust(segmenter, [c for c in clips if c.masks.any()], seed, noise)["conditions"]
    rows = []
    for condition, values in everything["conditions"].items():
        j = sounding[condition]["J"]
        rows.append(
            {
                "condition": condition,
                "J": values["J"],
                "F": values["F"],
                "FPR": values["FPR"] if condition != "positive" else None,
                "J_sounding": j,
                "J_sounding_drop": 1 - j / sounding["positive"]["J"] if sounding["positive"]["J"] else None,
            }
        )
    return rows, {key: everything[key] for key in ("G-mIoU", "G-F", "G-FPR")}


def run(model: str, name: str, sizes: list[str], overrides: list[str], tmp: Path) -> dict:
    setting = SETTING[name]
    root = tmp / ("ms3_shuffled" if setting.shuffled_audio else "ms3")
    recipe = load_recipe(
        DEMO_RECIPE,
        [f"data.root={root}", f"output={tmp / 'runs'}", "train.device=cpu", "train.validate_every=1000", *sizes,
         *MODELS[model], f"train.mute_probability={setting.mute_probability}", f"name={model}-{name}", *overrides],
    )
    if setting.shuffled_audio and not root.exists():
        prepare_dataset(load_recipe(DEMO_RECIPE, [f"data.root={tmp / 'ms3'}", *sizes, *overrides]).data)
        shutil.copytree(tmp / "ms3", root)
        shuffle_train_audio(root)
    started, cpu = time.perf_counter(), time.process_time()
    out = train(recipe)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    system = build_system(recipe, model=load_model(out / "final"))
    segmenter = system.segmenter()
    clips = list(open_split(recipe.data, "val")) + list(open_split(recipe.data, "test"))
    results = {}
    gates = (False, True) if isinstance(segmenter, SilenceGated) else (None,)
    for gate in gates:
        if gate is not None:
            segmenter.silence_gate = gate
        results[{None: "none", False: "off", True: "on"}[gate]] = score(segmenter, clips, recipe.train.seed)
    return {"train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "results": results, "epochs": recipe.train.epochs,
            "videos": recipe.data.synthetic_videos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), default="teso")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--full", action="store_true", help="the larger sizes of the earlier benchmark (about an hour of CPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the tiny models gain nothing from more)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)} (use {', '.join(SETTINGS)})")
    print(machine(), flush=True)
    started, cpu = time.perf_counter(), time.process_time()
    reports, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name in settings:
            print(f"\n## {args.model}, {name}", flush=True)
            reports[name] = report = run(args.model, name, FULL if args.full else QUICK, args.set, Path(tmp))
            print(f"trained {report['epochs']} epochs on {report['videos']} videos in {report['train_seconds']:.0f}s ({report['train_cpu_seconds']:.0f}s CPU)")
            for gate, (result, summary) in report["results"].items():
                rows += [{"model": args.model, "setting": name, "gate": gate, **row} for row in result]
                print(format_table([{"gate": gate, **row} for row in result]))
                print(format_table([{"gate": gate, **summary}]), flush=True)
    print(f"\n## summary ({args.model}; val + test clips, final model)")
    print(format_table(rows))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"total: {time.perf_counter() - started:.0f}s wall, {time.process_time() - cpu:.0f}s CPU, peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "settings": reports}, indent=1))


if __name__ == "__main__":
    main()
