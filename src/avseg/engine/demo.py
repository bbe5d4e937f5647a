"""``avseg demo``: the whole pipeline, offline, in a few minutes on a laptop CPU.

1. write a synthetic MS3 dataset (objects that sound or stay silent, so the
   audio decides what to segment);
2. train a tiny TeSO on it (the real classes at toy width; recipe
   ``avseg/demo.yaml``) with the regular training loop;
3. evaluate it with normal and with muted audio, on all test clips and on the
   clips that have a sounding object: a model that follows the sound loses
   most of its J when the sound is gone. Muted audio is scored with TeSO's
   silence gate on (what ``avseg segment`` does) and off (the network alone,
   from the same pass: :mod:`avseg.silence`); the verdict is the network's,
   since a gated mute drop is partly the gate's rule;
4. segment one synthetic video into masks, an overlay video and a summary;
5. print the table and the paths.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from avseg.config import load_recipe
from avseg.data.perturb import PerturbedClips
from avseg.engine.data import open_split
from avseg.engine.dense import Sampling
from avseg.engine.evaluate import evaluate_clips, evaluate_with_and_without_gate
from avseg.engine.segment import fixed_cues, segment_video
from avseg.engine.train import train
from avseg.media import write_video
from avseg.metrics import format_table
from avseg.models.registry import build_system, load_model

DEMO_RECIPE = str(Path(__file__).resolve().parent.parent / "demo.yaml")


def run_demo(out: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    out = Path(out)
    started = time.perf_counter()
    recipe = load_recipe(DEMO_RECIPE, [f"data.root={out / 'data' / 'ms3'}", f"output={out / 'runs'}", *overrides])
    print(f"[1/4] training a tiny TeSO on a synthetic MS3 dataset ({recipe.data.synthetic_videos} videos, {recipe.train.epochs} epochs)", flush=True)
    run = train(recipe, overwrite=True)  # the demo's own folder: a second demo replaces the first

    print("[2/4] evaluating with normal and muted audio", flush=True)
    model = load_model(run / "final")
    system = build_system(recipe, model=model)
    segmenter = system.segmenter()
    clips = list(open_split(recipe.data, recipe.data.test_split)) + list(open_split(recipe.data, recipe.data.val_split))
    sounding = [clip for clip in clips if clip.masks.any()]
    rows = []
    for subset, chosen in (("all test clips", clips), ("sounding clips", sounding)):
        normal = evaluate_clips(segmenter, chosen)
        gated, ungated = evaluate_with_and_without_gate(segmenter, PerturbedClips(chosen, "mute"))
        for condition, scores in (("normal", normal), ("muted", gated), ("muted, gate off", ungated)):
            rows.append({"clips": subset, "audio": condition, "J": scores["J"], "F": scores["F"],
                         "J_drop": 1 - scores["J"] / normal["J"] if normal["J"] else float("nan")})

    print("[3/4] segmenting a synthetic video", flush=True)
    clip = sounding[0]
    video = out / "videos" / f"{clip.id}.mp4"
    write_video(video, clip.frames, fps=1, audio=clip.waveform, sample_rate=clip.sample_rate)
    names = sorted({name for frame in system.cues[clip.id] for name in frame})
    segmenter.cues = fixed_cues(names, video.stem, 5)
    # --rate 1: the synthetic video is AVSBench-shaped (one frame per second, frame l with audio second [l, l+1))
    segmented = segment_video(segmenter, video, out / "segment", recipe.data.sample_rate, "teso (demo)", progress=False, sampling=Sampling(rate=1))

    print("[4/4] done\n")
    print(format_table(rows))
    muted_drop = next(r["J_drop"] for r in rows if r["clips"] == "sounding clips" and r["audio"] == "muted, gate off")
    verdict = "follows the audio" if muted_drop >= 0.5 else "does NOT follow the audio enough"
    print(f"\nmuting the audio drops J on sounding clips by {100 * muted_drop:.0f}% with the silence gate off: the network {verdict}.")
    print(f"model:    {run / 'final'} (best on val: {run / 'best'})")
    print(f"metrics:  {run / 'metrics.jsonl'}")
    print(f"segment:  {segmented} (masks/, overlay.mp4, summary.json) for {video} with cues {', '.join(names)}")
    print(f"time:     {time.perf_counter() - started:.0f}s")
    return {"rows": rows, "muted_drop": muted_drop, "run": run, "segment": segmented, "mean_J": float(np.mean([r["J"] for r in rows]))}
